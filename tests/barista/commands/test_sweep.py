"""``barista sweep`` end to end on Ray: a local Ray in this process, and (slow) a two-node
cluster started with ``ray start`` on 127.0.0.1 whose driver is killed mid-way.

The points are LeNet on the digits data for a few iterations (``barista data digits``'s
files, written once per module).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from barista import cli
from barista.commands import sweep
from barista.ray_cluster import LocalCluster, local_cluster, wait_until
from caffe_bridge.datasets import write_digits

# One worker runs every test that starts Ray (parallel workers would race for its ports).
pytestmark = pytest.mark.xdist_group("ray")

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
    tmp_path: Path, barista, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.prototxt").write_text("")
    spec = tmp_path / "bad.json"
    spec.write_text('{"solver": "s.prototxt", "axes": {"rounding": ["upward"]}}')
    assert barista(["sweep", str(spec), "--local"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"barista sweep: error: {spec}: key 'axes.rounding': ")
    assert err.count("\n") == 1
    assert barista(["sweep", str(spec), "--local", "--cpus", "2"]) == 2
    assert "--cpus" in capsys.readouterr().err


def test_a_failed_point_fails_the_command_and_keeps_the_others(
    tmp_path: Path, digits: Path, barista, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(
        f"solver: examples/mnist/lenet_solver.prototxt\nworkdir: {digits}\ntest_batches: 1\n"
        "axes: {backend: cpu, iterations: 1, seed: [1, 2], lr_policy: [fixed, nosuch]}\n"
    )
    out = tmp_path / "out"
    assert barista(["sweep", str(spec), "-o", str(out), "--local"]) == 1
    err = capsys.readouterr().err
    assert "2 of 4 points failed" in err and "unknown learning rate policy 'nosuch'" in err
    kept = records(out)
    assert sorted(r["settings"]["seed"] for r in kept.values()) == [1, 2]
    assert {r["settings"]["overrides"]["lr_policy"] for r in kept.values()} == {"fixed"}
    assert not (out / "results.csv").exists()


# -- a two-node cluster on this machine ------------------------------------------------------


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A head and a worker node of one CPU each on 127.0.0.1, importing this checkout."""
    with local_cluster(2, 1, logs=tmp_path / "ray-logs", pythonpath=str(REPO)) as c:
        yield c


@pytest.mark.slow
def test_two_node_sweep_survives_a_killed_driver(
    tmp_path: Path, digits: Path, cluster: LocalCluster
) -> None:
    address, env = cluster.address, dict(cluster.env, OPENBLAS_NUM_THREADS="1")
    spec = spec_file(tmp_path / "s.yaml", digits, seeds=[1, 2, 3, 4], iterations=40)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "barista", "sweep", str(spec), "-o", str(out)]
    command += ["--address", address]
    driver = subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_until(lambda: len(records(out)) >= 2, "the first points", [driver], limit=600)
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
