"""``map_in_processes``: independent calls side by side in spawned processes (the MoA reading
probes, MolCLIP's evaluation models), in order, or here when one process is asked for."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["map_in_processes"]


def map_in_processes(fn: Callable[[Any], Any], items: Sequence[Any], workers: int, *,
                     one_blas_thread: bool = False) -> list:
    """``[fn(x) for x in items]``, in ``workers`` spawned processes when more than one.

    ``one_blas_thread``: each process limits its BLAS pools to one thread (``threadpoolctl``), so
    that the processes do not oversubscribe the cores with BLAS threads of their own.
    """
    if workers <= 1 or len(items) < 2:
        return [fn(x) for x in items]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(min(workers, len(items)), mp_context=mp.get_context("spawn"),
                             initializer=_one_blas_thread if one_blas_thread else None) as pool:
        return list(pool.map(fn, items))


def _one_blas_thread() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
