"""Pattern state in the changelogged RocksDB table, and the in-process matching index built from it.

The table is the truth; `SpaceMemory` objects are a cache that makes matching a single
matrix-vector product. The table is read through a small Mapping protocol so this module has no
faust import and runs over a plain dict in unit tests.

The worker keeps all of its state in one table, `memory`, split by key prefix into views
(`Prefixed`), so that every write one input record causes lands in one changelog partition, in
order: the partition of the record's space (Kafka Streams' co-partitioning). Kafka keeps a
partition's order, so a restored table always holds a prefix of what the worker wrote.

  p/<space>/<pattern_id>  -> pattern state (schemas.state)
  s/<space>               -> SpaceState: the core's space-level state (centring mean, merge
                             aliases, ...) and the number of pattern-id pages
  s/<space>\x1f<n>         -> PatternPage: up to PAGE_SIZE of the space's pattern ids. A new
                             pattern rewrites one page, not a list of every id: the changelog
                             grows linearly with the patterns a space creates, not quadratically
  s/<space>\x1fb<n>        -> the calibration sample's slots n*SAMPLE_BLOCK.. as they filled, in
                             order (a block of states): a commit writes the few blocks its records
                             filled, not a value per record (at 500 records/s a new space's first
                             commit held 511 sample values of 567)
  s/<space>\x1fk<slot>     -> a sample slot written since (a replacement), which overrides its block;
                             also every slot of a state written before the blocks
  (streams.state.optimizations adds the optimization and recent-recognition views)
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass

import numpy as np
import orjson

from schemas.codec import decode_json, encode_json
from schemas.state import (PatternPage, RecentInteraction, RecentRecognition, SpaceState, decode_pattern_state,
                           decode_state_block, encode_pattern_state, encode_state_block)
from streams.core.resilience.limits import Limits, check_constraints, crossed_interval, evictions_needed
from streams.core.patterns import Learned, Pattern, PatternConfig, SpaceMemory


PAGE_SIZE = 256
# Calibration-sample slots per block (about 67 KB a block of 768-d records).
SAMPLE_BLOCK = 16
# Ring slots per value in a Recent ring.
RING_PAGE = 64


def pattern_key(space: str, pattern_id: str) -> str:
    return f"{space}/{pattern_id}"


def page_key(space: str, n: int) -> str:
    # \x1f never appears in a valid space name, so pages sit beside the space records.
    return f"{space}\x1f{n}"


def sample_key(space: str, slot: int) -> str:
    """A record of the space's calibration sample (streams.core.patterns.calibration), beside its pages."""
    return f"{space}\x1fk{slot}"


def sample_block_key(space: str, n: int) -> str:
    """Slots n*SAMPLE_BLOCK.. of the space's calibration sample, as they filled."""
    return f"{space}\x1fb{n}"


class Pages:
    """Which page holds each pattern id of one space; a new id goes to the lowest page with room."""

    def __init__(self, pages: list[set[str]]) -> None:
        self.pages = pages
        self.page_of = {pid: n for n, page in enumerate(pages) for pid in page}

    def remove(self, pattern_id: str) -> int | None:
        n = self.page_of.pop(pattern_id, None)
        if n is not None:
            self.pages[n].discard(pattern_id)
        return n

    def add(self, pattern_id: str) -> int:
        n = next((i for i, page in enumerate(self.pages) if len(page) < PAGE_SIZE), len(self.pages))
        if n == len(self.pages):
            self.pages.append(set())
        self.pages[n].add(pattern_id)
        self.page_of[pattern_id] = n
        return n


