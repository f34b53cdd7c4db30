"""Checked downloads: checksum files, URL joining, hashing (the network side is tested
against a local HTTP server in tests/caffe_bridge/test_converters.py)."""

import hashlib

import pytest

from barista_base.download import join_url, read_sha256sums, sha256_file
from barista_base.errors import InputError

A, B = "a" * 64, "0123456789ABCDEF" * 4


def test_sha256sums_file_as_sha256sum_writes_it(tmp_path):
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(f"# mirror\n{A}  train.gz\n\n{B} *sub/t10k.gz\n")
    assert read_sha256sums(sums) == {"train.gz": A, "t10k.gz": B.lower()}


@pytest.mark.parametrize("line", ["abc  train.gz", f"{A}", f"{'g' * 64}  x.gz"])
def test_bad_sha256sums_line_names_file_and_line(tmp_path, line):
    sums = tmp_path / "sums.txt"
    sums.write_text(f"{A}  ok.gz\n{line}\n")
    with pytest.raises(InputError, match=r"sums\.txt:2: expected '<sha256>  <file name>'"):
        read_sha256sums(sums)
    with pytest.raises(InputError, match="cannot read the checksum file"):
        read_sha256sums(tmp_path / "missing")


def test_join_url_and_sha256_file(tmp_path):
    assert join_url("http://h/mnist/", "x.gz") == join_url("http://h/mnist", "x.gz")
    assert join_url("http://h/mnist", "x.gz") == "http://h/mnist/x.gz"
    data = bytes(range(256)) * 5000  # more than one read
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()
