"""jsxcore.bulk.fewer_collections: raised while any bulk job runs, restored after the last."""

from __future__ import annotations

import gc

import pytest

from jsxcore.bulk import BULK_GC_THRESHOLD, fewer_collections


def test_threshold_raised_while_nested_jobs_run_and_restored_after() -> None:
    before = gc.get_threshold()
    with fewer_collections():
        assert gc.get_threshold()[0] == BULK_GC_THRESHOLD
        with fewer_collections():
            assert gc.get_threshold()[0] == BULK_GC_THRESHOLD
        assert gc.get_threshold()[0] == BULK_GC_THRESHOLD  # the outer job still runs
    assert gc.get_threshold() == before


def test_restored_when_the_job_fails() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), fewer_collections():
        raise RuntimeError("boom")
    assert gc.get_threshold() == before


def test_collection_switched_off_stays_off() -> None:
    before = gc.get_threshold()
    gc.set_threshold(0, *before[1:])
    try:
        with fewer_collections():
            assert gc.get_threshold()[0] == 0
        assert gc.get_threshold()[0] == 0
    finally:
        gc.set_threshold(*before)
