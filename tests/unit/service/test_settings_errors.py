"""A bad environment value names the variable and what it accepts (streams.service.settings), and the CLI
says so in one line with exit code 2, before it talks to any broker."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from streams.service.settings import Settings, SettingsError


@pytest.mark.parametrize("name, value, expected", [
    ("FMS_PARTITIONS", "four", "FMS_PARTITIONS='four': expected a whole number, e.g. FMS_PARTITIONS=4"),
    ("FMS_FAUST_SENSOR", "maybe", "FMS_FAUST_SENSOR='maybe': expected one of 1, 0, true, false, yes, no, on, off"),
    ("FMS_SESSION_TIMEOUT_S", "ten", "FMS_SESSION_TIMEOUT_S='ten': expected a number, e.g. FMS_SESSION_TIMEOUT_S=10.0"),
    ("FMS_BREAKER_WAIT_S", "nan", "FMS_BREAKER_WAIT_S='nan': expected a number"),
    ("FMS_MATCH_THRESHOLD", "high", "FMS_MATCH_THRESHOLD='high': expected a number in [-1, 1] or 'auto'"),
])
def test_a_bad_value_names_the_variable_and_what_it_accepts(monkeypatch, name, value, expected):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        Settings.from_env()
    assert str(caught.value).startswith(expected)


def test_booleans_take_the_usual_words_and_an_empty_value_is_unset(monkeypatch):
    for word, want in (("YES", True), ("off", False), (" 1 ", True), ("False", False)):
        monkeypatch.setenv("FMS_FAUST_SENSOR", word)
        assert Settings.from_env().faust_sensor is want
    monkeypatch.setenv("FMS_FAUST_SENSOR", "")
    assert Settings.from_env().faust_sensor is Settings().faust_sensor


def test_the_cli_says_it_in_one_line_and_exits_2():
    env = {**os.environ, "FMS_PARTITIONS": "four", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"}
    done = subprocess.run([sys.executable, "-m", "streams.ops.cli", "worker"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "fms: FMS_PARTITIONS='four': expected a whole number, e.g. FMS_PARTITIONS=4"]


def test_readme_documents_every_setting_as_declared():
    # Each setting is declared once (a Settings field); README's table must name each one with its
    # default, and name nothing that is not a setting.
    import dataclasses
    import re
    from pathlib import Path

    from streams.service.settings import Settings, env_name

    repo = Path(__file__).resolve().parents[3]
    rows = {}
    for line in (repo / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`") and re.match(r"`(FMS|KAFKA)_", cells[0]):
            for var in re.findall(r"`((?:FMS|KAFKA)_[A-Z0-9_]+)`", cells[0]):
                rows[var] = cells[1]
    from streams.extraction.settings import ExtractionSettings, extraction_env_name

    declared = {env_name(f.name): getattr(Settings(), f.name) for f in dataclasses.fields(Settings)}
    declared |= {extraction_env_name(f.name): getattr(ExtractionSettings(), f.name)
                 for f in dataclasses.fields(ExtractionSettings)}
    others = {"FMS_WORKER_ROLE"}  # which settings a worker reads at all (streams.extraction.settings.default_role)
    assert not set(declared) - set(rows), f"settings README does not document: {sorted(set(declared) - set(rows))}"
    assert not set(rows) - set(declared) - others, f"README documents what is no setting: {sorted(set(rows) - set(declared) - others)}"
    for var, default in declared.items():
        shown = rows[var].strip("`")
        if isinstance(default, bool):
            assert shown == ("1" if default else "0"), (var, shown, default)
        elif isinstance(default, (int, float)):
            assert float(shown) == float(default), (var, shown, default)
        elif isinstance(default, str) and default and not default.startswith("<"):
            assert shown == default, (var, shown, default)
