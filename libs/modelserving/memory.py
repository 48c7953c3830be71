"""Allocator settings for serving: large temporaries reuse heap memory instead of fresh pages.

glibc serves every allocation over 128 kB with a new mmap and hands it back to the
kernel when freed, and trims the heap's free top beyond twice that. A batch
request allocates many such buffers (its body, NumPy temporaries, the response),
so each request page-faulted megabytes of zeroed memory: about a third of a
1000-passenger Titanic request (22 ms -> 14-18 ms with these settings). Keeping
them on the heap costs at most `HEAP_BYTES` x 2 of freed memory held per worker.
"""

from __future__ import annotations

import ctypes

# From glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
HEAP_BYTES = 32 << 20  # glibc's largest M_MMAP_THRESHOLD on 64-bit


def keep_large_allocations_on_the_heap() -> bool:
    """Apply the settings to this process; False where the C library has no `mallopt` (not glibc)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_THRESHOLD, HEAP_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, 2 * HEAP_BYTES))
