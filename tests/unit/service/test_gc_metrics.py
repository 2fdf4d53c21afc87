"""The timing of the worker's garbage collections (Metrics.watch_gc)."""
from __future__ import annotations

import gc

from streams.service.metrics import Metrics


def test_every_collection_is_timed_by_the_oldest_generation_it_collected():
    metrics = Metrics.create()
    stop = metrics.watch_gc()
    try:
        gc.collect()
        gc.collect(0)
    finally:
        stop()
    gc.collect()  # not timed any more

    def count(generation: str) -> float:
        return metrics.registry.get_sample_value("fms_gc_pause_seconds_count", {"generation": generation})

    assert count("2") == 1
    assert count("0") >= 1  # ours, plus any the allocations in between triggered


def test_the_start_up_freeze_leaves_the_heap_out_and_still_collects_what_comes_after():
    import weakref

    from streams.ops.cli import freeze_start_up_heap

    class Node:
        pass

    try:
        freeze_start_up_heap()
        assert gc.get_freeze_count() > 1000  # the imported modules' objects
        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle: only a collection frees it
        gone = weakref.ref(a)
        del a, b
        gc.collect()
        assert gone() is None
    finally:
        gc.unfreeze()
