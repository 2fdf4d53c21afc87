"""The outage tracker: health and log lines from probe answers and clients' connection noise, no broker."""
from __future__ import annotations

import inspect

from streams.core.resilience.outage import (CONNECTION_TEMPLATES, DOWN, STARTING, SUSPECT, UP, OutageConfig, OutageTracker,
                                 backoff_delays, classify)

T0 = 1_800_000_000.0
FETCH = "Failed fetch messages from %s: %s"
CONNECT = "Unable connect to node with id %s: %s"


def up_tracker(**cfg) -> OutageTracker:
    t = OutageTracker("b:9092", OutageConfig(**cfg))
    assert t.observe(T0, True) == [], "a broker that answers at once is not news"
    assert t.state == UP
    return t


def kinds(reports) -> list[str]:
    return [r.kind for r in reports]


def test_one_lost_probe_is_not_an_outage():
    t = up_tracker()
    assert t.observe(T0 + 1, False, "KafkaConnectionError: closed") == []
    assert t.state == SUSPECT and t.health(T0 + 1)["status"] == "healthy"
    assert t.observe(T0 + 2, True) == []
    assert t.state == UP and t.outages == 0


def test_an_outage_is_one_line_then_a_summary_every_30_s_then_one_line_with_the_duration():
    t = up_tracker()
    lines = []
    for s in range(1, 91):  # a probe a second, 90 s without a broker
        lines += t.observe(T0 + s, False, "NodeNotReadyError: node 1")
        for _ in range(50):  # each second the clients complain 50 times
            assert not t.noise(T0 + s, CONNECT)
    assert kinds(lines) == ["unreachable", "still_unreachable", "still_unreachable"]  # at 2, 32 and 62 s
    assert "since 2027-01-15T08:00:01Z" in lines[0].message, "the outage began at the first failed probe"
    back = t.observe(T0 + 91, True)
    assert kinds(back) == ["reachable"]
    assert "after 90.0 s" in back[0].message
    assert "4500 client connection messages held back" in back[0].message
    assert t.state == UP and t.outages == 1


def test_health_degraded_with_reason_and_since_then_unhealthy_after_the_session_timeout_then_healthy():
    t = up_tracker(unhealthy_after_s=10.0)
    t.observe(T0 + 1, False, "KafkaConnectionError: refused")
    t.observe(T0 + 2, False, "KafkaConnectionError: refused")
    h = t.health(T0 + 3)
    assert h["status"] == "degraded" and h["reachable"] is False and h["since"] == T0 + 1
    assert "no broker reachable at b:9092" in h["reason"] and "refused" in h["reason"]
    h = t.health(T0 + 11)
    assert h["status"] == "unhealthy" and "session timeout" in h["reason"] and h["since"] == T0 + 1
    t.observe(T0 + 12, True)
    h = t.health(T0 + 12)
    assert h == {"status": "healthy", "reachable": True, "since": T0 + 12, "last_ok": T0 + 12,
                 "failed_probes": 0, "reason": "broker reachable"}


def test_noise_while_up_is_rate_limited_per_kind_and_summarized():
    t = up_tracker(noise_window_s=30.0)
    assert t.noise(T0 + 1, CONNECT) and t.noise(T0 + 1, FETCH), "the first of each kind is written"
    assert [t.noise(T0 + 1 + i / 10, CONNECT) for i in range(10)] == [False] * 10
    assert t.tick(T0 + 20) == []
    summary = t.tick(T0 + 31)
    assert kinds(summary) == ["noise_summary"] and "10 client connection messages held back" in summary[0].message
    assert t.tick(T0 + 62) == [], "nothing more to summarize"
    assert t.noise(T0 + 40, CONNECT), "a new window writes its first line again"


def test_noise_before_an_outage_is_confirmed_is_held_and_counted_in_it():
    t = up_tracker()
    t.observe(T0 + 1, False, "x")
    assert not t.noise(T0 + 1.5, CONNECT), "suspect: held back"
    lines = t.observe(T0 + 2, False, "x")
    assert kinds(lines) == ["unreachable"]
    back = t.observe(T0 + 3, True)
    assert "1 client connection messages held back" in back[0].message


def test_starting_waits_quietly_and_says_when_the_broker_answered():
    t = OutageTracker("b:9092", OutageConfig())
    assert t.state == STARTING and t.health(T0)["status"] == "healthy"
    assert not t.noise(T0, CONNECT), "while starting the waiting line says it all"
    lines = []
    for s in range(0, 65, 2):
        lines += t.observe(T0 + s, False, "KafkaConnectionError: Unable to bootstrap")
    assert kinds(lines) == ["waiting", "still_waiting", "still_waiting"]
    answered = t.observe(T0 + 70, True)
    assert kinds(answered) == ["answered"] and "after 70.0 s" in answered[0].message
    assert t.state == UP and t.outages == 0, "not being there yet is not an outage"


def test_a_long_outage_stays_within_the_line_budget():
    t = up_tracker()
    lines = []
    for tenth in range(1, 601):  # 60 s, a probe every 0.1 s
        now = T0 + tenth / 10
        if tenth % 10 == 0:
            lines += t.observe(now, False, "e")
        t.noise(now, CONNECT)
        t.noise(now, FETCH)
    lines += t.observe(T0 + 61, True)
    assert len(lines) <= 4, lines


def test_classify_connection_noise_and_real_errors():
    assert classify("aiokafka.consumer.fetcher", FETCH, ["NodeNotReadyError", "KafkaError", "Exception"]) == FETCH
    assert classify("aiokafka.client", "Unable to update metadata from %s", []) == "Unable to update metadata from %s"
    assert classify("aiokafka.client", 'Unable connect to "%s:%s": %s',
                    ["ConnectionRefusedError", "ConnectionError", "OSError"]) is not None
    # A real error on the same template is not noise, nor is anything outside the Kafka clients.
    assert classify("aiokafka.consumer.fetcher", FETCH, ["CorruptRecordException", "KafkaError"]) is None
    assert classify("aiokafka.consumer.fetcher", "Unexpected error in fetcher routine", []) is None
    assert classify("agents.memory", "start offsets of %s: %r", ["TimeoutError", "OSError"]) is not None
    assert classify("agents.memory", "start offsets of %s: %r", ["KeyError", "LookupError"]) is None
    assert classify("streams.service.emit", FETCH, ["NodeNotReadyError"]) is None
    assert classify("aiokafkaish", "Unable to update metadata from %s", []) is None


def test_the_templates_are_aiokafkas():
    """The templates are matched verbatim: aiokafka (0.14.0) must still log them so."""
    import aiokafka.client
    import aiokafka.consumer.group_coordinator

    source = inspect.getsource(aiokafka.client) + inspect.getsource(aiokafka.consumer.group_coordinator)
    flat = source.replace('"\n                " ', "").replace('"\n                "', "")
    for template in CONNECTION_TEMPLATES:
        first = template.split("%s")[0]
        assert first in flat, template


def test_backoff_grows_to_its_cap():
    delays = backoff_delays()
    assert [next(delays) for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_down_state_names():
    assert {UP, SUSPECT, DOWN, STARTING} == {"up", "suspect", "down", "starting"}
