"""Helpers for bulk work inside a service process (imports, payment batches)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: Cyclic-GC generation-0 threshold while bulk work runs. A 100k-row roster
#: import or a million-payment batch keeps millions of container objects
#: alive (rows, drafts, pages); at Python's default of 700 the collector runs
#: thousands of times and its passes over them cost a fifth or more of the
#: work. Only how often it runs changes (process-wide, so a counter restores
#: the threshold when the last bulk job ends; tested in members and funds).
BULK_GC_THRESHOLD = 50_000
_state: list[Any] = [0, None]  # jobs running, thresholds before the first


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Collect cyclic garbage less often for the duration of the block."""
    if _state[0] == 0:
        before = _state[1] = gc.get_threshold()
        if 0 < before[0] < BULK_GC_THRESHOLD:  # 0: automatic collection is off; leave it
            gc.set_threshold(BULK_GC_THRESHOLD, *before[1:])
    _state[0] += 1
    try:
        yield
    finally:
        _state[0] -= 1
        if _state[0] == 0:
            gc.set_threshold(*_state[1])