class Prefixed(MutableMapping):
    """One key prefix of a table, as a mapping of its own (the table's other views stay apart)."""

    def __init__(self, table: MutableMapping, prefix: str) -> None:
        self._table = table
        self._prefix = prefix

    def __getitem__(self, key: str):
        value = self._table.get(self._prefix + key)
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: str, default=None):
        value = self._table.get(self._prefix + key)
        return default if value is None else value

    def __setitem__(self, key: str, value) -> None:
        self._table[self._prefix + key] = value

    def __delitem__(self, key: str) -> None:
        del self._table[self._prefix + key]

    def pop(self, key: str, default=None):
        return self._table.pop(self._prefix + key, default)

    def __iter__(self):
        # Only for tests and tools: a scan of the whole table.
        n = len(self._prefix)
        return (k[n:] for k in list(self._table) if isinstance(k, str) and k.startswith(self._prefix))

    def __len__(self) -> int:
        return sum(1 for _ in self)


@dataclass(frozen=True)
class Change:
    """What one record (or one cleanup) did to a space, for the shell to emit."""

    events: tuple[tuple[Pattern, str], ...] = ()  # (pattern, "created" | "updated" | "merged" | "evicted")
    removed: tuple[str, ...] = ()                 # pattern ids that get a tombstone
    merged: tuple[tuple[str, str], ...] = ()      # (survivor, absorbed), in merge order

    def absorbed_by(self, survivor: str) -> tuple[str, ...]:
        """The ids `survivor` absorbed in this change, through chains (a absorbs b, then c absorbs a)."""
        into = dict((absorbed, s) for s, absorbed in self.merged)

        def final(pid: str) -> str:
            while pid in into:
                pid = into[pid]
            return pid

        return tuple(absorbed for _, absorbed in self.merged if final(absorbed) == survivor)


