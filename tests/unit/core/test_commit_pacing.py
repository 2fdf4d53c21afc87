"""The commits' pace: every space within the commit interval, and spaces that fall due together
spread over the interval (streams.core.commit_pacing). Pure: the worker's loop is simulated."""
from __future__ import annotations

import math

from streams.core.commit_pacing import due_at


def simulate(spaces: int, interval: float, starts: list[float], until: float, step: float = 0.002):
    """Spaces whose records keep coming (one every `step`), committed as the worker does: at most
    one per turn, the one held longest, when it is due. Returns (time, space, held) per commit."""
    since = dict(enumerate(starts))
    last, commits, now = -math.inf, [], 0.0
    while now < until:
        live = {s: t for s, t in since.items() if t <= now}
        if live:
            space = min(live, key=lambda s: (live[s], s))
            if now >= due_at(live[space], last, len(live), interval):
                commits.append((now, space, now - live[space]))
                last, since[space] = now, now + step  # its next record starts its clock again
        now += step
    return commits


def test_a_space_alone_commits_once_an_interval():
    commits = simulate(1, 1.0, [0.0], 10.0)
    assert commits[0][0] == commits[0][2] and 0.5 <= commits[0][0] < 0.51, "the first after half an interval"
    gaps = [b[0] - a[0] for a, b in zip(commits, commits[1:])]
    assert len(commits) == 10 and all(0.99 <= g <= 1.01 for g in gaps), "then once an interval"


def test_spaces_that_start_together_spread_over_the_interval_and_stay_spread():
    commits = simulate(8, 1.0, [0.0] * 8, 30.0)
    late = [c for c in commits if c[0] > 10.0]
    gaps = [b[0] - a[0] for a, b in zip(late, late[1:])]
    assert min(gaps) >= 0.1 and max(gaps) <= 0.15, "one commit every interval / spaces"
    per_space = {s: [t for t, s2, _ in late if s2 == s] for s in range(8)}
    assert all(abs(len(ts) - 20) <= 1 for ts in per_space.values()), "each space once an interval"


def test_no_space_is_held_longer_than_the_interval_nor_committed_before_half_of_it():
    commits = simulate(8, 1.0, [0.0, 0.0, 0.0, 0.3, 0.3, 0.31, 0.9, 2.5], 12.0)
    assert commits and all(0.5 - 1e-9 <= held <= 1.0 + 0.003 for _, _, held in commits)


def test_due_when_held_the_interval_whatever_the_last_commit():
    assert due_at(since=5.0, last_commit=5.9, spaces=8, interval=1.0) == 6.0
    assert due_at(since=5.0, last_commit=5.0, spaces=8, interval=1.0) == 5.5
    assert due_at(since=5.0, last_commit=5.45, spaces=4, interval=1.0) == 5.7
    assert due_at(since=5.0, last_commit=-math.inf, spaces=0, interval=1.0) == 6.0
