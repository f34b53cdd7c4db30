"""``barista data digits``: output, next command, refusal to overwrite, bad arguments."""

import shlex

import lmdb
import pytest

from barista import cli
from barista.commands import data


@pytest.fixture
def barista(monkeypatch):
    """The real ``cli.main``, with only the data subcommand registered."""
    monkeypatch.setattr(cli, "SUBCOMMANDS", (data,))
    return cli.main


def count(path) -> int:
    env = lmdb.open(str(path), readonly=True, lock=False)
    try:
        return env.stat()["entries"]
    finally:
        env.close()


def test_digits_writes_and_prints_counts_paths_and_next_command(barista, tmp_path, capsys):
    out = tmp_path / "my digits"
    status = barista(
        ["data", "digits", "--out", str(out), "--test-fraction", "0.25", "--seed", "3"]
    )
    printed = capsys.readouterr().out
    mnist = out / "examples" / "mnist"
    n_train, n_test = count(mnist / "mnist_train_lmdb"), count(mnist / "mnist_test_lmdb")
    assert status == 0
    assert n_train + n_test == 1797 and 0.24 < n_test / 1797 < 0.26
    assert f"wrote {n_train} training and {n_test} test images" in printed
    assert f"{mnist / 'mnist_train_lmdb'}  {n_train} records" in printed
    assert f"{mnist / 'mnist_test_lmdb'}  {n_test} records" in printed
    assert str(mnist / "lenet_solver.prototxt") in printed
    next_cmd = printed.strip().splitlines()[-1].strip()
    assert next_cmd == (
        f"cd {shlex.quote(str(out))} && barista train --solver examples/mnist/lenet_solver.prototxt"
    )
    assert (mnist / "lenet_train_test.prototxt").is_file()


def test_second_run_refuses_then_force_replaces(barista, tmp_path, capsys):
    assert barista(["data", "digits", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    assert barista(["data", "digits", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "barista data: error:" in err and "--force" in err
    assert barista(["data", "digits", "--out", str(tmp_path), "--force", "--seed", "1"]) == 0


@pytest.mark.parametrize("fraction", ["0", "1", "-0.5", "2"])
def test_bad_test_fraction_is_a_one_line_error(barista, tmp_path, capsys, fraction):
    status = barista(["data", "digits", "--out", str(tmp_path / "x"), "--test-fraction", fraction])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "--test-fraction" in err
    assert not (tmp_path / "x").exists()


def test_out_is_a_file_is_an_error(barista, tmp_path, capsys):
    (tmp_path / "f").write_text("")
    assert barista(["data", "digits", "--out", str(tmp_path / "f")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_missing_arguments_exit_2(barista, capsys):
    for argv in (["data"], ["data", "digits"], ["data", "mnist", "--out", "x"]):
        with pytest.raises(SystemExit) as exc:
            barista(argv)
        assert exc.value.code == 2
    capsys.readouterr()