class PatternStore:
    def __init__(self, patterns: MutableMapping, spaces: MutableMapping, cfg: PatternConfig,
                 limits: Limits | None = None, observe_write: Callable[[float], None] | None = None,
                 thresholds: Mapping[str, float | None] | None = None) -> None:
        self._patterns = patterns
        # Per-space match thresholds (a number pins one, None calibrates); other spaces use cfg's.
        self._thresholds = dict(thresholds or {})
        self._observe_write = observe_write
        self._spaces = spaces
        self.cfg = cfg
        self.limits = limits or Limits()
        self._memories: dict[str, SpaceMemory] = {}
        self._pages: dict[str, Pages] = {}
        # space -> (block number, encoded entries of its slots so far) of the block being filled
        self._filling: dict[str, tuple[int, list[bytes]]] = {}

    def invalidate(self) -> None:
        """Drop every cached index. Called on rebalance: another worker may have moved a space on."""
        self._memories.clear()
        self._pages.clear()
        self._filling.clear()

    def space(self, space: str) -> SpaceMemory:
        memory = self._memories.get(space)
        if memory is None:
            memory = self._load(space)
            self._memories[space] = memory
        return memory

    def peek(self, space: str) -> SpaceMemory | None:
        """Read-only access that does not create an empty space."""
        if space in self._memories:
            return self._memories[space]
        if self._spaces.get(space) is None:
            return None
        return self.space(space)

    def config_of(self, space: str) -> PatternConfig:
        """The pattern config of one space: cfg, with the space's own threshold if one is set."""
        if space in self._thresholds:
            return dataclasses.replace(self.cfg, match_threshold=self._thresholds[space])
        return self.cfg

    def thresholds(self) -> dict[str, float]:
        """The match threshold each cached space decides with now."""
        return {space: memory.threshold for space, memory in self._memories.items()}

    def _load(self, space: str) -> SpaceMemory:
        memory = SpaceMemory(space, self.config_of(space))
        pages = self._load_pages(space)
        raw = self._spaces.get(space)
        if raw is None:
            return memory
        patterns = []
        for pattern_id in sorted(pages.page_of):  # the core restores its own order
            state = self._patterns.get(pattern_key(space, pattern_id))
            if state is not None:
                patterns.append(Pattern.from_state(decode_pattern_state(state)))
        sample, sample_patterns = [], []
        blocks: dict[int, list[dict]] = {}
        for slot in range(memory.cfg.calibration_sample if memory.calibrated else 0):
            record = self._sample_entry(space, slot, blocks)
            if record is None:  # slots fill in order and are only ever replaced
                break
            sample.append(record["vector"])
            sample_patterns.append(record.get("pattern", ""))  # "": written before it was kept
        memory.restore(patterns, SpaceState.decode(raw).core, sample, sample_patterns)
        return memory

    def _sample_entry(self, space: str, slot: int, blocks: dict[int, list[dict]]) -> dict | None:
        """A sample slot's record: its own key if it was written since its block (or before blocks
        existed), else its block's entry; None: not filled."""
        entry = self._spaces.get(sample_key(space, slot))
        if entry is not None:
            return decode_pattern_state(entry)
        n, at = divmod(slot, SAMPLE_BLOCK)
        if n not in blocks:
            raw = self._spaces.get(sample_block_key(space, n))
            blocks[n] = [] if raw is None else decode_state_block(raw)
        return blocks[n][at] if at < len(blocks[n]) else None

    def _load_pages(self, space: str) -> Pages:
        pages = self._pages.get(space)
        if pages is None:
            raw = self._spaces.get(space)
            count = 0 if raw is None else SpaceState.decode(raw).pages
            pages = self._pages[space] = Pages(
                [set(PatternPage.decode(self._spaces[page_key(space, n)]).pattern_ids) for n in range(count)])
        return pages

    def learn(self, memory: SpaceMemory, event_id: str, vector, ts: float) -> tuple[Learned, Change]:
        """Learn one record, keep the space within its limits, and persist all of it."""
        before = memory.now
        check_constraints(self.limits, dim=len(vector))
        return self._settle(memory, before, memory.learn_one(event_id, vector, ts))

    def learn_iter(self, memory: SpaceMemory, items: Sequence[tuple[str, object, float]]
                   ) -> Iterator[tuple[Learned, Change]]:
        """`learn` of each item in order, through the memory's batch (SpaceMemory.learn_iter): the same
        results, writes and order of writes. A record is persisted, and its cleanup done, before the
        next is learned; the caller's writes between two steps come between those records' writes.

        Every item is checked (dimension limit, then the core's own checks) before the first is
        learned: an item that fails raises with nothing of the batch learned, as a failure in the
        middle of `learn`'s records leaves the transaction to roll back. The shell's records never
        fail them (schemas.vectors has checked them already).
        """
        for _, vector, _ in items:
            check_constraints(self.limits, dim=len(vector))
        before = memory.now
        for learned in memory.learn_iter(items):
            yield self._settle(memory, before, learned)
            before = memory.now

    def _settle(self, memory: SpaceMemory, before: float | None, learned: Learned) -> tuple[Learned, Change]:
        """After a record: keep the space within its limits and persist what the record and the cleanup
        changed. `before` is the space's time before the record."""
        events = [(p, e) for p, e in zip(learned.changed, learned.change_events, strict=True)]
        events += [(p, "evicted") for p in learned.evicted]
        removed = [p.pattern_id for p in learned.evicted] + [absorbed for _, absorbed in learned.merged]
        # The estimate walks every pattern: once per record, again only after an eviction.
        estimate = memory.memory_estimate_bytes()
        cleaned = self._cleanup(memory, before, estimate)
        if cleaned:
            estimate = memory.memory_estimate_bytes()
        # Nothing is persisted yet: a space the cleanup cannot bring back inside its budget keeps
        # its tables as they were (the caller drops the cached index).
        check_constraints(self.limits, memory_bytes=estimate)
        events += [(p, "evicted") for p in cleaned]
        removed += [p.pattern_id for p in cleaned]
        # A pattern evicted by the cleanup after this record changed it is gone: emit its end only.
        gone = set(removed)
        events = [(p, e) for p, e in events if e == "evicted" or p.pattern_id not in gone]
        added = [learned.pattern_id] if learned.new and learned.pattern_id not in gone else []
        self._persist(memory, [p for p, e in events if e != "evicted"], removed, added,
                      learned.space_changed or bool(removed), learned.sampled)
        return learned, Change(tuple(events), tuple(removed), learned.merged)

    def _cleanup(self, memory: SpaceMemory, before: float | None, estimate: int) -> list[Pattern]:
        n = evictions_needed(len(memory), estimate, self.limits)
        evicted = memory.evict(n) if n else []
        if crossed_interval(before, memory.now, self.limits.cleanup_interval_s):
            evicted += memory.evict_stale(self.limits.stale_confidence, self.limits.max_evictions_per_record)
        return evicted

    def _persist(self, memory: SpaceMemory, changed: list[Pattern], removed: list[str], added: list[str],
                 space_changed: bool, sampled: tuple[int, np.ndarray, str] | None = None) -> None:
        started = time.perf_counter()
        space = memory.space
        pages = self._load_pages(space)
        count = len(pages.pages)
        touched = set()
        # Deletes first: a redelivered record may re-create an id it removed.
        for pattern_id in removed:
            self._patterns.pop(pattern_key(space, pattern_id), None)
            touched.add(pages.remove(pattern_id))
        for pattern in changed:
            self._patterns[pattern_key(space, pattern.pattern_id)] = encode_pattern_state(pattern.to_state())
        for pattern_id in added:
            touched.add(pages.add(pattern_id))
        for n in sorted(t for t in touched if t is not None):
            self._spaces[page_key(space, n)] = PatternPage(tuple(sorted(pages.pages[n]))).encode()
        if sampled is not None:
            slot, vector, pattern_id = sampled
            entry = encode_pattern_state({"vector": vector, "pattern": pattern_id})
            if slot == memory.records - 1:  # the sample filling in order, from the space's first record
                n, entries = self._block_filled(memory, slot)
                entries.append(entry)
                self._spaces[sample_block_key(space, n)] = encode_state_block(entries)
            else:
                self._spaces[sample_key(space, slot)] = entry
        # A space's first record fixes its dimension, so its record is always written then.
        if space_changed or len(pages.pages) != count:
            self._spaces[space] = SpaceState(space, len(pages.pages), memory.space_state()).encode()
        if self._observe_write is not None:
            self._observe_write(time.perf_counter() - started)

    def _block_filled(self, memory: SpaceMemory, slot: int) -> tuple[int, list[bytes]]:
        """The block `slot` fills and the encoded entries of its slots before it."""
        n = slot // SAMPLE_BLOCK
        filling = self._filling.get(memory.space)
        if filling is None or filling[0] != n or len(filling[1]) != slot - n * SAMPLE_BLOCK:
            rows, of = memory.calibration_sample(), memory.calibration_sample_patterns()
            filling = self._filling[memory.space] = (n, [
                encode_pattern_state({"vector": rows[k], "pattern": of[k]}) for k in range(n * SAMPLE_BLOCK, slot)])
        return filling

    def feedback(self, memory: SpaceMemory, pattern_id: str, success: bool, quality: float | None,
                 ts: float) -> Pattern:
        """An interaction's outcome on its context pattern (SpaceMemory.apply_feedback), persisted."""
        pattern = memory.apply_feedback(pattern_id, success, quality, ts)
        self._persist(memory, [pattern], [], [], False)
        return pattern

    def counts(self) -> dict[str, int]:
        return {space: len(memory) for space, memory in self._memories.items()}

    def memory_estimate_bytes(self) -> int:
        return sum(m.memory_estimate_bytes() for m in self._memories.values())


