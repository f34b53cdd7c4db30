"""``barista sweep`` end to end on Ray: a local Ray in this process, and (slow) a two-node
cluster started with ``ray start`` on 127.0.0.1 whose driver is killed mid-way.

The points are LeNet on the digits data for a few iterations (``barista data digits``'s
files, written once per module).
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from barista import cli
from barista.commands import sweep
from caffe_bridge.datasets import write_digits

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("digits")
    write_digits(root)
    return root


@pytest.fixture
def barista(monkeypatch: pytest.MonkeyPatch):
    """The real ``cli.main``, with only the sweep subcommand registered."""
    monkeypatch.setattr(cli, "SUBCOMMANDS", (sweep,))
    return cli.main


def spec_file(path: Path, workdir: Path, seeds: list[int], iterations: int = 2) -> Path:
    path.write_text(
        f"solver: examples/mnist/lenet_solver.prototxt\n"
        f"workdir: {workdir}\n"
        f"test_batches: 1\n"
        f"axes:\n"
        f"  backend: [cpu, golden]\n"
        f"  format: fx16\n"
        f"  seed: {seeds}\n"
        f"  iterations: {iterations}\n"
    )
    return path


def records(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (out / "points").glob("*.json")}


def test_sweep_on_local_ray_writes_points_tables_and_plots(
    tmp_path: Path, digits: Path, barista, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = spec_file(tmp_path / "s.yaml", digits, seeds=[1, 2])
    out = tmp_path / "out"
    assert barista(["sweep", str(spec), "-o", str(out), "--cpus", "2"]) == 0
    assert "4 points (0 finished earlier, 4 run now)" in capsys.readouterr().out
    done = records(out)
    assert len(done) == 4
    assert {r["settings"]["backend"] for r in done.values()} == {"cpu", "golden"}
    nodes = {r["node"] for r in done.values()}
    assert len(nodes) == 1 and "local" not in nodes  # one local Ray node, its id
    assert all(r["pid"] != os.getpid() for r in done.values())  # in Ray's workers
    with open(out / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert sorted(row["id"] for row in table) == sorted(done)
    for row in table:
        assert float(row["accuracy"]) == done[row["id"]]["accuracy"]
        assert (row["mults"] != "") == (row["backend"] == "golden")
    md = (out / "results.md").read_text()
    assert all(f"| {i} |" in md for i in done)
    for png in ("accuracy_by_format.png", "accuracy_by_cost.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # A rerun finds every point done: it starts no Ray and rewrites no record.
    stamps = {p: p.stat().st_mtime_ns for p in (out / "points").iterdir()}
    assert barista(["sweep", str(spec), "-o", str(out)]) == 0
    assert "4 points (4 finished earlier, 0 run now)" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in (out / "points").iterdir()} == stamps


def test_a_bad_spec_is_one_line_and_status_2(
    tmp_path: Path, barista, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "bad.json"
    spec.write_text('{"solver": "s.prototxt", "axes": {"rounding": ["upward"]}}')
    assert barista(["sweep", str(spec), "--local"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"barista sweep: error: {spec}: key 'axes.rounding': ")
    assert err.count("\n") == 1
    assert barista(["sweep", str(spec), "--local", "--cpus", "2"]) == 2
    assert "--cpus" in capsys.readouterr().err


# -- a two-node cluster on this machine ------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """``ray start --block ...`` in a session of its own: the node's processes stay in its
    process group, which the teardown ends (rather than ``ray stop``, which would stop
    every Ray on the machine)."""
    return subprocess.Popen(
        ["ray", "start", "--block", "--node-ip-address", "127.0.0.1", "--num-cpus", "1", *args],
        env=env,
        start_new_session=True,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
    )


def _stop(proc: subprocess.Popen) -> None:
    """End a node's process group: SIGTERM, and SIGKILL what is left after a grace time."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A head and a worker node of one CPU each on 127.0.0.1; (address, environment)."""
    # Ray's sockets live in its temp dir, and a socket path has at most 107 bytes.
    short = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    port = _free_port()
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO),  # the workers import this checkout
        RAY_USAGE_STATS_ENABLED="0",
        RAY_AUTH_MODE="token",  # Ray 2.60's default; the token is this test's own
        RAY_AUTH_TOKEN=secrets.token_hex(16),
        OPENBLAS_NUM_THREADS="1",
    )
    address = f"127.0.0.1:{port}"
    nodes = [
        _ray_start(
            [
                "--head",
                "--port",
                str(port),
                "--include-dashboard=false",
                "--temp-dir",
                str(short / "head"),
            ],
            env,
            tmp_path / "head.log",
        )
    ]
    try:
        _wait_for(lambda: _alive_nodes(address, env) == 1, "the head node", nodes)
        nodes.append(
            _ray_start(
                ["--address", address, "--temp-dir", str(short / "worker")],
                env,
                tmp_path / "worker.log",
            )
        )
        _wait_for(lambda: _alive_nodes(address, env) == 2, "the worker node", nodes)
        yield address, env
    finally:
        for node in reversed(nodes):
            _stop(node)
        shutil.rmtree(short, ignore_errors=True)


def _alive_nodes(address: str, env: dict[str, str]) -> int:
    """How many nodes ``ray status`` lists as active at ``address`` (0: none, or no head)."""
    r = subprocess.run(
        ["ray", "status", "--address", address], env=env, capture_output=True, text=True
    )
    if r.returncode != 0 or "Active:" not in r.stdout:
        return 0
    return r.stdout.split("Active:")[1].split("Pending:")[0].count("node_")


def _wait_for(
    ready: Callable[[], bool],
    what: str,
    procs: Sequence[subprocess.Popen] = (),
    limit: float = 120.0,
) -> None:
    """Poll ``ready()`` until true; a cluster that does not come up in ``limit`` seconds, or
    one of ``procs`` exiting, is a setup failure (not a timed assertion on what is tested)."""
    end = time.monotonic() + limit
    while not ready():
        if time.monotonic() > end or any(p.poll() is not None for p in procs):
            raise RuntimeError(f"{what} did not start (see the node logs in the test's tmp dir)")
        time.sleep(0.5)


@pytest.mark.slow
def test_two_node_sweep_survives_a_killed_driver(
    tmp_path: Path, digits: Path, cluster: tuple[str, dict[str, str]]
) -> None:
    address, env = cluster
    spec = spec_file(tmp_path / "s.yaml", digits, seeds=[1, 2, 3, 4], iterations=40)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "barista", "sweep", str(spec), "-o", str(out)]
    command += ["--address", address]
    driver = subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _wait_for(lambda: len(records(out)) >= 2, "the first points", [driver], limit=600)
    driver.kill()  # SIGKILL: no cleanup at all
    driver.wait()
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "points").iterdir()}
    assert 2 <= len(before) < 8  # killed mid-way

    r = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    k = len(before)
    assert f"8 points ({k} finished earlier, {8 - k} run now)" in r.stdout
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "points").iterdir()}
    assert len(after) == 8
    assert {name: after[name] for name in before} == before  # none redone
    assert len({r["node"] for r in records(out).values()}) == 2  # both nodes ran points
