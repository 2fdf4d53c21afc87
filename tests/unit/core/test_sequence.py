"""The timestamp-ordered merge of the memory's inputs (streams.core.sequence), with no broker."""
from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.sequence import Sequencer

F, I = "features", "interactions"


def everything_caught_up(topic, partition, next_offset):
    return True


def nothing_caught_up(topic, partition, next_offset):
    return False


def drain(seq: Sequencer, caught_up=everything_caught_up, now=0.0, limit=10_000, paused=frozenset()):
    return [(h.topic, h.partition, h.offset) for h in seq.pop_ready(caught_up, now, limit, paused)]


def test_heads_are_merged_by_timestamp_with_features_first_on_ties():
    seq = Sequencer((F, I), max_idle_s=1.0)
    for offset, ts in enumerate([1.0, 3.0, 5.0]):
        seq.push(F, 0, offset, ts, None)
    for offset, ts in enumerate([2.0, 3.0, 4.0]):
        seq.push(I, 0, offset, ts, None)
    assert drain(seq) == [(F, 0, 0), (I, 0, 0), (F, 0, 1), (I, 0, 1), (I, 0, 2), (F, 0, 2)]
    assert seq.held == 0


def test_a_partitions_own_order_is_kept_even_when_its_timestamps_go_back():
    seq = Sequencer((F, I), max_idle_s=1.0)
    for offset, ts in enumerate([5.0, 1.0]):
        seq.push(F, 0, offset, ts, None)
    seq.push(I, 0, 0, 3.0, None)
    assert drain(seq) == [(I, 0, 0), (F, 0, 0), (F, 0, 1)]


def test_a_head_waits_while_the_other_input_may_hold_something_earlier():
    seq = Sequencer((F, I), max_idle_s=1.0)
    seq.push(F, 0, 0, 10.0, None)
    assert drain(seq, nothing_caught_up, now=0.5) == []
    asked = []

    def caught_up(topic, partition, next_offset):
        asked.append((topic, partition, next_offset))
        return topic == I

    assert drain(seq, caught_up, now=0.5) == [(F, 0, 0)]
    assert asked == [(I, 0, None)], "only the input without a head is asked, with what was delivered of it"


def test_the_other_input_is_asked_from_the_offset_after_its_last_record():
    seq = Sequencer((F, I), max_idle_s=1.0)
    seq.push(I, 2, 41, 1.0, None)
    assert drain(seq) == [(I, 2, 41)]
    seq.push(F, 2, 7, 2.0, None)
    asked = []
    seq.pop_ready(lambda t, p, n: asked.append((t, p, n)) or False, 0.0, 10)
    assert asked == [(I, 2, 42)]


def test_a_partition_waiting_max_idle_for_a_silent_input_releases_its_head_and_counts_it():
    seq = Sequencer((F, I), max_idle_s=1.0)
    seq.push(F, 0, 0, 10.0, None)
    assert drain(seq, nothing_caught_up, now=5.0) == [], "the idle clock starts when the waiting does"
    assert drain(seq, nothing_caught_up, now=5.99) == []
    assert drain(seq, nothing_caught_up, now=6.0) == [(F, 0, 0)]
    assert seq.released == 1


def test_a_record_held_behind_a_backlog_is_not_released_when_the_backlog_runs_dry_for_a_moment():
    """A replay: an interaction fetched early waits behind thousands of earlier features. Between
    two fetches the features' buffer is empty for a moment; that is no reason to let it go first."""
    seq = Sequencer((F, I), max_idle_s=1.0)
    seq.push(I, 0, 0, 10_000.0, "an interaction after all of them")
    for offset in range(100):
        seq.push(F, 0, offset, float(offset), offset)
    now = 0.0
    out = []
    for fetch in range(1, 6):  # the features keep coming, 100 per fetch, a few seconds in all
        now += 0.7
        out += drain(seq, nothing_caught_up, now=now)
        for offset in range(100 * fetch, 100 * fetch + 100):
            seq.push(F, 0, offset, float(offset), offset)
    out += drain(seq, nothing_caught_up, now=now + 0.5)
    assert (I, 0, 0) not in out and seq.released == 0
    rest = drain(seq, lambda t, p, n: True, now=now + 0.5)
    assert rest == [(I, 0, 0)], "after the features before it, once they are all in"
    assert len(out) == 600


