"""`fms` as a user meets it: options every Kafka command takes, and one line for a mistake (no broker needed)."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from streams.ops.cli import build_parser

KAFKA_COMMANDS = ("worker", "topics", "publish", "watch", "ingest", "replay", "generations", "demo")


def fms(*args: str, **env: str) -> subprocess.CompletedProcess:
    # A closed port: anything that reached for the broker would fail differently (and slowly).
    base = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"}
    return subprocess.run([sys.executable, "-m", "streams.ops.cli", *args], env={**base, **env},
                          capture_output=True, text=True, timeout=60)


def test_version_says_the_package_version():
    from importlib.metadata import version

    done = fms("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"fms (feature-memory) {version('feature-memory')}"


@pytest.mark.parametrize("command", KAFKA_COMMANDS)
def test_every_command_that_talks_to_kafka_takes_bootstrap_server_and_log_level(command):
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    options = {o for a in sub._actions for o in a.option_strings}
    assert {"--bootstrap-server", "--log-level"} <= options


def test_bootstrap_server_and_log_level_override_the_environment(monkeypatch):
    from streams.ops import cli
    from streams.service.settings import Settings

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "elsewhere:9092")
    monkeypatch.setenv("FMS_LOG_LEVEL", "info")
    args = build_parser().parse_args(["topics", "--bootstrap-server", "kafka-1:9093,kafka-2:9093", "--log-level", "DEBUG"])
    cli._apply_kafka_options(args)
    settings = Settings.from_env()
    assert settings.bootstrap_servers == "kafka-1:9093,kafka-2:9093" and settings.log_level == "debug"


@pytest.mark.parametrize("content, name, expected", [
    (None, "missing.npy", "cannot read {path}: No such file or directory"),
    (b"not an array", "garbage.npy", "{path}: not a .npy array of numbers"),
    (b'{"vector": [1.0]}\n{oops\n', "rows.jsonl", "{path}:2: not JSON"),
    (b'{"vector": [1.0, "x"]}\n', "rows.jsonl", "{path}:1: invalid record: wrong_type"),
    (b"", "empty.jsonl", "{path}: no records in the file"),
    (b"a,b\n", "table.csv", "{path}: unsupported file type '.csv' (use .npy or .jsonl)"),
])
def test_a_bad_publish_file_is_one_line_exit_2_and_sends_nothing(tmp_path, content, name, expected):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    done = fms("publish", str(path))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fms publish: " + expected.format(path=path)), lines


def test_a_three_dimensional_npy_names_its_shape(tmp_path):
    path = tmp_path / "cube.npy"
    np.save(path, np.zeros((2, 2, 2), dtype=np.float32))
    done = fms("publish", str(path))
    assert done.returncode == 2 and "expected a 2-D array of vectors, got shape (2, 2, 2)" in done.stderr


def test_a_usage_mistake_is_argparse_exit_2():
    done = fms("watch")
    assert done.returncode == 2 and "Traceback" not in done.stderr and "topic" in done.stderr
