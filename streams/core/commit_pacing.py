"""When the worker commits a space: each within `interval` of its first uncommitted record, and the
spaces' commits spread evenly over that interval.

A commit holds the memory's input while it runs: one space's journal entry, its table writes, and a
changelog message and a pattern event per key it changed (10-18 ms for a space's second at 500
records/s over 8 spaces). Spaces whose first records came together fall due together, commit after
commit, for as long as their records keep coming: measured at 500/s, four or more commits in 80 ms,
once a second, and every record that arrived meanwhile waited for them all (the end-to-end p99 was
those waves).

So the space held longest may also commit early, once it has been held half the interval, if no
space committed in the last `interval / spaces`. Spaces that fell due together drift apart within
a few intervals and stay apart, since each commit restarts its space's clock; then each space
commits every `interval`, as before, one every `interval / spaces`. A space never commits more than
twice as often as the interval says. (Kafka Streams commits all its tasks at once; a task's
commit there is not a journal entry and a message per key.)
"""
from __future__ import annotations


def due_at(since: float, last_commit: float, spaces: int, interval: float) -> float:
    """When the space held longest (held since `since`) is to be committed: when it has been held
    `interval`, or half that and a share of the interval after the last commit, if that is sooner."""
    if spaces < 1 or not interval > 0.0:
        return since + max(interval, 0.0)
    return min(since + interval, max(since + interval / 2.0, last_commit + interval / spaces))
