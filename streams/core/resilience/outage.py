"""Broker reachability over time: what /health says about it, and what the log says about it.

Plain Python, no clock and no I/O: the shell probes the broker (a small metadata request) every
second or so and reports each answer with `observe(now, ok, error)`; it asks `noise(now, kind)`
whether a Kafka client's connection-error log line may be written; it calls `tick(now)` now and
then; and it logs the `Report`s these return. `now` is wall-clock seconds (time.time()), because
/health reports "since" as a timestamp.

States:
- STARTING: the broker has not answered yet (a worker waiting for it before it starts). The first
  failure is reported once ("waiting"), then a summary every `summary_every_s`, then "answered".
- UP: the last probe succeeded.
- SUSPECT: fewer than `fail_after` probes in a row have failed; still healthy (one lost request is
  not an outage) but the clients' connection errors are already held back.
- DOWN: `fail_after` probes in a row failed. One line when it starts, at most one summary line every
  `summary_every_s`, one line with the duration when a probe succeeds again. Health is degraded,
  and unhealthy once the outage is longer than `unhealthy_after_s` (the shell sets it to the
  consumer group's session timeout: after it the group no longer counts this worker as the owner
  of its partitions, so what it answers may be stale).

Connection noise (aiokafka's "Unable connect to node", "Failed fetch messages", ...): while
STARTING, SUSPECT or DOWN every such line is held back and counted, and the counts go into the
summaries and the closing line. While UP, the first line of each kind in `noise_window_s` is
written and the rest are counted, with one summary line at the end of a window that held any
back. `classify` decides what counts as connection noise: anything else, real errors included,
is never touched.
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

STARTING, UP, SUSPECT, DOWN = "starting", "up", "suspect", "down"

# Exception class names (anywhere in the class's MRO) that mean "cannot reach the broker" rather
# than a fault of the request: aiokafka's, and Python's own connection and timeout errors.
CONNECTION_ERRORS = frozenset({
    "KafkaConnectionError", "NodeNotReadyError", "RequestTimedOutError", "KafkaTimeoutError",
    "GroupCoordinatorNotAvailableError", "NotCoordinatorForGroupError", "LeaderNotAvailableError",
    "NotLeaderForPartitionError", "ConnectionError", "TimeoutError",
})

# Templates (the unformatted `msg` of a log record) of aiokafka lines that are connection noise
# without an exception among their arguments. Checked against aiokafka 0.14.0 by
# tests/unit/core/resilience/test_outage.py::test_the_templates_are_aiokafkas.
CONNECTION_TEMPLATES = frozenset({
    "Unable to update metadata from %s",
    "Heartbeat session expired - marking coordinator dead",
    "Marking the coordinator dead (node %s)for group %s.",
    "Heartbeat failed for group %s: coordinator (node %s) is either not started or not valid",
})

# Loggers whose lines may be connection noise: the Kafka client, the stream processor, and the
# worker's own agents (agents.memory warns every 5 s that it cannot ask for committed offsets).
NOISY_LOGGERS = ("aiokafka", "faust", "mode", "agents")


def classify(logger: str, template: str, error_types: Iterable[str]) -> str | None:
    """The kind of connection noise a log line is (its template), or None when it is not noise.

    `error_types` are the class names (with their bases) of the exceptions among the line's
    arguments and its exc_info. A line whose exception is of another type is a real error, even
    when its template sometimes carries a connection error.
    """
    if not any(logger == p or logger.startswith(p + ".") for p in NOISY_LOGGERS):
        return None
    names = set(error_types)
    if names:
        return template if names & CONNECTION_ERRORS else None
    return template if template in CONNECTION_TEMPLATES else None


@dataclass(frozen=True)
class OutageConfig:
    fail_after: int = 2  # failed probes in a row before the broker counts as unreachable
    summary_every_s: float = 30.0
    unhealthy_after_s: float = 10.0
    noise_window_s: float = 30.0


@dataclass(frozen=True)
class Report:
    """A line to log. `level` is "warning" or "info"; `kind` names the event, for tests and metrics."""

    level: str
    kind: str
    message: str


def _clock(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _suppressed(counts: Counter) -> str:
    total = sum(counts.values())
    if not total:
        return "no client messages held back"
    top = ", ".join(f"{n} x {kind!r}" for kind, n in counts.most_common(2))
    return f"{total} client connection messages held back ({top}{', ...' if len(counts) > 2 else ''})"


@dataclass
class OutageTracker:
    target: str  # the bootstrap servers, for the messages
    cfg: OutageConfig = field(default_factory=OutageConfig)
    state: str = STARTING
    since: float | None = None  # when the current state (up or down) began
    last_ok: float | None = None
    last_error: str | None = None
    failures: int = 0  # failed probes in a row
    outages: int = 0
    _first_failure: float | None = None
    _last_line: float = 0.0
    _held: Counter = field(default_factory=Counter)  # held back since the last line about them
    _held_outage: Counter = field(default_factory=Counter)  # held back during the whole outage
    _shown: dict = field(default_factory=dict)  # kind -> when it was last written (state UP)
    _window_start: float | None = None

    # ---------------------------------------------------------------- observations

    def observe(self, now: float, ok: bool, error: str | None = None) -> list[Report]:
        reports = self._up(now) if ok else self._failed(now, error or "no answer")
        return reports + self.tick(now)

    def _up(self, now: float) -> list[Report]:
        reports = []
        if self.state == DOWN:
            down = now - self._down_since()
            self._merge_held()
            reports.append(Report("info", "reachable",
                                  f"kafka: broker reachable again at {self.target} after {down:.1f} s "
                                  f"unreachable; {_suppressed(self._held_outage)}"))
        elif self.state == STARTING and self.failures:
            waited = now - self._down_since()
            self._merge_held()
            reports.append(Report("info", "answered",
                                  f"kafka: broker at {self.target} answered after {waited:.1f} s; starting"))
        if self.state in (DOWN, STARTING):
            self.since = now
            self._held_outage.clear()
        elif self.state == SUSPECT and self._held:
            # A false alarm: what was held back is summarized at the end of the noise window.
            self._window_start = self._window_start if self._window_start is not None else now
        self.state = UP
        self.last_ok = now
        self.failures = 0
        self._first_failure = None
        return reports

    def _failed(self, now: float, error: str) -> list[Report]:
        self.failures += 1
        self.last_error = error
        if self._first_failure is None:
            self._first_failure = now
        if self.state == STARTING:
            if self.failures == 1:
                self.since = now
                self._last_line = now
                return [Report("warning", "waiting",
                               f"kafka: no broker answers at {self.target} ({error}); waiting for one")]
            return []
        if self.state in (UP, SUSPECT):
            if self.failures < self.cfg.fail_after:
                self.state = SUSPECT
                return []
            self.state = DOWN
            self.outages += 1
            self.since = self._first_failure
            self._last_line = now
            self._merge_held()
            self._window_start = None
            return [Report("warning", "unreachable",
                           f"kafka: no broker reachable at {self.target} since {_clock(self.since)} ({error}); "
                           f"retrying, a summary every {self.cfg.summary_every_s:.0f} s")]
        return []

    def tick(self, now: float) -> list[Report]:
        """The summary line that is due, if any."""
        if self.state == DOWN or (self.state == STARTING and self.failures):
            if now - self._last_line < self.cfg.summary_every_s:
                return []
            self._last_line = now
            held = Counter(self._held)
            self._merge_held()
            what = "waiting for a broker at" if self.state == STARTING else "no broker reachable at"
            return [Report("warning", "still_waiting" if self.state == STARTING else "still_unreachable",
                           f"kafka: still {what} {self.target}, for {now - self._down_since():.0f} s "
                           f"({self.last_error}); {_suppressed(held)}")]
        if self._held and self._window_start is not None and now - self._window_start >= self.cfg.noise_window_s:
            held = Counter(self._held)
            self._held.clear()
            self._window_start = None
            return [Report("warning", "noise_summary",
                           f"kafka: {_suppressed(held)} in the last {self.cfg.noise_window_s:.0f} s")]
        return []

    def noise(self, now: float, kind: str) -> bool:
        """Whether a connection-noise line of `kind` may be written now; counts it when not."""
        if self.state == UP:
            last = self._shown.get(kind)
            if last is None or now - last >= self.cfg.noise_window_s:
                self._shown[kind] = now
                return True
            if self._window_start is None:
                self._window_start = now
        self._held[kind] += 1
        return False

    # ---------------------------------------------------------------- what /health says

    def health(self, now: float) -> dict:
        """The kafka component's fields about reachability: status, reachable, since, reason."""
        out = {"reachable": self.state in (UP, SUSPECT), "since": self.since, "last_ok": self.last_ok,
               "failed_probes": self.failures}
        if self.state == DOWN:
            down = now - self._down_since()
            if down >= self.cfg.unhealthy_after_s:
                out.update(status="unhealthy", reason=(
                    f"no broker reachable at {self.target} for {down:.0f} s, longer than the group's session "
                    f"timeout ({self.cfg.unhealthy_after_s:g} s): the group no longer counts this worker as the "
                    f"owner of its partitions ({self.last_error})"))
            else:
                out.update(status="degraded",
                           reason=f"no broker reachable at {self.target} for {down:.0f} s ({self.last_error})")
        elif self.state == STARTING:
            out.update(status="degraded" if self.failures else "healthy",
                       reason=f"waiting for a broker at {self.target}" if self.failures else "not probed yet")
            out["reachable"] = None if not self.failures else False
        else:
            out.update(status="healthy", reason="broker reachable")
        return out

    # ---------------------------------------------------------------- internals

    def _down_since(self) -> float:
        return self.since if self.since is not None else (self._first_failure or 0.0)

    def _merge_held(self) -> None:
        self._held_outage.update(self._held)
        self._held.clear()


def backoff_delays(first_s: float = 0.5, factor: float = 2.0, cap_s: float = 10.0):
    """0.5, 1, 2, 4, 8, 10, 10, ... seconds: how long a worker waits between attempts to reach a broker."""
    delay = first_s
    while True:
        yield delay
        delay = min(cap_s, delay * factor)
