"""The memory's one input sequence per partition: its input topics merged in timestamp order.

The memory reads two topics, `audio-features` and `interactions`, keyed by space and partitioned
alike, and what an interaction does depends on what was learned before it (and the reverse, through
feedback). Consumed independently, the two would interleave by fetch timing, differently in every
run, and a replay would rebuild a different memory. So, like Kafka Streams' timestamp
synchronization of a task's partitions, each partition's records are merged into one sequence:

- the next record is the head with the smallest timestamp of the partition's inputs; ties go to
  the input listed first (features before interactions, so an interaction naming a recognition
  appended in the same millisecond comes after it), then to the smaller offset. A partition's own
  order is never changed.
- a head is taken only when every other input of its partition is known to have nothing earlier:
  either that input has a head too, or it is caught up (the next offset to deliver is at its
  high-water mark). Otherwise the head waits for the other input's records to arrive.
- when a partition has waited `max_idle_s` for an input that delivers nothing, its next head is
  taken anyway and counted (`released`), as with Kafka Streams' `max.task.idle.ms`. That covers gaps
  the high-water mark cannot see past, such as transaction markers in a topic written
  transactionally. The clock starts when the partition begins to wait and starts again whenever the
  input it waits for delivers, so a record that was held long behind a backlog of the other input
  (a replay) is not released the moment that backlog's buffer briefly runs dry.

The input topics take their timestamps at append (`LogAppendTime`, streams.service.topics), so a record
appended later never carries an earlier timestamp than one already taken, and live processing and
any later replay of the same logs see the same sequence. The one race left is a record of the other
input appended in the same millisecond after a high-water mark was read; the tie rule decides it
the same way whenever the two were seen together.

Pure bookkeeping: the worker (agents.memory) feeds it what it consumed and asks it what is ready.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Held:
    topic: str
    partition: int
    offset: int
    ts: float
    item: Any

    def order(self, rank: int) -> tuple[float, int, int]:
        return (self.ts, rank, self.offset)


@dataclass
class _Partition:
    heads: dict[str, deque] = field(default_factory=dict)
    # When the partition began to wait for an input without a head; None while it is not waiting.
    blocked_since: float | None = None


class Sequencer:
    """`push` what was consumed, `pop_ready` what may be processed now, in sequence order.

    `caught_up(topic, partition, next_offset)` answers whether the input has nothing at or after
    `next_offset` (None: nothing of it delivered yet) that could come before a waiting head.
    """

    def __init__(self, topics: tuple[str, ...], max_idle_s: float) -> None:
        self.topics = topics
        self._rank = {t: i for i, t in enumerate(topics)}
        self.max_idle_s = max_idle_s
        self._partitions: dict[int, _Partition] = {}
        self._next: dict[tuple[str, int], int] = {}
        self.held = 0
        self.released = 0

    def push(self, topic: str, partition: int, offset: int, ts: float, item: Any) -> None:
        p = self._partitions.setdefault(partition, _Partition({t: deque() for t in self.topics}))
        if not p.heads[topic]:
            p.blocked_since = None  # the input it may have waited for delivered: wait afresh
        p.heads[topic].append(Held(topic, partition, offset, ts, item))
        self._next[(topic, partition)] = offset + 1
        self.held += 1

    def held_in(self, topic: str, partition: int) -> int:
        """How many records of one input partition are held."""
        p = self._partitions.get(partition)
        return len(p.heads[topic]) if p is not None else 0

    def partitions(self) -> list[int]:
        """Partitions with records held."""
        return [n for n, p in self._partitions.items() if any(p.heads.values())]

    def next_offset(self, topic: str, partition: int) -> int | None:
        """The offset after the last one pushed for this input partition (None: none yet)."""
        return self._next.get((topic, partition))

    def pop_ready(self, caught_up: Callable[[str, int, int | None], bool], now: float,
                  limit: int, paused: frozenset[int] = frozenset()) -> list[Held]:
        """Up to `limit` records that may be processed, each partition's in sequence order;
        nothing of the `paused` partitions (an input of theirs is missing a record)."""
        out: list[Held] = []
        for partition in sorted(self._partitions):
            if partition in paused:
                continue
            p = self._partitions[partition]
            while len(out) < limit:
                nxt = self._next_of(p, partition, caught_up, now)
                if nxt is None:
                    break
                p.heads[nxt.topic].popleft()
                out.append(nxt)
        self.held -= len(out)
        return out

    def _next_of(self, p: _Partition, partition: int, caught_up, now: float) -> Held | None:
        heads = [(q[0], self._rank[t]) for t, q in p.heads.items() if q]
        if not heads:
            return None
        first, _ = min(heads, key=lambda hr: hr[0].order(hr[1]))
        waiting_on = [t for t, q in p.heads.items()
                      if not q and not caught_up(t, partition, self._next.get((t, partition)))]
        if not waiting_on:
            p.blocked_since = None
            return first
        if p.blocked_since is None:
            p.blocked_since = now
        if now - p.blocked_since >= self.max_idle_s:
            self.released += 1
            p.blocked_since = None
            return first
        return None

    def abandon_from(self, topic: str, partition: int, offset: int) -> list[Held]:
        """Forget what is held of one input partition from `offset` on: it will be delivered again."""
        p = self._partitions.get(partition)
        q = p.heads[topic] if p is not None else deque()
        dropped = [h for h in q if h.offset >= offset]
        kept = [h for h in q if h.offset < offset]
        q.clear()
        q.extend(kept)
        self.held -= len(dropped)
        self._next[(topic, partition)] = offset
        return dropped

    def abandon(self, partitions: Callable[[int], bool] | None = None) -> list[Held]:
        """Forget what is held (all, or the partitions `partitions` selects), and where those inputs
        were: after a rebalance they are delivered again from their committed offsets."""
        dropped: list[Held] = []
        for partition in [n for n in self._partitions if partitions is None or partitions(n)]:
            for q in self._partitions.pop(partition).heads.values():
                dropped.extend(q)
            for t in self.topics:
                self._next.pop((t, partition), None)
        self.held -= len(dropped)
        return dropped