class Recent:
    """Recent input records of a space by id: what each did, for what comes after it.

      <ring>/<space>\x1f<page>   -> the entries (schemas.state records with `offset`) of RING_PAGE
                                    consecutive slots of the space's ring, null where empty

    The slot is the input offset modulo `capacity`: a space keeps the entries of (at most) the
    last `capacity` offsets of its partition, found again in the same slots on a replay, so the
    bound needs no counter and no scan. The entries live in the ring values themselves: the
    records between two commits are consecutive offsets, so a commit writes one or two ring values
    (and changelog messages) per space, not one per record. An entry is found by id through an
    index of the ids' hashes by slot, built from the ring the first time a space is read (and
    again after `invalidate`); a hash that matches is checked against the entry.

    Entries written by an older worker, one value per id (`legacy`, `<prefix>/<space>\x1f<id>`),
    are still found when the ring does not hold the id.
    """

    entry_type: type = RecentRecognition
    id_field = "event_id"  # the entry's attribute that holds its id
    # Decoded ring values kept (by key, with the value they were decoded from), at most.
    _PAGES_KEPT = 64

    def __init__(self, legacy: Mapping | None, ring: MutableMapping, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._legacy = legacy
        self._ring = ring
        self.capacity = capacity
        self._index: dict[str, np.ndarray] = {}  # space -> hash of the id in each slot (0: none)
        self._pages: dict[str, tuple[bytes, list[bytes | None]]] = {}

    def invalidate(self) -> None:
        """Drop the index and the decoded values: the ring may differ from them (a rollback, a rebalance)."""
        self._index.clear()
        self._pages.clear()

    def _page(self, key: str) -> list[bytes | None]:
        raw = self._ring.get(key)
        kept = self._pages.get(key)
        if kept is not None and kept[0] == raw:  # the value this worker wrote last: no decode
            return kept[1]
        entries = [None] * RING_PAGE if raw is None else [None if e is None else encode_json(e) for e in decode_json(raw)]
        if len(self._pages) >= self._PAGES_KEPT:
            self._pages.clear()
        self._pages[key] = (raw, entries)
        return entries

    def _slots(self, space: str) -> np.ndarray:
        index = self._index.get(space)
        if index is None:
            index = self._index[space] = np.zeros(self.capacity, dtype=np.int64)
            for n in range(-(-self.capacity // RING_PAGE)):
                raw = self._ring.get(f"{space}\x1f{n}")
                if raw is None:
                    continue
                for k, entry in enumerate(decode_json(raw)):
                    if entry is not None:
                        index[n * RING_PAGE + k] = _hash(self.entry_type.id_of(entry))
        return index

    def remember(self, space: str, *entries) -> None:
        """Keep `entries` (entry_type records, in offset order) in their slots: each ring value they
        touch is encoded and written once."""
        index = self._slots(space)
        touched: dict[str, list[bytes | None]] = {}
        for entry in entries:
            slot = entry.offset % self.capacity
            page = f"{space}\x1f{slot // RING_PAGE}"
            values = touched.get(page)
            if values is None:
                values = touched[page] = self._page(page)
            values[slot % RING_PAGE] = entry.encode()
            index[slot] = _hash(getattr(entry, self.id_field))
        for page, values in touched.items():
            raw = encode_json([None if e is None else orjson.Fragment(e) for e in values])
            self._ring[page] = raw  # every table value is JSON (streams.state.journal)
            self._pages[page] = (raw, values)

    def get(self, space: str, key: str):
        h = _hash(key)
        for slot in np.flatnonzero(self._slots(space) == h)[::-1]:
            raw = self._page(f"{space}\x1f{slot // RING_PAGE}")[slot % RING_PAGE]
            if raw is not None:
                entry = self.entry_type.decode(raw)
                if getattr(entry, self.id_field) == key:
                    return entry
        raw = None if self._legacy is None else self._legacy.get(f"{space}\x1f{key}")
        return None if raw is None else self.entry_type.decode(raw)


def _hash(key: str) -> int:
    # Python's own string hash: the index lives in this process only. 0 marks an empty slot.
    return hash(key) or 1


class RecentRecognitions(Recent):
    """What recent `fms.audio-features` records were recognized as, by event id (ring view rq/;
    r/ is the older layout's): the context an interaction's `event_id` names, and what a redelivered
    record emits again."""

    entry_type = RecentRecognition
    id_field = "event_id"


class RecentInteractions(Recent):
    """What recent `fms.interactions` records emitted, by interaction id (ring view iq/; i/ is the
    older layout's), so that a redelivered interaction emits its optimizations again without being
    applied again."""

    entry_type = RecentInteraction
    id_field = "interaction_id"
