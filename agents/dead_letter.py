"""Routing of rejected input records to the dead-letter topic, shared by every agent."""
from __future__ import annotations

import logging
import time

from schemas.codec import dead_letter
from schemas.validation import ValidationResult

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
