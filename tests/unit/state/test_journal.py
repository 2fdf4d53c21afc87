"""Exactly-once application over a changelog cut anywhere: the journal, with the real stores, over
plain dicts. A "changelog" here is the ordered list of every table write, as Kafka keeps it."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.state import JournalEntry, RecentRecognition
from streams.core.patterns import PatternConfig
from streams.state.checkpoint import Checkpoint
from streams.state.journal import PART_BYTES, Journal
from streams.state.patterns import PatternStore, Prefixed, RecentRecognitions


class LoggedTable(dict):
    """A table that records every write in order: its changelog."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.log: list[tuple[str, bytes | None]] = []

    def __setitem__(self, key, value) -> None:
        self.log.append((key, value))
        super().__setitem__(key, value)

    def pop(self, key, default=None):
        self.log.append((key, None))
        return super().pop(key, default)


def restore(log: list[tuple[str, bytes | None]]) -> LoggedTable:
    """What a worker restores from a changelog that ends after `log`."""
    table = LoggedTable()
    for key, value in log:
        if value is None:
            dict.pop(table, key, None)
        else:
            dict.__setitem__(table, key, value)
    return table


def worker(table, part_bytes: int = PART_BYTES):
    journal = Journal(table, part_bytes)
    store = PatternStore(Prefixed(journal, "p/"), Prefixed(journal, "s/"), PatternConfig(max_patterns=6))
    recent = RecentRecognitions(Prefixed(journal, "r/"), Prefixed(journal, "rq/"), capacity=8)
    return Checkpoint(journal, caches=(store, recent)), store, recent


def apply(checkpoint, store, recent, offset: int, vector: np.ndarray) -> bool:
    """One record, as agents.memory.apply_steps applies a batch of one; False for a duplicate."""
    with checkpoint.transaction("s") as tx:
        if tx.is_applied("audio-features", offset):
            return False
        learned, change = store.learn(store.space("s"), f"e{offset}", vector, 1000.0 + offset)
        recent.remember("s", RecentRecognition(f"e{offset}", learned.pattern_id, learned.similarity,
                                               learned.confidence, learned.new, offset))
        tx.applied("audio-features", offset)
    return True


def records(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(9, 12))
    return [(centres[rng.integers(9)] + rng.normal(scale=0.1, size=12)).astype(np.float32) for _ in range(n)]


def test_reads_see_the_records_own_writes_and_the_journal_goes_first():
    table = LoggedTable({"a": b"1"})
    journal = Journal(table)
    with pytest.raises(RuntimeError):
        journal["x"] = b"no transaction"
    journal.begin()
    journal["b"] = b"2"
    assert journal.pop("a") == b"1" and journal.get("a") is None and journal["b"] == b"2"
    journal.keep("s", {"audio-features": 7})
    assert table == {"a": b"1"}, "nothing reaches the table before commit"
    assert journal.get("a") is None and journal["b"] == b"2", "reads see what is held"
    journal.commit("s")
    assert [k for k, _ in table.log] == ["j/s", "b", "a"]
    assert table.get("b") == b"2" and "a" not in table
    assert journal.is_applied("s", "audio-features", 7) and not journal.is_applied("s", "audio-features", 8)
    assert not journal.is_applied("s", "interactions", 0)
    journal.begin()
    journal["c"] = b"3"
    journal.rollback()
    assert "c" not in table


def value(round_: int, k: int) -> bytes:
    return f'"{10 * round_ + k}{"x" * 8}"'.encode()  # every table value is a JSON document


def test_a_large_commit_is_journaled_in_parts_in_the_slot_the_last_entry_does_not_use():
    table = LoggedTable()
    journal = Journal(table, part_bytes=40)
    slots = []
    for round_ in range(3):
        journal.begin()
        for k in range(5):
            journal[f"k{k}"] = value(round_, k)
        journal.keep("s", {"audio-features": round_})
        table.log.clear()
        journal.commit("s")
        entry = JournalEntry.decode(table["j/s"])
        parts = [key for key, _ in table.log if key.startswith("j/s\x1f")]
        assert entry.parts == len(parts) > 1 and entry.writes == ()
        assert [key for key, _ in table.log][len(parts)] == "j/s", "the parts, then the entry, then the writes"
        assert all(key.startswith(f"j/s\x1f{entry.slot}.") for key in parts)
        slots.append(entry.slot)
        del table["k4"]  # cut short: repair restores it from the parts
        journal.forget()
        assert journal.repair("s") and table["k4"] == value(round_, 4)
    assert slots == [0, 1, 0]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 40), st.integers(1, 6), st.sampled_from([200, PART_BYTES]), st.data())
def test_a_crash_anywhere_then_redelivery_gives_the_memory_of_a_run_without_crash(seed, n, every, part_bytes, data):
    """Commits of `every` records (journaled in parts when they are over `part_bytes`), a changelog
    cut anywhere, and the records since the last commit delivered again (committed by other batches)."""
    vectors = records(n, seed)
    reference = LoggedTable()
    j, s, r = worker(reference, part_bytes)
    for offset, vec in enumerate(vectors):
        assert apply(j, s, r, offset, vec)
        if offset % every == every - 1 or offset == n - 1:
            j.journal.commit("s")

    # The crashed run: the changelog is cut at any write (also inside a commit's writes); the
    # consumer resumes from a committed offset, at most the number of fully journaled records.
    cut = data.draw(st.integers(0, len(reference.log)))
    entries = [JournalEntry.decode(value) for key, value in reference.log[:cut] if key == "j/s"]
    durable = entries[-1].applied["audio-features"] + 1 if entries else 0
    resume = data.draw(st.integers(0, durable))
    table = restore(reference.log[:cut])
    j, s, r = worker(table, part_bytes)
    again = data.draw(st.integers(1, 6))
    applied = 0
    for offset in range(resume, n):
        applied += apply(j, s, r, offset, vectors[offset])
        if offset % again == again - 1:
            j.journal.commit("s")
    j.journal.commit("s")
    assert applied == n - durable, "a redelivered record is recognized and skipped"
    j.journal.repair("s")  # as the space's next record would
    state = lambda t: {k: v for k, v in t.items() if not k.startswith("j/")}  # noqa: E731
    assert state(table) == state(reference), "the same memory as the run without a crash"
    assert j.journal.applied("s") == {"audio-features": n - 1}
