"""``map_in_processes``: independent calls side by side in spawned processes (the MoA reading
probes, MolCLIP's evaluation models), in order, or here when one process is asked for."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["local_processes", "map_in_processes", "single_blas_threads"]

#: the variables OpenBLAS, OpenMP and MKL read when they load
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def local_processes() -> int:
    """Processes a step spreads independent work over on this machine: one per core, at most two."""
    return max(1, min(2, os.cpu_count() or 1))


def map_in_processes(fn: Callable[[Any], Any], items: Sequence[Any], workers: int, *,
                     one_blas_thread: bool = False) -> list:
    """``[fn(x) for x in items]``, in ``workers`` spawned processes when more than one.

    ``one_blas_thread``: each process limits its BLAS pools to one thread (:func:`single_blas_threads`),
    so that the processes do not oversubscribe the cores with BLAS threads of their own.
    """
    if workers <= 1 or len(items) < 2:
        return [fn(x) for x in items]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(min(workers, len(items)), mp_context=mp.get_context("spawn"),
                             initializer=single_blas_threads if one_blas_thread else None) as pool:
        return list(pool.map(fn, items))


def single_blas_threads() -> None:
    """One thread for every BLAS / OpenMP pool of this process, those loaded later included.

    ``threadpoolctl`` limits only the libraries already loaded; a library loaded afterwards (NumPy's
    and SciPy's OpenBLAS, imported with scikit-learn by the first fit) starts its default pool, and two
    processes with two spinning OpenBLAS threads each on two cores made every probe fit 50× slower.
    The environment variables those libraries read when they load cover the rest.
    """
    from threadpoolctl import threadpool_limits

    for name in BLAS_THREAD_VARIABLES:
        os.environ[name] = "1"
    threadpool_limits(1)
