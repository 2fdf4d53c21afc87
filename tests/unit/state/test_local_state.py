"""The data directory's lock and running marker (streams.state.local_state), without a broker."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from streams.state.local_state import LOCK, MARKER, DataDirInUse, lock_data_dir, open_local_state


def test_a_data_dir_locked_by_another_process_is_refused_with_its_pid(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from streams.state.local_state import lock_data_dir; "
        f"lock_data_dir(Path({str(tmp_path)!r})); print('locked', flush=True); time.sleep(30)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(DataDirInUse, match=f"in use by another worker \\(pid {holder.pid}\\)"):
            lock_data_dir(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    deadline = time.monotonic() + 5
    while True:  # the kernel lets go of a dead process's lock
        try:
            lock_data_dir(tmp_path)
            break
        except DataDirInUse:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    lock_data_dir(tmp_path)  # held already by this process: a no-op
    assert (tmp_path / LOCK).read_text().strip().isdigit()


def test_an_unclean_start_deletes_the_state_but_not_the_lock(tmp_path):
    (tmp_path / MARKER).write_text("123\n")
    (tmp_path / "v1").mkdir()
    (tmp_path / LOCK).write_text("456\n")
    assert open_local_state(tmp_path)
    assert not (tmp_path / "v1").exists() and (tmp_path / LOCK).exists()
