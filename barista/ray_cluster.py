"""Joining Ray, and a Ray cluster of several nodes on this machine for trying ``--address``.

:func:`join_ray` connects this process to Ray as ``barista sweep`` and ``barista train
--devices`` do: the cluster at an address, or a local Ray of its own on the loopback
interface.

:func:`local_cluster` starts a head and worker nodes with ``ray start --block`` on
127.0.0.1, each in a session of its own, and ends them by their process groups when
it exits (``ray stop`` would stop every Ray on the machine, other users' included).
The test of a killed driver and the sweep benchmark use it; on a real cluster, start
the nodes as Ray's documentation says and pass the head's address.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def join_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Connect to Ray unless this process already is: to the cluster at ``address``, or to
    a local Ray of its own with ``num_cpus`` CPUs (default the machine's) on 127.0.0.1.
    Returns whether it connected now (then the caller shuts Ray down when done)."""
    import ray

    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
    if address:
        options["address"] = address
    else:
        options.update(
            address="local",  # a Ray of its own, not one `ray start` left running
            num_cpus=num_cpus or os.cpu_count() or 1,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
        )
    ray.init(**options)
    return True


@dataclass(frozen=True)
class LocalCluster:
    """The head's address and the environment its drivers run in (its auth token)."""

    address: str
    env: dict[str, str]


@contextlib.contextmanager
def local_cluster(
    nodes: int = 2,
    cpus: int = 1,
    *,
    logs: Path,
    pythonpath: str | None = None,
    limit: float = 120.0,
) -> Iterator[LocalCluster]:
    """``nodes`` Ray nodes of ``cpus`` CPUs each on 127.0.0.1; their logs go to ``logs``.

    ``pythonpath``: where the workers import Barista from (e.g. a checkout). The nodes
    get a token of their own (Ray's token authentication, on by default in Ray 2.60).
    Raises RuntimeError if a node does not come up within ``limit`` seconds.
    """
    # Ray's sockets live in its temp dir, and a socket path has at most 107 bytes.
    short = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    env = dict(
        os.environ,
        RAY_USAGE_STATS_ENABLED="0",
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=secrets.token_hex(16),
    )
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    address = f"127.0.0.1:{_free_port()}"
    logs.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen] = []
    try:
        for i in range(nodes):
            if i == 0:
                where = ["--head", "--port", address.split(":")[1], "--include-dashboard=false"]
            else:
                where = ["--address", address]
            procs.append(
                _ray_start(
                    [*where, "--temp-dir", str(short / f"node{i}")],
                    cpus,
                    env,
                    logs / f"node{i}.log",
                )
            )
            wait_until(
                lambda n=i + 1: alive_nodes(address, env) == n,
                f"Ray node {i} (log: {logs / f'node{i}.log'})",
                procs,
                limit,
            )
        yield LocalCluster(address, env)
    finally:
        for proc in reversed(procs):
            _stop(proc)
        shutil.rmtree(short, ignore_errors=True)


def alive_nodes(address: str, env: dict[str, str]) -> int:
    """How many nodes ``ray status`` lists as active at ``address`` (0: none, or no head)."""
    r = subprocess.run(
        ["ray", "status", "--address", address], env=env, capture_output=True, text=True
    )
    if r.returncode != 0 or "Active:" not in r.stdout:
        return 0
    return r.stdout.split("Active:")[1].split("Pending:")[0].count("node_")


def wait_until(
    ready: Callable[[], bool],
    what: str,
    procs: Sequence[subprocess.Popen] = (),
    limit: float = 120.0,
) -> None:
    """Poll ``ready()`` every half second until true; RuntimeError naming ``what`` after
    ``limit`` seconds or as soon as one of ``procs`` has exited."""
    end = time.monotonic() + limit
    while not ready():
        if time.monotonic() > end or any(p.poll() is not None for p in procs):
            raise RuntimeError(f"{what}: not ready")
        time.sleep(0.5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_start(args: list[str], cpus: int, env: dict[str, str], log: Path) -> subprocess.Popen:
    """``ray start --block ...`` in a new session: its node's processes share its group."""
    with open(log, "w") as out:
        return subprocess.Popen(
            [
                "ray",
                "start",
                "--block",
                "--node-ip-address",
                "127.0.0.1",
                "--num-cpus",
                str(cpus),
                *args,
            ],
            env=env,
            start_new_session=True,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _stop(proc: subprocess.Popen) -> None:
    """End a node's process group: SIGTERM (Ray drains), then SIGKILL what is left."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
