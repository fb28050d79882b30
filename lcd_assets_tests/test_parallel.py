"""map_in_processes (lcd_core._parallel): the same list, in order, in spawned processes or here."""

from __future__ import annotations

import operator

from lcd_core._parallel import map_in_processes


def test_processes_give_the_list_in_order_and_one_process_runs_here():
    items = [(i, i + 1) for i in range(5)]
    assert map_in_processes(sum, items, 2, one_blas_thread=True) == [2 * i + 1 for i in range(5)]
    assert map_in_processes(operator.neg, [3, 1], 1) == [-3, -1]
    assert map_in_processes(operator.neg, [], 2) == []
