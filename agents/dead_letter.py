"""Routing of rejected input records to the dead-letter topic, shared by every agent."""
from __future__ import annotations

import logging
import time

from schemas.codec import dead_letter
from schemas.validation import PROCESSING_FAILED, RESOURCE_CONSTRAINT, ValidationResult

log = logging.getLogger(__name__)


async def send_dead_letter(runtime, event, result: ValidationResult) -> None:
    """Send the original bytes with the reasons, keyed like the original, and count each code."""
    message = event.message
    record = dead_letter(
        topic=message.topic, partition=message.partition, offset=message.offset,
        raw=message.value, result=result, ts=time.time(),
    )
    await runtime.emit.send("dead-letter", message.key, record)
    for issue in result.errors:
        runtime.metrics.dead_letters.labels(code=issue.code).inc()
    log.info("dead letter %s[%d]@%d: %s", message.topic, message.partition, message.offset,
             ", ".join(f"{i.code}({i.field})" for i in result.errors))


async def guarded(runtime, event, result: ValidationResult, operation: str, fn):
    """`fn()` through the operation's breaker (streams.service.guard); None when the guard gave up on the
    record, which is then dead-lettered. `fn` must leave no half-applied state when it raises."""
    from streams.core.resilience.breaker import GuardGaveUp

    try:
        return await runtime.guard.call(operation, fn)
    except GuardGaveUp as exc:
        await send_failure(runtime, event, result, operation, exc.__cause__ or exc)
        return None


async def send_failure(runtime, event, result: ValidationResult, operation: str, exc: BaseException) -> None:
    """A valid record whose processing raised: to the dead-letter topic as processing_failed.

    faust would ack the event and restart the agent, losing the record silently; the caller has
    already dropped its cached state, so the next record starts again from the tables.
    """
    from streams.core.resilience.limits import ResourceConstraintError

    runtime.metrics.errors.labels(operation=operation).inc()
    log.error("%s of %s[%d]@%d failed", operation, event.message.topic, event.message.partition,
              event.message.offset, exc_info=exc)
    code = RESOURCE_CONSTRAINT if isinstance(exc, ResourceConstraintError) else PROCESSING_FAILED
    result.error(code, f"{type(exc).__name__}: {exc}")
    await send_dead_letter(runtime, event, result)
