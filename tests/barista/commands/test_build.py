"""``barista build``'s arguments (the builds themselves: tests/boards/test_build.py)."""

import argparse

from barista.commands import build
from barista_hw.presets import PRESETS
from barista_hw.targets import TARGETS
from boards.protocol import DEFAULT_BAUD


def test_board_choices_are_the_registry() -> None:
    parser = argparse.ArgumentParser()
    build.add_arguments(parser)
    text = parser.format_help()
    assert "{" + ",".join(sorted(TARGETS)) + "}" in text
    assert "{" + ",".join(sorted(PRESETS)) + "}" in text
    for name in TARGETS:
        args = parser.parse_args(["net.prototxt", "--board", name])
        assert args.board == name and args.baud == DEFAULT_BAUD
