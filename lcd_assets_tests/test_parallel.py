"""map_in_processes (lcd_core._parallel): the same list, in order, in spawned processes or here."""

from __future__ import annotations

import operator

from lcd_core._parallel import map_in_processes


def test_processes_give_the_list_in_order_and_one_process_runs_here():
    items = [(i, i + 1) for i in range(5)]
    assert map_in_processes(sum, items, 2, one_blas_thread=True) == [2 * i + 1 for i in range(5)]
    assert map_in_processes(operator.neg, [3, 1], 1) == [-3, -1]
    assert map_in_processes(operator.neg, [], 2) == []


def _blas_threads(_: int) -> list[tuple[str, int]]:
    import scipy.linalg  # noqa: F401  (loads SciPy's own OpenBLAS after the limit was set)
    import sklearn.linear_model  # noqa: F401
    from threadpoolctl import threadpool_info

    return sorted((i["internal_api"], i["num_threads"]) for i in threadpool_info())


def test_one_blas_thread_holds_for_libraries_loaded_after_the_limit():
    for pools in map_in_processes(_blas_threads, [0, 1], 2, one_blas_thread=True):
        assert pools and all(n == 1 for _, n in pools), pools
