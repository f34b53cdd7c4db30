"""A small thread pool for the runtime's memory-bound passes (im2col, col2im, layout
copies, pooling).

numpy releases the GIL inside its copy and ufunc loops, so a pass over a large array
split into independent pieces runs on several cores from plain Python threads. The
matrix products already use the BLAS library's own threads; this pool covers what
runs between them, so that with ``n`` threads every part of a step can use ``n``
cores.

The thread count is :func:`num_threads`: ``OPENBLAS_NUM_THREADS``, else
``OMP_NUM_THREADS``, else the CPUs this process may run on, until
:func:`set_num_threads` says otherwise; with one thread every pass runs inline. Work
is cut into more pieces than there are threads, and the calling thread takes pieces
as well, so a helper that another process keeps off its core, or that wakes late,
delays a pass by at most the piece it holds. Every piece writes its own part
of the output and each element is computed the same way whichever thread runs it, so
results never depend on the thread count.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

#: Below this many elements a pass runs in the calling thread alone: waking a helper
#: thread and joining it costs tens of microseconds.
MIN_PARALLEL_ELEMENTS = 1 << 21
#: Items per piece for passes of several operations over the same data: about this many
#: elements (1 MiB of float32) stay in a core's cache between the operations.
CACHE_ELEMENTS = 1 << 18
#: Pieces per thread: more balance the load when a core is busy with other work, fewer
#: cost less (each piece is at least one GIL hand-over).
PIECES_PER_THREAD = 2

_threads: int | None = None
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()


def _default_threads() -> int:
    """The BLAS library's thread setting, else the CPUs this process may use."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").split(",")[0].strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def num_threads() -> int:
    """How many threads (the caller's included) a parallel pass uses."""
    global _threads
    if _threads is None:
        _threads = _default_threads()
    return _threads


def set_num_threads(n: int) -> None:
    """Use ``n`` threads (>= 1) from now on; the BLAS library's own count is its own
    setting (``OPENBLAS_NUM_THREADS``, or ``threadpoolctl`` at run time)."""
    global _threads, _pool
    if int(n) < 1:
        raise ValueError(f"the thread count must be at least 1, got {n}")
    with _pool_lock:
        _threads = int(n)
        if _pool is not None and _pool_size != _threads - 1:
            _pool.shutdown(wait=False)
            _pool = None


def _helpers() -> ThreadPoolExecutor:
    """The helper threads (one fewer than :func:`num_threads`), started on first use."""
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None:
            _pool_size = num_threads() - 1
            _pool = ThreadPoolExecutor(max_workers=_pool_size, thread_name_prefix="caffe_bridge")
        return _pool


def _forget_pool() -> None:
    """In a forked child the parent's helper threads do not exist: start afresh."""
    global _pool
    _pool = None


os.register_at_fork(after_in_child=_forget_pool)


class _Job:
    """``body`` over the pieces of ``range(n)``, taken in turn by whichever thread is free."""

    def __init__(self, n: int, pieces: int, body: Callable[[int, int], None]) -> None:
        self.bounds = [n * i // pieces for i in range(pieces + 1)]
        self.pieces = pieces
        self.body = body
        self.next = itertools.count()  # next() on a count is atomic under the GIL
        self.left = pieces
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.error: BaseException | None = None

    def work(self) -> None:
        while (i := next(self.next)) < self.pieces:
            try:
                self.body(self.bounds[i], self.bounds[i + 1])
            except BaseException as exc:  # re-raised in the calling thread
                self.error = self.error or exc
            with self.lock:
                self.left -= 1
                if self.left == 0:
                    self.done.set()


def parallel_for(
    n: int, body: Callable[[int, int], None], *, elements: int, block: int | None = None
) -> None:
    """Call ``body(lo, hi)`` on pieces ``[lo, hi)`` that partition ``range(n)``, on up to
    :func:`num_threads` threads; return when all are done (re-raising a piece's error).

    ``elements`` is the size of the whole pass (array elements read or written): passes
    under :data:`MIN_PARALLEL_ELEMENTS`, and any pass with one thread, run in the caller.
    ``block`` caps a piece at that many items, also in the caller: a pass of several
    operations then makes them all on one cache-sized piece before the next. The pieces
    must be independent: each writes only its own part of the output. A piece should be
    one or a few large numpy operations: the GIL passes between threads at every
    operation, and hand-overs cost microseconds.
    """
    threads = num_threads()
    share = threads > 1 and elements >= MIN_PARALLEL_ELEMENTS
    pieces = -(-n // block) if block else 1
    if share:
        pieces = max(pieces, PIECES_PER_THREAD * threads)
    pieces = min(n, pieces)
    if pieces < 2:
        body(0, n)
        return
    job = _Job(n, pieces, body)
    if share:
        pool = _helpers()
        for _ in range(min(threads, pieces) - 1):
            pool.submit(job.work)
    job.work()
    job.done.wait()
    # A helper that wakes after the last piece finds nothing to do; until then its queued
    # call holds the job, which must not keep the pass's arrays alive.
    job.body = _nothing
    if job.error is not None:
        raise job.error


def _nothing(lo: int, hi: int) -> None:
    return None
