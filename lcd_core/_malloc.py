"""Keep freed memory in the process instead of handing it back to the kernel after every array.

glibc's malloc serves blocks over 128 KiB (a 224² float32 plane is 196 KiB) with their own
``mmap`` and unmaps them on ``free``, so every temporary array of the image code and every
activation of the ViT costs fresh zeroed pages: a demo took some 50 million page faults and a
sixth of its CPU time in the kernel. Raising the mmap threshold to 32 MiB and the trim threshold
to 64 MiB lets freed blocks be reused; measured on one core, the ViT went from 0.68 to 0.82 of the
bf16 GEMM rate (``benchmarks/bench_demo.py``; a 2 GiB trim threshold was no faster and left the
demo's largest process at 1.97 GiB). At most 64 MiB of free heap is kept beyond what is in use.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 64 * 2**20


@functools.cache
def retain_freed_memory() -> bool:
    """Set the thresholds once per process; False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
