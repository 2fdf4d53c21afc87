"""The worker's local RocksDB state across restarts: kept after a clean stop, rebuilt after a crash.

Local state may be ahead of the changelog after an unclean stop (RocksDB has writes whose changelog
messages never left the producer), and exactly-once application (streams.journal) relies on the
local state being a prefix of the changelog. A marker file tells the two apart: it exists while a
worker runs and is removed when it stops cleanly; if a worker finds it at start, the previous one
was killed, and the local state is deleted so that faust restores it from the changelog.
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

MARKER = ".fms-running"


def open_local_state(data_dir: Path) -> bool:
    """Mark `data_dir` in use; True when it held the state of a worker that did not stop cleanly
    (that state has now been deleted)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    marker = data_dir / MARKER
    unclean = marker.exists()
    if unclean:
        for child in data_dir.iterdir():
            if child.name == MARKER:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        log.warning("the last worker on %s did not stop cleanly: its local state was deleted and is "
                    "restored from the changelog", data_dir)
    marker.write_text(f"{os.getpid()}\n")
    return unclean


def close_local_state(data_dir: Path) -> None:
    (data_dir / MARKER).unlink(missing_ok=True)
