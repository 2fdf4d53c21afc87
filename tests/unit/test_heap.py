"""The worker's start-up heap freeze (streams.app.freeze_start_up_heap) and the timing of its collections."""
from __future__ import annotations

import gc
import weakref

from streams.app import freeze_start_up_heap
from streams.metrics import Metrics


class Node:
    pass


def cycle() -> tuple[Node, weakref.ref]:
    node = Node()
    node.self = node  # only the cyclic collector can free it
    return node, weakref.ref(node)


def test_freezing_collects_garbage_then_freezes_what_is_alive_until_a_second_call():
    garbage, garbage_ref = cycle()
    del garbage
    alive, alive_ref = cycle()
    try:
        freeze_start_up_heap()
        assert garbage_ref() is None
        assert gc.get_freeze_count() > 0

        del alive  # garbage now, but frozen: full collections leave it alone
        gc.collect()
        assert alive_ref() is not None
        freeze_start_up_heap()  # unfreezes first, so a second call reclaims it
        assert alive_ref() is None
    finally:
        gc.unfreeze()


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
