"""The thread pool of the memory-bound passes: pieces partition the range, results do not
depend on the thread count, errors reach the caller."""

import numpy as np
import pytest

from caffe_bridge import parallel


@pytest.fixture
def two_threads(monkeypatch):
    monkeypatch.setattr(parallel, "MIN_PARALLEL_ELEMENTS", 0)
    before = parallel.num_threads()
    parallel.set_num_threads(2)
    yield
    parallel.set_num_threads(before)


@pytest.mark.parametrize("n,block", [(1, None), (7, None), (100, None), (100, 9), (3, 1)])
def test_pieces_cover_the_range_once(two_threads, n, block):
    seen = np.zeros(n, dtype=np.int64)
    pieces = []

    def body(lo: int, hi: int) -> None:
        pieces.append((lo, hi))
        seen[lo:hi] += 1

    parallel.parallel_for(n, body, elements=n, block=block)
    np.testing.assert_array_equal(seen, 1)
    if block:
        assert max(hi - lo for lo, hi in pieces) <= block


def test_parallel_result_equals_serial(two_threads):
    x = np.random.default_rng(9).standard_normal((64, 300)).astype(np.float32)
    out = np.empty_like(x)

    def body(lo: int, hi: int) -> None:
        np.exp(x[lo:hi], out=out[lo:hi])
        out[lo:hi] *= x[lo:hi]

    parallel.parallel_for(64, body, elements=x.size)
    np.testing.assert_array_equal(out, np.exp(x) * x)


def test_an_error_in_a_piece_is_raised_in_the_caller(two_threads):
    def body(lo: int, hi: int) -> None:
        if lo == 0:
            raise KeyError("piece 0")

    with pytest.raises(KeyError, match="piece 0"):
        parallel.parallel_for(10, body, elements=10)


def test_thread_count_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        parallel.set_num_threads(0)
