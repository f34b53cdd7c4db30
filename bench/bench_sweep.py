"""Benchmark of ``barista sweep``: points per hour on one Ray node and on two.

Run from the repository: ``python bench/bench_sweep.py [--iterations 50] [--seeds 2]
[--nodes 1,2]``. Writes the digits data and LeNet into a temporary directory, and
sweeps golden LeNet over fx16/fx12 x nearest-even/stochastic x ``--seeds`` seeds
(``--iterations`` each, 2 test batches): once on a local Ray with the machine's cores
(1 node), once on a head and a worker of one CPU each started with ``ray start`` on
127.0.0.1 (2 nodes; their start-up is not counted, the driver's connection is). Prints
points/hour (wall time of the ``barista sweep`` command, Python and Ray start-up
included) and seconds per point for each, as text and JSON
(``build/bench_sweep.json``). Both share this machine's cores, so two nodes here show
Ray's overhead, not more compute.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from barista.ray_cluster import local_cluster  # noqa: E402
from caffe_bridge.datasets import write_digits  # noqa: E402


def _spec(root: Path, iterations: int, seeds: int) -> Path:
    path = root / "bench.yaml"
    path.write_text(
        f"solver: examples/mnist/lenet_solver.prototxt\nworkdir: {root}\ntest_batches: 2\n"
        f"axes:\n  backend: golden\n  format: [fx16, fx12]\n"
        f"  rounding: [nearest-even, stochastic]\n  seed: {list(range(1, seeds + 1))}\n"
        f"  iterations: {iterations}\n"
    )
    return path


def _run(spec: Path, out: Path, where: list[str], env: dict[str, str]) -> dict[str, float]:
    """``barista sweep`` in a process of its own (a driver as a user starts it), timed."""
    command = [sys.executable, "-m", "barista", "sweep", str(spec), "-o", str(out), *where]
    env = dict(env, PYTHONPATH=str(REPO))
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    records = [json.loads(p.read_text()) for p in (out / "points").glob("*.json")]
    n = len(records)
    return {
        "points": n,
        "wall_s": round(wall, 2),
        "points_per_hour": round(n / wall * 3600, 1),
        "mean_point_s": round(sum(r["seconds"] for r in records) / n, 2),
        "nodes_used": len({r["node"] for r in records}),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--nodes", default="1,2", help="which runs: 1, 2 or 1,2")
    args = parser.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_sweep") as tmp:
        root = Path(tmp)
        write_digits(root)
        spec = _spec(root, args.iterations, args.seeds)
        wanted = args.nodes.split(",")
        if "1" in wanted:
            cpus = ["--cpus", str(os.cpu_count())]
            results["1 node"] = _run(spec, root / "out1", cpus, dict(os.environ))
        if "2" in wanted:
            with local_cluster(2, 1, logs=root / "ray-logs", pythonpath=str(REPO)) as cluster:
                where = ["--address", cluster.address]
                results["2 nodes"] = _run(spec, root / "out2", where, cluster.env)
    for name, r in results.items():
        print(
            f"{name}: {r['points']} points in {r['wall_s']} s = {r['points_per_hour']} "
            f"points/hour (a point {r['mean_point_s']} s in its worker; "
            f"{r['nodes_used']} node(s) ran points)"
        )
    out = REPO / "build" / "bench_sweep.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"cpus": os.cpu_count(), **results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
