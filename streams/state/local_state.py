"""The worker's local RocksDB state across restarts: kept after a clean stop, rebuilt after a crash.

Local state may be ahead of the changelog after an unclean stop (RocksDB has writes whose changelog
messages never left the producer), and exactly-once application (streams.state.journal) relies on the
local state being a prefix of the changelog. A marker file tells the two apart: it exists while a
worker runs and is removed when it stops cleanly; if a worker finds it at start, the previous one
was killed, and the local state is deleted so that faust restores it from the changelog.

Only one worker may use a data directory: a second one would take the first's running marker for a
crash and delete its live RocksDB state. :func:`lock_data_dir` holds an exclusive ``flock`` on a
lock file in the directory for the process's life (the kernel releases it when the process ends,
however it ends), and a second worker refuses to start, naming the holder's pid.
"""
from __future__ import annotations

import fcntl
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

MARKER = ".fms-running"
LOCK = ".fms-lock"
_held: dict[str, int] = {}  # resolved data dir -> the descriptor holding its lock


class DataDirInUse(RuntimeError):
    """Another process holds the data directory's lock."""


def lock_data_dir(data_dir: Path) -> None:
    """Hold `data_dir` for this process (an exclusive, non-blocking flock); DataDirInUse if another does.

    The descriptor is not inherited (PEP 446), so a worker that re-executes itself for a new
    generation lets go and takes the lock again.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    key = str(data_dir.resolve())
    if key in _held:
        return
    fd = os.open(data_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise DataDirInUse(f"{data_dir} is in use by another worker (pid {holder}); "
                           "give each worker its own FMS_DATA_DIR") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[key] = fd


def open_local_state(data_dir: Path) -> bool:
    """Mark `data_dir` in use; True when it held the state of a worker that did not stop cleanly
    (that state has now been deleted)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    marker = data_dir / MARKER
    unclean = marker.exists()
    if unclean:
        for child in data_dir.iterdir():
            if child.name in (MARKER, LOCK):
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