def test_partitions_do_not_wait_for_each_other():
    seq = Sequencer((F, I), max_idle_s=1.0)
    seq.push(F, 0, 0, 1.0, None)
    seq.push(F, 1, 0, 1.0, None)
    assert drain(seq, lambda t, p, n: p == 1) == [(F, 1, 0)]
    assert seq.held == 1


def test_abandon_forgets_what_is_held_and_where_the_inputs_were():
    seq = Sequencer((F, I), max_idle_s=1.0)
    seq.push(F, 0, 5, 1.0, "a")
    seq.push(F, 1, 9, 1.0, "b")
    dropped = seq.abandon(lambda p: p == 0)
    assert [h.item for h in dropped] == ["a"]
    assert seq.next_offset(F, 0) is None and seq.next_offset(F, 1) == 10
    assert seq.held == 1 and seq.partitions() == [1]


streams_ = st.lists(st.tuples(st.sampled_from([F, I]), st.integers(0, 2), st.integers(0, 20)), max_size=60)


@settings(max_examples=200, deadline=None)
@given(records=streams_, seed=st.integers(0, 2**32 - 1), batch=st.integers(1, 7))
def test_the_sequence_does_not_depend_on_arrival_interleaving_or_batch_size(records, seed, batch):
    """Live, the two inputs arrive interleaved by fetch timing; a replay sees another interleaving.
    With both inputs known in full (a replay, or caught-up inputs), the sequence is the same."""
    per_tp: dict = {}
    logs = []
    for topic, partition, ts in records:
        offset = per_tp.get((topic, partition), 0)
        per_tp[(topic, partition)] = offset + 1
        logs.append((topic, partition, offset, float(ts)))

    def run(order, limit):
        seq = Sequencer((F, I), max_idle_s=1e9)
        out = []
        ends = {(t, p): n for (t, p), n in per_tp.items()}

        def caught_up(topic, partition, next_offset):
            return (next_offset or 0) >= ends.get((topic, partition), 0)

        for topic, partition, offset, ts in order:
            seq.push(topic, partition, offset, ts, None)
            out += drain(seq, caught_up, limit=limit)
        while seq.held:
            out += drain(seq, caught_up, limit=limit)
        return out

    rng = random.Random(seed)
    # Another arrival order that keeps each input partition's own order (as Kafka delivers it).
    queues: dict = {}
    for rec in logs:
        queues.setdefault(rec[:2], []).append(rec)
    shuffled = []
    while queues:
        key = rng.choice(sorted(queues))
        shuffled.append(queues[key].pop(0))
        if not queues[key]:
            del queues[key]

    def per_partition(out):
        return {p: [r for r in out if r[1] == p] for p in range(3)}

    reference = run(logs, 10_000)
    assert sorted(reference) == sorted(rec[:3] for rec in logs), "every record once"
    assert per_partition(run(shuffled, batch)) == per_partition(reference)


def test_abandon_from_forgets_one_input_partition_from_an_offset_on():
    seq = Sequencer((F, I), max_idle_s=1.0)
    for offset in range(5):
        seq.push(F, 0, offset, float(offset), offset)
    dropped = seq.abandon_from(F, 0, 3)
    assert [h.item for h in dropped] == [3, 4]
    assert seq.next_offset(F, 0) == 3 and seq.held == 3
    assert drain(seq) == [(F, 0, 0), (F, 0, 1), (F, 0, 2)]


def test_a_paused_partition_gives_nothing_and_does_not_count_as_idle():
    seq = Sequencer((F, I), max_idle_s=1.0)
    seq.push(F, 0, 0, 1.0, None)
    seq.push(F, 1, 0, 1.0, None)
    assert drain(seq, nothing_caught_up, now=0.0, paused=frozenset({0})) == []
    assert drain(seq, everything_caught_up, now=5.0, paused=frozenset({0})) == [(F, 1, 0)]
    assert drain(seq, everything_caught_up, now=5.0) == [(F, 0, 0)] and seq.released == 0


def test_held_in_counts_one_input_partitions_waiting_records():
    seq = Sequencer((F, I), max_idle_s=1.0)
    for offset in range(4):
        seq.push(F, 0, offset, float(offset), None)
    seq.push(I, 0, 0, 10.0, None)
    assert (seq.held_in(F, 0), seq.held_in(I, 0), seq.held_in(F, 1)) == (4, 1, 0)
    drain(seq, limit=3)
    assert (seq.held_in(F, 0), seq.held_in(I, 0)) == (1, 1)
