"""Repository-wide pytest options and fixtures of the simulation suite.

``--sim icarus|verilator|both`` (default both) picks the HDL simulators the
cocotb tests run on: a test that takes a ``sim`` argument is parametrised
over the chosen ones.
"""

from __future__ import annotations

import pytest

SIM_CHOICES = ("icarus", "verilator")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--sim",
        action="store",
        default="both",
        choices=(*SIM_CHOICES, "both"),
        help="HDL simulator(s) of the cocotb suite: icarus, verilator or both (default both)",
    )


def selected_sims(config: pytest.Config) -> list[str]:
    choice = config.getoption("--sim")
    return list(SIM_CHOICES) if choice == "both" else [choice]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "sim" in metafunc.fixturenames:
        metafunc.parametrize("sim", selected_sims(metafunc.config), scope="session")


@pytest.fixture(scope="session")
def sim_run_cache() -> dict:
    """Simulation results shared by the tests of one session, keyed by design and simulator.

    A suite builds each design once and runs all its cases in one simulation;
    the tests then only read the results (failures are cached too, so a
    broken build is reported once per test instead of being rebuilt).
    """
    return {}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups (``--dist loadgroup``)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests that share a simulation run (``sim_run_cache``) of one module and simulator
    (and design: a ``spec`` parameter, one run each) go to one test worker, so under
    ``--dist loadgroup`` the run happens once, not once a worker that draws one of them.
    A module whose tests read another module's run names it in ``SIM_RUN_GROUP`` (both
    modules set the same name)."""
    for item in items:
        if "sim_run_cache" not in getattr(item, "fixturenames", ()):
            continue
        if item.get_closest_marker("xdist_group"):
            continue
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec else {}
        spec = getattr(params.get("spec"), "name", "")
        owner = getattr(item.module, "SIM_RUN_GROUP", item.module.__name__)
        group = "-".join(p for p in (owner, params.get("sim", ""), spec) if p)
        item.add_marker(pytest.mark.xdist_group(group))
