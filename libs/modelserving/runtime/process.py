"""Per-process set-up of a serving worker, all in one place.

- The allocator (`keep_large_allocations_on_the_heap`): glibc serves every
  allocation over 128 kB with a fresh mmap and hands it back when freed, and trims
  the heap's free top beyond twice that. A batch request allocates many such buffers
  (its body, NumPy temporaries, the response), so each request page-faulted
  megabytes of zeroed memory. Keeping them on the heap costs at most `HEAP_BYTES` x 2
  of freed memory held per worker.
- Native thread pools (BLAS, OpenMP): `INFERENCE_THREADS` per worker, so the
  workers of a pod do not fight over its cores.
- The GIL's switch interval: the event loop thread waits for the inference thread
  to hand the GIL over once per step of its work (each read, write and callback);
  at CPython's default interval a probe behind a busy model waited for tens of them.
- The collector (`freeze_survivors`): what is alive once the model is loaded lives
  as long as the process, so it is moved out of the collector's generations, which
  every full collection would otherwise walk.
- Termination (`on_termination`): SIGTERM starts the HTTP server's own drain; the worker's
  other parts (the gRPC server) must start theirs at the same moment, not after it.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from threadpoolctl import threadpool_limits

from modelserving.settings import Settings

# From glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
HEAP_BYTES = 32 << 20  # glibc's largest M_MMAP_THRESHOLD on 64-bit
GIL_SWITCH_SECONDS = 0.0005


def set_up_worker(settings: Settings) -> None:
    """Everything a serving process sets once, before it loads its model."""
    keep_large_allocations_on_the_heap()
    threadpool_limits(settings.inference_threads)
    sys.setswitchinterval(GIL_SWITCH_SECONDS)


def freeze_survivors() -> None:
    """After start-up: keep everything alive now out of the collector's generations."""
    gc.collect()
    gc.freeze()


def keep_large_allocations_on_the_heap() -> bool:
    """Apply the settings to this process; False where the C library has no `mallopt` (not glibc)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_THRESHOLD, HEAP_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, 2 * HEAP_BYTES))


@contextmanager
def on_termination(callback: Callable[[], object]) -> Iterator[None]:
    """While the block runs, call `callback` on the running event loop at SIGTERM or SIGINT, and
    then the handler the server installed (uvicorn installs its own with `signal.signal`, which
    begins its drain). Outside the main thread (a test client's lifespan) there is no signal."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    previous = {int(number): signal.getsignal(number) for number in signals}

    def handler(number: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(callback)
        chained = previous[number]
        if callable(chained):
            chained(number, frame)
        elif chained == signal.SIG_DFL:
            signal.signal(number, signal.SIG_DFL)
            signal.raise_signal(number)

    for number in signals:
        signal.signal(number, handler)
    try:
        yield
    finally:
        for restored, chained in previous.items():
            if signal.getsignal(restored) is handler:
                signal.signal(restored, chained)
