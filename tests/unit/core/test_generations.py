"""Generations as plain arithmetic (streams.core.generations) and the fms.control record."""
from __future__ import annotations

from pathlib import Path

import pytest

from schemas.codec import decode, encode, record_key
from schemas.records import GenerationControl
from streams.core.generations import (
    Progress,
    app_id_of,
    caught_up,
    compacted_state,
    generation_of_app_id,
    generation_of_app_topic,
    generation_of_shadow,
    parse_from,
    reconcile,
    rewinds,
    shadow_name,
)
from streams.service.settings import Settings


def test_names_per_generation():
    assert app_id_of("feature-memory", 0) == "feature-memory"
    assert app_id_of("feature-memory", 3) == "feature-memory-g3"
    assert shadow_name("fms.recognitions", 2) == "fms.recognitions.g2"
    assert generation_of_app_topic("fm", "fm-memory-changelog") == 0
    assert generation_of_app_topic("fm", "fm-g12-memory-changelog") == 12
    assert generation_of_app_topic("fm", "fm-g2-__assignor-__leader") == 2
    assert generation_of_app_topic("fm", "fm-extraction-__assignor-__leader") is None
    assert generation_of_app_topic("fm", "other-memory-changelog") is None
    assert generation_of_app_id("fm", "fm") == 0 and generation_of_app_id("fm", "fm-g4") == 4
    assert generation_of_app_id("fm", "fm-extraction") is None
    assert generation_of_shadow("fms.", "fms.patterns.g5") == 5
    assert generation_of_shadow("fms.", "fms.breaker-state.g5") is None
    assert generation_of_shadow("fms.", "fms.patterns") is None


def test_settings_give_each_generation_its_app_id_and_state_dir():
    s = Settings(app_id="fm", data_dir=Path("data/w1"))
    assert (s.memory_app_id, s.state_dir) == ("fm", Path("data/w1"))
    g2 = Settings(app_id="fm", data_dir=Path("data/w1"), generation=2)
    assert (g2.memory_app_id, g2.state_dir) == ("fm-g2", Path("data/w1-g2"))


def test_parse_from():
    assert parse_from("1700000000.5") == 1700000000.5
    assert parse_from("2023-11-14T22:13:20Z") == 1700000000.0
    assert parse_from("2023-11-14T22:13:20") == 1700000000.0
    assert parse_from("2023-11-14T23:13:20+01:00") == 1700000000.0
    with pytest.raises(ValueError):
        parse_from("yesterday")
    with pytest.raises(ValueError):
        parse_from("-5")


def test_progress_counts_from_the_start_offsets_against_growing_ends():
    start = {"a": 10, "b": 0}
    assert Progress.of(start, {}, {"a": 30, "b": 5}) == Progress(replayed=0, total=25, lag=25)
    assert Progress.of(start, {"a": 20, "b": 5}, {"a": 30, "b": 5}) == Progress(15, 25, 10)
    # A commit below the start (an older group) counts as nothing; the ends may move on meanwhile.
    assert Progress.of(start, {"a": 3, "b": 5}, {"a": 40, "b": 5}) == Progress(5, 35, 30)


def test_caught_up_needs_consecutive_low_lags():
    assert not caught_up([0], 0)
    assert not caught_up([0, 5], 0)
    assert caught_up([50, 3, 2], 5)
    assert not caught_up([3, 50], 5)


def test_rewinds_only_where_the_new_generation_is_ahead():
    old = {"a": 10, "b": 20, "c": 5, "d": None}
    new = {"a": 15, "b": 12, "c": 5, "d": 7}
    assert rewinds(old, new) == {"a": 10}


def test_reconcile_writes_differences_and_settles_absent_keys():
    state = compacted_state([("k1", b"1"), ("k2", b"2"), ("k2", None), ("k3", b"3")])
    assert state == {"k1": b"1", "k3": b"3"}
    contract = {"k1": b"1", "k3": b"old", "k4": b"4", "k5": b"5"}
    assert reconcile(state, contract, lambda k, v: None) == [("k3", b"3"), ("k4", None), ("k5", None)]
    # An absent key whose replacement is its value as it is needs no write.
    assert reconcile(state, contract, lambda k, v: v if k == "k4" else b"x") == [("k3", b"3"), ("k5", b"x")]


def test_control_record_validation():
    record = GenerationControl(generation=2, state="replaying", previous=1, ts=1.0)
    assert decode("control", encode(record)).record == record
    assert record.current == 1 and record_key(record) == "generation"
    assert GenerationControl(generation=2, state="current", previous=1, ts=1.0).current == 2
    assert GenerationControl(generation=1, state="switching", ts=1.0).current == 0
    bad = decode("control", b'{"v":1,"generation":1,"state":"done","previous":1,"ts":1}')
    assert {e.code for e in bad.result.errors} == {"invalid_enum", "out_of_range"}
    assert not decode("control", b'{"v":1,"state":"current","ts":1}').ok
