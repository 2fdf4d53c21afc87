"""Applying one input record to state: once, all or nothing, through the operation's breaker."""
from __future__ import annotations

from agents.dead_letter import guarded

# What `apply_once` returns for a record that was applied before (redelivered after a crash).
DUPLICATE = object()


async def apply_once(runtime, event, result, operation: str, space: str, source: str, fn):
    """`fn()` inside a journal transaction (streams.journal) for the record `event`, guarded.

    Returns what `fn` returned; DUPLICATE when the record was already applied to `space`; None
    when the guard gave up on it (it has been dead-lettered). `fn` reads and writes state through
    the runtime's stores and must not await.
    """
    journal, store = runtime.journal, runtime.store
    offset = event.message.offset

    def transaction():
        if journal.repair(space):
            store.invalidate()  # the cached index predates the restored writes
        if journal.is_applied(space, source, offset):
            return DUPLICATE
        journal.begin()
        try:
            out = fn()
            journal.commit(space, source, offset)
            return out
        except Exception:
            journal.rollback()
            store.invalidate()  # the cached index may be ahead of the tables: reload it
            raise

    return await guarded(runtime, event, result, operation, transaction)
