"""Pattern memory for one embedding space: the pure core of feature-memory.

A :class:`SpaceMemory` holds the patterns of one space (one model's feature
space, with a dimension fixed by the first vector it accepts). It is modelled
on River's estimators: small, pure, ``learn_one`` / ``predict_one``, no I/O.
The shell (a faust agent) persists every pattern in ``Learned.changed``,
deletes the evicted and absorbed ones, writes :meth:`SpaceMemory.space_state`
when ``Learned.space_changed`` says so, and emits the events.

Notation: ``u`` is a record's L2-normalized input vector (float32), ``c`` a
pattern centroid (float32, *input* space: the mean of its members' ``u``
over a bounded window, step 4; this is what goes on the wire), ``n`` the
number of records the space has learned, ``now`` the space's latest event
time, ``W`` = ``centroid_window``.

Defaults, and why (each is one principle, not a per-data-set tuning):

- ``match_threshold = None``: each space chooses its own threshold from a
  sample of its stream (:mod:`streams.core.patterns.calibration`), starting strict at
  ``calibration_start``; the threshold, the sample and whether it has chosen
  are space state. A calibrated space derives its related band and merge
  threshold from its threshold (0.1 and 0.95 at 0.6, as below), and merges two
  patterns at the product of their :func:`_centre_agreement` (step 6: the
  one-record rule, generalized to patterns of any size, capped by the merge
  threshold), so that the small patterns its strict start left rejoin their
  group. A number pins the threshold; what follows describes a pinned 0.6, the
  fixed default of earlier versions.
- ``match_threshold = 0.6`` (pinned). Matching is leader-style: a new pattern is a
  single record, so the second member of a group is compared with one
  record, not with the group's centre. If members sit at (centred) cosine
  ``kappa`` to their centre, two members sit at ~``kappa^2`` to each other,
  so the threshold has to be calibrated on the pairwise cosine of a group
  (0.6 ~ groups whose members are within ~40 degrees of their centre), not
  on ``kappa``: at 0.8, loose groups shatter into singletons.
- ``related_band = 0.1`` (related: ``[0.5, 0.6)``) and ``merge_threshold =
  0.95`` for patterns with several members; a one-record pattern merges at
  ``sqrt(match_threshold)`` (step 6).
- ``center_warmup = 1``: centring starts after the first record (step 2).
  Early on nobody can tell a shared component from a group's identity;
  centring too early *splits* a group, which a later merge undoes (the
  absorbed id resolves to the survivor), while plain cosine *lumps* groups
  that share a large component (pooled transformer features: raw cosines
  ~0.93 between groups), which nothing can undo. Known weak spot: a stream
  that opens with a long run of one group (before any other group has
  appeared) gets a ``mu`` that is that group's own mean, and the group's
  centred members look unrelated; a larger warm-up (plain cosine for its
  first records) avoids that at the price of lumping shared-component data.
- ``centroid_window = 64``: a centroid follows its group when the group
  drifts, instead of averaging over its whole history (step 4).

1. **Prepare.** ``u = normalize(vector)``: L2, via a scale by the largest
   magnitude (no overflow), rounded to float32 once. A zero vector is
   rejected.

2. **Matching space (centring).** Embeddings such as pooled wav2vec2 share a
   large common component, so their raw cosines are all high. Matching
   therefore compares ``u`` and ``c`` after subtracting ``mu``, the mean of
   the space's inputs, and lifting both by a small constant ``h`` along an
   extra axis::

       t(y)   = [y - mu, h] / ||[y - mu, h]||           (y = u or c)
       sim    = t(u) . t(c)  =  ((u-mu).(c-mu) + h^2) / (|[u-mu,h]| |[c-mu,h]|)
       h^2    = center_lift * max(1 - |mu|^2, 1e-4)

   ``1 - |mu|^2`` is the members' mean squared distance from ``mu`` (they
   are unit vectors), so the lift is a fixed small fraction of the spread:
   ``sim`` is the centred cosine ``cos(u - mu, c - mu)`` up to ~``center_lift``,
   but stays defined (-> 1) for inputs that sit on ``mu`` itself, e.g. a
   constant stream. Without a ``mu`` (``centering=False``, or before the
   first refresh) ``h = 0`` and ``sim`` is the plain cosine.

   ``mu`` is applied in epochs so that it cannot change on every record: it
   is a snapshot, recomputed after the record that brings ``n`` to
   ``center_warmup`` and then whenever ``n - n_at_last_refresh >=
   min(max(center_refresh, patterns), n_at_last_refresh)``: doubling
   intervals (1, 2, 4, ... times the warm-up) until they reach
   ``center_refresh``, and never fewer records than there are patterns, so
   the O(patterns x dim) refresh costs O(dim) per record. At a refresh::

       mu = sum_i w_i * c_i / sum_i w_i,   w_i = min(count_i, W)   (live patterns)

   the mean of the members each centroid currently represents (its
   window, step 4; evicted members drop out), summed in float64 in a fixed
   order (creation order, fixed pairwise blocks; the weights in a Python
   loop) and rounded to float32, and every row of the matching matrix is
   recomputed from the centroids, vectorized. Bounding the weights keeps a
   dominant group from *being* the mean: with count weights, a group that
   makes 60% of the stream sits close to ``mu``, its centred members look
   like noise to each other (pairwise ~0.55) and it shatters. Bounded by
   ``W`` rather than, say, by evidence (which saturates after a few members),
   so that a crowd of one-record outliers cannot outweigh the groups either. ``n`` itself is not stored: it is
   ``sum(count) + retired`` (``retired`` = members of evicted patterns), and
   merges preserve counts, so it follows from the patterns and the
   space state. The first refresh also re-measures the cohesion of the
   patterns formed under plain cosine (step 7; with the default one-record
   warm-up there are none). The snapshot ``mu`` is part of :meth:`SpaceMemory.space_state`,
   which therefore changes only at refreshes, evictions and merges.

3. **Recognize.** ``s_i = sim(u, c_i)`` for every pattern. The nearest
   wins; ties go to the smallest ``(created_ts, pattern_id)``.

4. **Join or create.** If ``s_best >= match_threshold`` the record joins
   (event ``"updated"``)::

       count += 1
       c     += (u - c) / min(count, W)  # float32, this exact operation order
       similarity_sum += s_best          # similarity to the pre-move centroid
       last_ts = max(last_ts, ts)

   For its first ``W`` members the centroid is their exact running mean;
   after that it is an exponential moving average with weight ``1/W``, whose
   effective memory is ~``W`` members (its noise is that of a mean of
   ~``2W``). A group that drifts is followed with a lag of ~``W`` of its own
   records instead of half its history: with the full mean, the newest
   members of a slowly turning group fall below the threshold and start a
   second pattern, which no merge rejoins. ``count`` still counts every
   member (evidence, ``n``).

   A calibrated space that has chosen its threshold lets a record below it join through a
   member: its sampled records stand as members of the patterns they went to, and a record
   whose nearest sampled record (centred cosine, as the calibration measures it) is at
   ``>= t^2`` joins that record's pattern (resolved; ``similarity_sum`` adds the record's
   similarity to the centroid). Two members of a pattern at ``kappa`` from its centre sit
   at ~``kappa^2`` from each other (as in the defaults above), so a record that close to a
   member is as much a member as they are. One centroid cannot stand for a group that is
   not round; its members can, as a density-based clusterer's core points do (what
   HDBSCAN finds offline, followed online). A pinned space never does this, and a pattern of
   one record is never joined this way: its member is its centroid, no core of a dense group
   (DBSCAN's core points), and a join at ``t^2`` through it would only be a lower threshold (a
   property test caught a group's first record joining another group's stray first record at
   t = 0.5; over the benchmark's 30 recorded and real streams in 5 orders it costs 0.0014 of mean
   ARI, at most 0.008 on one stream-order). The ``t`` of the bar is the finest threshold that
   cut the sample as the chosen one did (``calibration.Selection.finest``, persisted as
   ``member_threshold``): the space takes the middle of such a plateau, and groups far apart make
   a wide one, whose middle's square let a record of one group join another's member when their
   centres happened to sit close (a property test again: t = 0.5, t^2 = 0.25, members of one
   group at ~0.82). Where the chosen threshold has no plateau the bar is its own square: on the
   benchmark's 37 streams in 5 orders only generated imbalanced groups moved (up, 0.994 -> 0.997);
   on 400 streams of up to 12 groups in 24 dimensions, 4 streams lumped two groups, 12 before.

   Otherwise a pattern is created (event ``"created"``) with ``c = u``,
   ``count = 1``, ``similarity_sum = 1.0``; if the space is full
   (``max_patterns``) the lowest-value pattern (see 8) is evicted first.
   The new pattern's ``seq`` is ``n``: creation order survives restores.

5. **Relationships.** After a pattern's centroid changes, its similarity to
   every other pattern is known: for a created pattern it *is* the record's
   similarity vector (``t(c) = t(u)``); after a join one more product gives
   it, restricted to the rows that the record's own similarities cannot rule
   out (:meth:`SpaceMemory._scan_after_join`; a rigorous screen, so the
   result is that of the full product). ``related`` = the up to ``max_related`` patterns with
   similarity in ``[match_threshold - related_band, match_threshold)``,
   sorted by similarity desc, then id: recomputed whenever the pattern's
   own centroid changes (it is persisted then anyway). When a pattern is
   created or survives a merge, each of them is also offered the
   relationship back: if it does not list the pattern yet and it ranks in
   its top ``max_related``, it is inserted (entries naming patterns that no
   longer exist are dropped at that moment), and it is in
   ``Learned.changed`` with event ``"updated"``. Plain joins make no offers,
   so a join writes one pattern. Entries are otherwise refreshed only when
   their owner changes, so an entry may name an absorbed or evicted
   pattern: :meth:`SpaceMemory.resolve` tells.

6. **Merges.** After a join, if the joined pattern's centroid similarity to
   another pattern is ``>= merge_threshold`` -- or, when the other pattern
   has a single member, ``>= min(merge_threshold, sqrt(match_threshold))``
   -- the two merge (the most similar first). A one-record pattern is a
   record: one at cosine ``kappa`` to a settled centroid would have joined it
   (pairwise ``kappa^2 >= match_threshold``), so it merges at ``sqrt`` of the
   match threshold. This repairs the splits of the first records (step 2:
   before ``mu`` has seen several groups, a group's early records can look
   unrelated) once ``mu`` has settled; two patterns with several members each
   need ``merge_threshold``, which keeps close but distinct groups apart.
   The survivor is the older one, smallest ``(created_ts,
   pattern_id)``; counts, similarity sums and feedback add, ``last_ts`` is
   the max, the centroid is the mean weighted by ``min(count, W)`` (the
   members each centroid represents; float64, rounded once);
   the absorbed id enters an alias map (absorbed -> survivor, chains
   compressed, newest ``max_aliases`` kept). Repeated until the survivor has
   no pattern over the threshold, then relationships are recomputed as in 5.
   The survivor is in ``Learned.changed`` with event ``"merged"``; if the
   record's pattern was absorbed, ``Learned.pattern_id`` is the survivor.

7. **Confidence** (:func:`confidence`, stored on the pattern, and
   :func:`confidence_at`, decayed)::

       evidence    = 1 - exp(-(count + successes) / evidence_scale)
       cohesion    = clamp(similarity_sum / count, 0, 1)
       reliability = (feedback_prior + successes)
                     / (feedback_prior + successes + failures)
       confidence  = evidence * cohesion * reliability         (stored)
       confidence_at(now) = confidence * 2^(-max(0, now - last_ts) / decay_half_life_s)

   Evidence grows with members (~63% at ``evidence_scale``); cohesion is how
   tightly members agreed with the pattern when they joined (the centred
   similarity to the centroid, ~``kappa`` for a settled pattern: a group
   whose members sit below ``confidence_threshold`` of their centre joins
   at ``match_threshold`` but never becomes established, so the lower match
   threshold does not lower what "established" means); reliability is
   a Beta-style posterior mean over interaction feedback with a prior of
   ``feedback_prior`` successes (1.0 with no failures).
   :meth:`SpaceMemory.apply_feedback` is the one place feedback enters: an
   outcome scores ``y = quality (default 1) if success else 0``, then
   ``successes += y``, ``failures += 1 - y``, ``last_ts = max(last_ts, ts)``.
   "Established" means ``confidence_at(now) >= confidence_threshold``.
   At the first centring refresh each pattern's ``similarity_sum`` is capped
   at ``count * |c - mu| / sqrt(1 - 2 c.mu + |mu|^2)``, its members' mean
   resultant length once centred (computable from ``c`` and ``mu`` alone;
   exact while ``count <= W``, and 1 for one member, which is skipped):
   a warm-up pattern that only held together by the common component stops
   looking established. Those patterns are in ``Learned.changed``. With the
   default one-record warm-up no pattern has more than one member then.

8. **Value and eviction** (:func:`value_score`)::

       value = (confidence_at(now) + recency + frequency) / 3         in 0..1
       recency   = 2^(-max(0, now - last_ts) / decay_half_life_s)
       frequency = min(1, log2(1 + count) / 10)                # saturates ~1000

   The lowest value goes first; ties by ``last_ts``, then id. Per-row numpy
   arrays of count, last_ts and stored confidence make picking victims an
   ``np.partition`` over the rows.

Determinism. Recognition is one float32 matrix-vector product over a
contiguous matrix of matching-space rows. BLAS may round a row's dot product
differently depending on where the row sits (block remainders, threads), and
rows move on removal, so a restored memory does not have the live memory's
layout. The product is therefore only a screen: every row within a rigorous
float32 error bound of a decision boundary is re-scored from exact float64
products rounded to fixed point and summed as integers (:func:`_exact_dot`:
order-independent by construction), and decisions and reported similarities
use those values only. Row normalization and mu use the same exact dots
and fixed orders (a row's bits do not depend on whether it was computed
alone or in a block). The exponentials and logarithms of confidence, decay
and value are evaluated with fixed polynomials built from IEEE ``+ * /``
and exact ``ldexp``/``frexp`` (:func:`_exp2`, :func:`_log2`), not with libm
or numpy's CPU-dispatched SIMD kernels, so they too are the same on every
machine. Together with the persisted space state this makes
restore-and-continue bit-identical to an uninterrupted run, on this worker
or on the one a rebalance moves the partition to.

Batches. :meth:`SpaceMemory.learn_many` returns what ``learn_one`` applied to
each record in order returns and leaves the same state, bit for bit
(:meth:`SpaceMemory.learn_iter` does so a record at a time, so that the caller
can act between records); only the screen is taken differently. The records'
unit vectors and matching-space rows are computed as blocks (``unit_rows``,
``centred_rows``: per row the bits of the one-vector functions), and one
float32 matrix product screens up to 64 records against every row at once
(fewer than 8 are screened one by one, which costs less there).
A record is still decided against the rows as the records before it (and the
caller) left them: a row whose content changed since the product (a join
moved it, a merge, a creation) loses its column and is multiplied again, once,
for every record the product still covers; a removal only moves rows, and
each row's column moves with it (``_col``); a centring refresh changes mu and
so the records' own rows too, and the product is taken again for the records
left. Each entry is then a float32 product of exactly the two rows it stands
for, within the error bound the re-scoring window allows for, so the screen
is as rigorous as one record's product, and decisions still come from exact
re-scores.

Persistence. ``Pattern.to_state()`` is JSON-able except ``"centroid"``
(float32 ndarray); ``SpaceMemory.space_state()`` is JSON-able except
``"mu"`` (float32 ndarray, empty before the first refresh) and holds
``dim``, ``mu``, ``mu_n`` (records at the last refresh), ``retired``,
``now_floor`` (the space's ``now`` when last written) and ``aliases``. It
changes only when the dimension is fixed, at refreshes, evictions and
merges. ``restore(patterns, space_state)`` rebuilds the memory bit-exactly;
``n`` and ``now`` are derived (``now = max(now_floor, max last_ts)``).

Cost. A join is the record's product, one product over the rows the
record's similarities cannot rule out (usually few), a handful of exact
re-scores and O(dim) updates; in a batch, the record's product is its share
of the batch's (the matrix is streamed once per 64 records) plus one product
of the remaining records with each row that changed. A refresh is
O(patterns x dim), at most once per ``max(center_refresh, patterns)`` records. Eviction is O(patterns) numpy
work. BLAS should run single-threaded for products this small.
"""

from __future__ import annotations

import functools
import hashlib
import math
import sys
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from streams.core.patterns.arithmetic import (
    F32,
    centred_row,
    centred_rows,
    exact_dot,
    frozen_f32,
    move_centroid,
    scaled_dot,
    tree_sum_rows,
    unit_row,
    unit_rows,
    unit_vector,
)
from streams.core.patterns.calibration import (
    SAME_SCORE,
    dense_groups,
    derived_band,
    derived_merge,
    fine_groups,
    gram,
    groups,
    select,
)
from streams.core.patterns.config import DimensionMismatch, PatternConfig
from streams.core.patterns.pattern import (
    Learned,
    Match,
    Pattern,
    Related,
    confidence_at,
    eviction_order,
    pattern_confidence,
    pattern_id_for,
    value_score,
    value_scores,
)


_SPREAD_FLOOR = 1e-4  # of 1 - |mu|^2, so the lift never vanishes
_ROW_CHUNK = 512  # rows per block when recomputing the matrix or summing mu
_STATE_VERSION = 1
# Records one batch screen covers: the matrix is streamed once for this many records, and the
# screen's product stays small (64 x 10,000 patterns: 2.6 MB).
_SCREEN_RECORDS = 64
# Fewer records than this take learn_one's product, one record at a time: below 8, the matrix
# product costs per record about what the record's own matrix-vector product does (OpenBLAS,
# 1,000 x 768 rows; 2 records cost more than two products), and the screen's bookkeeping is extra.
_SCREEN_MIN_RECORDS = 8
# Nor does a space with fewer rows than this: each record's own product over a few hundred rows is
# ~10 us, and a screen re-multiplies the row each join moves for the records left (a renewal, ~13 us
# with its bookkeeping). benchmarks/batch_learn.py, in turns: 8 spaces of 125 patterns, batches of
# ~8 records per space, learn_many 139 us per record screened against learn_one's 115; 1,000 rows
# 107 screened against 134; 10,000 rows 331 against 1,569.
_SCREEN_MIN_ROWS = 512
# Records whose unit and matching-space rows are computed together: the float64 temporaries of
# 32 x 768 stay in a core's cache (64 at once take five times as long per record).
_BLOCK_RECORDS = 32
# Up to this many records, a batch's unit rows and matching-space rows are unit_row's and
# centred_row's, one record at a time (the same bits): the compiled loop costs ~3 us a record,
# unit_rows' and centred_rows' numpy calls ~24 us each for a block of one record and ~27 of two, the
# worker's usual batch per space at 1,000 records/s over 8 spaces.
_ROW_BY_ROW = 8


class SpaceMemory:
    """The patterns of one space, learned one record at a time."""

    _MIN_CAPACITY = 16

    def __init__(self, space: str, cfg: PatternConfig, dim: int | None = None):
        self.space = space
        self.cfg = cfg
        self._dim: int | None = None
        self._tol = 0.0
        self._patterns: dict[str, Pattern] = {}  # creation (seq) order
        # Row r of _mat is the matching-space row of pattern _row_ids[r];
        # rows [0, len) are live and dense (removal moves the last row into
        # the hole). _w, _cnt, _last, _conf are per-row too.
        self._row_ids: list[str] = []
        self._row_of: dict[str, int] = {}
        self._mat = np.zeros((0, 0), dtype=F32)
        self._w = np.zeros(0)
        self._cnt = np.zeros(0)
        self._last = np.zeros(0)
        self._conf = np.zeros(0)
        # Per row, the column of the batch screen `_screen` that holds the row's product with the
        # batch's records, or -1: row changes reset it (docstring, "Batches").
        self._col = np.zeros(0, dtype=np.int64)
        self._screen: _Screen | None = None
        # Space state (persisted by space_state()).
        self._mu: np.ndarray | None = None  # float32 snapshot
        self._mu64: np.ndarray | None = None  # the one applied (None: plain cosine)
        self._h2 = 0.0
        self._mu_n = 0  # record count at the last refresh (0: never)
        self._retired = 0  # members of evicted patterns
        self._now_floor = -math.inf  # `now` when the space state was last written
        self._aliases: dict[str, str] = {}  # absorbed -> survivor, oldest first
        self._set_threshold(cfg.calibration_start if cfg.match_threshold is None else cfg.match_threshold)
        # Calibration (streams.core.patterns.calibration): the space's sample of records (unit input vectors,
        # by slot) and whether a selection has settled the threshold yet.
        self._sample: list[np.ndarray] = []
        self._sample_of: list[str] = []  # by slot: the pattern its record went to (resolved when used)
        self._settled = False
        # The member rule's threshold (its bar is the square): the finest threshold that cut the
        # sample as the chosen one did (calibration.Selection.finest); None: the threshold's own.
        self._member_t: float | None = None
        # Whether the full choice consolidated the warm-up by HDBSCAN's groups: then the space does so
        # again every calibration_regroup records while its sample still holds every record (_regroup).
        self._regrouping = False
        # Derived.
        # The Gram matrix of the sample's first rows as the last regroup computed it (int32: entries
        # are at most 2^20), so that the next one computes only the rows added since; None: none kept.
        # Only while the sample grows in order, so at most calibration_sample^2 * 4 bytes, and not in
        # memory_estimate_bytes (which must be a function of the state alone).
        self._unit_gram: np.ndarray | None = None
        # The sample's rows in matching space without the lift (centred_rows(sample, mu64, 0)),
        # the first `_members_n` of them valid; None: rebuilt when next needed.
        self._members: np.ndarray | None = None
        self._members_n = 0
        self._related_n = 0  # sum of len(p.related): the memory estimate needs it on every record
        self._n = 0  # records learned: sum(count) + retired
        self._now = -math.inf  # latest event ts: max(now_floor, max last_ts)
        if dim is not None:
            self._fix_dim(dim)

    # -- introspection -------------------------------------------------

    @property
    def dim(self) -> int | None:
        return self._dim

    @property
    def now(self) -> float | None:
        """The space's latest event time (records and feedback), None before any."""
        return None if self._now == -math.inf else self._now

    @property
    def records(self) -> int:
        """Records learned so far (members of live patterns plus evicted ones)."""
        return self._n

    @property
    def center(self) -> np.ndarray | None:
        """The ``mu`` matching currently subtracts (float32, read-only), or None."""
        return None if self._mu64 is None else self._mu

    @property
    def threshold(self) -> float:
        """The match threshold this space decides with now: pinned by the config, or calibrated."""
        return self._t

    def calibration_sample(self) -> list[np.ndarray]:
        """The calibration sample by slot (read-only unit vectors; empty in a pinned space)."""
        return list(self._sample)

    def calibration_sample_patterns(self) -> list[str]:
        """By slot, the pattern id each sampled record went to when it was learned."""
        return list(self._sample_of)

    @property
    def calibrated(self) -> bool:
        """True when the space calibrates its own threshold (``match_threshold`` is None)."""
        return self.cfg.match_threshold is None

    def __len__(self) -> int:
        return len(self._patterns)

    def patterns(self) -> list[Pattern]:
        """Snapshots in creation order (``seq``)."""
        return [p._snapshot() for p in self._patterns.values()]

    def pattern_ids(self) -> tuple[str, ...]:
        """Ids in the order of `patterns()`, without copying any pattern."""
        return tuple(self._patterns)

    def get(self, pattern_id: str) -> Pattern | None:
        p = self._patterns.get(pattern_id)
        return None if p is None else p._snapshot()

    def resolve(self, pattern_id: str) -> str | None:
        """The live pattern an id stands for now: itself, its merge survivor, or None."""
        pid = pattern_id
        for _ in range(len(self._aliases) + 1):
            if pid in self._patterns:
                return pid
            nxt = self._aliases.get(pid)
            if nxt is None:
                return None
            pid = nxt
        return None

    def merged_into(self) -> dict[str, str]:
        """Each absorbed id the space still remembers (the newest ``max_aliases``), oldest first, and
        the live pattern it stands for now (:meth:`resolve`); one whose survivor was evicted since
        stands for nothing and is left out. The recognitions a consumer saw name such ids: this
        relabels them, also after the compacted ``fms.patterns`` has dropped the merge records."""
        out = {}
        for absorbed in self._aliases:
            survivor = self.resolve(absorbed)
            if survivor is not None:
                out[absorbed] = survivor
        return out

    def _at(self, now: float | None) -> float:
        if now is not None:
            return float(now)
        return self._now if self._now != -math.inf else 0.0

    def confidence_at(self, pattern: Pattern, now: float | None = None) -> float:
        """:func:`confidence_at` with this space's config; ``now`` defaults to :attr:`now`."""
        return confidence_at(pattern, self._at(now), self.cfg)

    def is_established(self, pattern: Pattern, now: float | None = None) -> bool:
        return self.confidence_at(pattern, now) >= self.cfg.confidence_threshold

    def value_score(self, pattern: Pattern, now: float | None = None) -> float:
        return value_score(pattern, self._at(now), self.cfg)

    def memory_estimate_bytes(self) -> int:
        """An honest estimate of this memory's size in RAM.

        Matrix and per-row arrays at their allocated capacity; per pattern its
        centroid array, the Pattern object and its boxed fields, its id (held
        by the pattern dict, the row list and the row map) and its related
        entries; the alias map; mu; the calibration sample.
        """
        total = sys.getsizeof(self)
        for a in (self._mat, self._w, self._cnt, self._last, self._conf, self._col):
            total += a.nbytes + _NDARRAY_HEADER
        if self._mu is not None:
            total += self._mu.nbytes + _NDARRAY_HEADER
        n = len(self._patterns)
        dim = self._dim or 0
        # The sample's rows are float32 vectors of the space's dimension: counted, not walked (this
        # runs for every record).
        total += len(self._sample) * (dim * 4 + _NDARRAY_HEADER)
        if self._settled and self.cfg.match_threshold is None and self._sample:
            # Their rows for joins through a member: counted from the choice on, built or not, so
            # that the estimate (which can evict) is a function of the state alone.
            total += max(self.cfg.calibration_sample, len(self._sample)) * dim * 4 + _NDARRAY_HEADER
        total += n * (_PER_PATTERN + dim * 4) + self._related_n * _PER_RELATED
        total += len(self._aliases) * _PER_ALIAS
        return int(total)

    # -- persistence -----------------------------------------------------

    def space_state(self) -> dict:
        """Space-level state beside the patterns; JSON-able except ``"mu"``.

        ``mu`` is a float32 ndarray (empty before the first refresh). The
        dict changes only when the first record fixes ``dim``, at centring
        refreshes, evictions and merges: exactly when ``Learned.space_changed``
        is set or :meth:`evict` returned something. Never on feedback.
        """
        return {
            "v": _STATE_VERSION,
            "dim": self._dim,
            "mu": np.zeros(0, dtype=F32) if self._mu is None else self._mu,
            "mu_n": int(self._mu_n),
            "retired": int(self._retired),
            "now_floor": None if self._now_floor == -math.inf else float(self._now_floor),
            "aliases": [[a, s] for a, s in self._aliases.items()],
            "threshold": float(self._t),
            "settled": self._settled,
            "regrouping": self._regrouping,
            "member_threshold": self._member_t,
        }

    def restore(
        self,
        patterns: Iterable[Pattern],
        space_state: dict | None = None,
        sample: Iterable[Any] | None = None,
        sample_patterns: Iterable[str] | None = None,
    ) -> None:
        """Replace all state with persisted patterns and space state.

        Patterns may come in any order; they are kept in ``(seq, created_ts,
        pattern_id)`` order, the order a live memory created them in. Without
        ``space_state`` (older tables) there is no mu, no alias and nothing
        retired. ``sample`` is the calibration sample, by slot (what
        ``Learned.sampled`` handed out; :meth:`calibration_sample`), and ``sample_patterns`` the
        pattern each of its records went to (:meth:`calibration_sample_patterns`; "" if unknown).
        """
        ordered = sorted(patterns, key=lambda p: (p.seq, p.created_ts, p.pattern_id))
        dim = self._dim
        seen: set[str] = set()
        for p in ordered:
            if p.pattern_id in seen:
                raise ValueError(f"duplicate pattern_id {p.pattern_id!r}")
            seen.add(p.pattern_id)
            d = int(np.shape(p.centroid)[0]) if np.ndim(p.centroid) == 1 else -1
            if d < 1:
                raise ValueError("centroid must be a non-empty 1-D vector")
            if int(p.count) < 1:
                raise ValueError("count must be >= 1")
            if dim is None:
                dim = d
            elif d != dim:
                raise DimensionMismatch(dim, d)
        st = space_state or {}
        if st.get("dim") is not None:
            if dim is None:
                dim = int(st["dim"])
            elif int(st["dim"]) != dim:
                raise DimensionMismatch(dim, int(st["dim"]))
        mu = st.get("mu")
        mu = None if mu is None or np.size(mu) == 0 else frozen_f32(mu)
        if mu is not None:
            if mu.ndim != 1:
                raise ValueError("mu must be a 1-D vector")
            if dim is None:
                dim = mu.shape[0]
            elif mu.shape[0] != dim:
                raise DimensionMismatch(dim, mu.shape[0])
        aliases = {str(a): str(s) for a, s in st.get("aliases", ())}
        now_floor = st.get("now_floor")
        now_floor = -math.inf if now_floor is None else float(now_floor)
        mu_n, retired = int(st.get("mu_n", 0)), int(st.get("retired", 0))
        if self.cfg.match_threshold is not None:
            threshold = self.cfg.match_threshold  # a pin wins over whatever the space had learned
        else:
            threshold = float(st.get("threshold", self.cfg.calibration_start))
        sample_rows = [frozen_f32(v) for v in (sample or ())]
        for v in sample_rows:
            if v.ndim != 1 or (dim is not None and v.shape[0] != dim):
                raise DimensionMismatch(dim or 0, v.shape[0] if v.ndim == 1 else -1)
        # Validated: now mutate, so a bad snapshot leaves the memory untouched.
        self._patterns = {}
        self._row_ids = []
        self._row_of = {}
        if dim is not None:
            self._fix_dim(dim)
        self._mu, self._mu_n, self._retired = mu, mu_n, retired
        self._set_center()
        self._now_floor = now_floor
        self._aliases = aliases
        self._set_threshold(threshold)
        self._settled = bool(st.get("settled", False))
        self._regrouping = bool(st.get("regrouping", False))
        member = st.get("member_threshold")  # None, or absent in a state written before it existed
        self._member_t = None if member is None else float(member)
        self._sample = sample_rows
        self._members = None
        self._unit_gram = None
        of = [str(pid) for pid in (sample_patterns or ())][: len(sample_rows)]
        self._sample_of = of + [""] * (len(sample_rows) - len(of))
        for p in ordered:
            self._patterns[p.pattern_id] = Pattern(
                p.pattern_id,
                int(p.count),
                frozen_f32(p.centroid),
                float(p.similarity_sum),
                float(p.confidence),
                float(p.created_ts),
                float(p.last_ts),
                int(p.seq),
                float(p.successes),
                float(p.failures),
                tuple((str(a), float(s)) for a, s in p.related),
            )
        self._n = sum(p.count for p in self._patterns.values()) + retired
        self._related_n = sum(len(p.related) for p in self._patterns.values())
        self._now = max([now_floor] + [p.last_ts for p in self._patterns.values()])
        if dim is not None:
            self._rebuild_rows()

    # -- estimator -------------------------------------------------------

    def predict_one(self, vector: Any, k: int = 1, now: float | None = None) -> list[Match]:
        """The nearest ``k`` patterns, most similar first. Changes nothing."""
        if k < 1:
            raise ValueError("k must be >= 1")
        xr, wx = self._transform(self._prepare(vector))
        at = self._at(now)
        out = []
        for pid, sim, _ in self._rank(self._approx(xr, wx), xr, wx, k):
            c = confidence_at(self._patterns[pid], at, self.cfg)
            out.append(Match(pid, sim, c, c >= self.cfg.confidence_threshold))
        return out

    def recognize(self, vector: Any, now: float | None = None) -> Match | None:
        """The pattern that learning ``vector`` now would join (docstring, steps 3 and 4: its nearest
        centroid at the threshold, or else through a sampled member), with the similarity to that
        pattern's centroid; None when it would start a pattern of its own. Changes nothing."""
        u = self._prepare(vector)
        xr, wx = self._transform(u)
        joins = self._joins(self._approx(xr, wx), xr, wx, u)
        if joins is None:
            return None
        pid, sim, _ = joins
        c = confidence_at(self._patterns[pid], self._at(now), self.cfg)
        return Match(pid, sim, c, c >= self.cfg.confidence_threshold)

    def learn_one(self, event_id: str, vector: Any, ts: float) -> Learned:
        ts = _event_ts(ts)
        return self._learn(event_id, self._prepare(vector), ts)

    def learn_many(self, items: Sequence[tuple[str, Any, float]]) -> list[Learned]:
        """``[learn_one(*item) for item in items]``, with the screening products of the records
        taken together (docstring, "Batches"): the same results and the same state, bit for bit.

        Every item is validated before the first is learned, so an invalid one raises the error
        ``learn_one`` would raise at it, but with nothing learned.
        """
        return list(self.learn_iter(items))

    def learn_iter(self, items: Sequence[tuple[str, Any, float]]) -> Iterator[Learned]:
        """:meth:`learn_many`, one record per step: between two steps the caller may change the
        memory (the shell evicts to stay within its limits), and the next record sees the change.

        The items are validated at the first step, before anything is learned.
        """
        items = list(items)  # read twice: validated, then learned
        ts, vectors, dim = [], [], self._dim
        for _, vector, t in items:  # in learn_one's order: the first bad item raises what it would
            ts.append(_event_ts(t))
            vectors.append(self._checked(vector, dim))
            dim = vectors[-1].shape[0]
        if not vectors:
            return
        # Per row the bits of unit_vector (arithmetic).
        if len(vectors) <= _ROW_BY_ROW:
            units = np.stack([unit_row(v) for v in vectors])
        else:
            units = np.concatenate([unit_rows(np.stack(vectors[i : i + _BLOCK_RECORDS]))
                                    for i in range(0, len(vectors), _BLOCK_RECORDS)])
        screen = _Screen(units)
        try:
            for i, (event_id, _, _) in enumerate(items):
                yield self._learn(event_id, units[i].copy(), ts[i], screen, i)
        finally:
            if self._screen is screen:
                self._screen = None

    def _learn(self, event_id: str, u: np.ndarray, ts: float, screen: _Screen | None = None,
               i: int = 0) -> Learned:
        """Learn record ``u`` (a unit vector of the space's dimension); ``screen`` holds its
        screening products as record ``i`` of a batch."""
        fixes_dim = self._dim is None
        if fixes_dim:
            self._fix_dim(u.shape[0])
        if screen is None:
            xr, wx = self._transform(u)
            approx = self._approx(xr, wx)
        else:
            xr, wx, approx = screen.take(self, i)
        self._n += 1
        self._now = max(self._now, ts)
        cfg = self.cfg

        joins = self._joins(approx, xr, wx, u)
        events: dict[str, str] = {}
        evicted: list[Pattern] = []
        merged: list[tuple[str, str]] = []
        space_changed = fixes_dim
        if joins is not None:
            pid, sim, _ = joins
            p = self._patterns[pid]
            p.count += 1
            p.centroid = move_centroid(p.centroid, u, min(p.count, cfg.centroid_window))
            p.similarity_sum += sim
            # max: a late record must not make an active pattern look stale.
            p.last_ts = max(p.last_ts, ts)
            p.confidence = pattern_confidence(p, cfg)
            self._set_row(pid)
            events[pid] = "updated"
            if self._scans():
                # The moved centroid against the patterns that could matter.
                scan = self._scan_after_join(pid, approx, xr, wx)
                pid, scan = self._merge_loop(pid, scan, events, merged)
                space_changed = space_changed or bool(merged)
                if self._relates():
                    self._relate(pid, scan, events, offer=bool(merged))
            new, similarity = False, sim
        else:
            related = self._related_from(approx, xr, wx) if approx is not None and self._relates() else ()
            # Before evicting: the new id is never one this same call evicts.
            pid = self._fresh_id(event_id)
            # A loop, not an if: a snapshot restored under a smaller max_patterns
            # shrinks back to the limit here rather than failing.
            while len(self._patterns) >= cfg.max_patterns:
                evicted.extend(self._evict(1, self._now))
            if evicted:
                space_changed = True
                gone = {p.pattern_id for p in evicted}
                related = tuple(r for r in related if r[0] not in gone)
            p = Pattern(pid, 1, frozen_f32(u), 1.0, 0.0, ts, ts, self._n, related=related)
            p.confidence = pattern_confidence(p, cfg)
            self._insert(p)
            events[pid] = "created"
            self._offer(pid, events)
            new, similarity = True, 1.0
        rescored = self._maybe_refresh()
        if rescored is not None:
            space_changed = True
            for q in rescored:
                events.setdefault(q, "updated")
        sampled = self._sample_record(event_id, u, pid)
        if self._maybe_calibrate(events, merged):
            space_changed = True
            survivor = self.resolve(pid) or pid
            if survivor != pid:  # the warm-up's consolidation merged it: the record is the survivor's
                if new:  # nobody has seen the id this record just made: it is no merge to announce
                    merged[:] = [m for m in merged if m[1] != pid]
                pid, new = survivor, False
        primary = self._patterns[pid]
        changed = tuple(self._patterns[q]._snapshot() for q in events)
        return Learned(
            pattern_id=pid,
            similarity=similarity,
            confidence=confidence_at(primary, self._now, cfg),
            new=new,
            changed=changed,
            event=events[pid],
            evicted=tuple(evicted),
            merged=tuple(merged),
            change_events=tuple(events.values()),
            space_changed=space_changed,
            sampled=None if sampled is None else (sampled, u, self._sample_of[sampled]),
        )

    def apply_feedback(self, pattern_id: str, success: bool, quality: float | None, ts: float) -> Pattern:
        """Fold one interaction outcome into a pattern's confidence; returns the snapshot to persist.

        The outcome scores ``y = quality (default 1.0) if success else 0.0``;
        ``successes += y`` and ``failures += 1 - y`` (a Beta-style update),
        then confidence is recomputed (:func:`confidence`): successes add
        evidence and restore reliability, failures lower reliability. Any
        feedback marks the pattern as seen: ``last_ts = max(last_ts, ts)``.
        ``pattern_id`` may be an absorbed id; it is resolved. Unknown or
        evicted ids raise KeyError. The space state does not change.
        """
        ts = float(ts)
        if not math.isfinite(ts):
            raise ValueError("ts must be finite")
        if quality is not None:
            quality = float(quality)
            if not 0.0 <= quality <= 1.0:
                raise ValueError("quality must be in [0, 1]")
        pid = self.resolve(pattern_id)
        if pid is None:
            raise KeyError(pattern_id)
        y = (1.0 if quality is None else quality) if success else 0.0
        p = self._patterns[pid]
        p.successes += y
        p.failures += 1.0 - y
        p.last_ts = max(p.last_ts, ts)
        p.confidence = pattern_confidence(p, self.cfg)
        self._now = max(self._now, ts)
        r = self._row_of[pid]
        self._last[r] = p.last_ts
        self._conf[r] = p.confidence
        return p._snapshot()

    def evict(self, n: int, now: float | None = None) -> list[Pattern]:
        """Remove the ``n`` lowest-value patterns at ``now`` (default: :attr:`now`).

        Returns their final snapshots, lowest value first. The space state
        changes when anything was removed.
        """
        if n <= 0 or not self._patterns:
            return []
        return self._evict(n, self._at(now))

    def evict_stale(self, min_confidence: float, limit: int, now: float | None = None) -> list[Pattern]:
        """Remove up to ``limit`` patterns whose decayed confidence fell below ``min_confidence``,
        lowest value first (the periodic cleanup of patterns nobody has seen for long)."""
        at = self._at(now)
        stale = {p.pattern_id for p in self._patterns.values() if self.confidence_at(p, at) < min_confidence}
        if not stale or limit <= 0:
            return []
        order = [p for p in eviction_order(self._patterns.values(), at, self.cfg) if p.pattern_id in stale]
        out = []
        for p in order[:limit]:
            out.append(p._snapshot())
            self._retired += p.count
            self._remove(p.pattern_id)
        self._now_floor = self._now
        return out

    # -- seams -----------------------------------------------------------

    def _transform(self, u: np.ndarray) -> tuple[np.ndarray, float]:
        """Map a unit input vector into matching space: ``(row, lift weight)``.

        Centring (module docstring, step 2) lives here and in
        :func:`centred_rows`; without a mu it is a plain normalization. The
        row of a pattern created from ``u`` (``c = u``) is these same bits, so
        the record's similarities are that pattern's.
        """
        return centred_row(u, self._mu64, self._h2)

    # -- internals: matching ---------------------------------------------

    def _prepare(self, vector: Any) -> np.ndarray:
        return unit_vector(self._checked(vector, self._dim))

    @staticmethod
    def _checked(vector: Any, dim: int | None) -> np.ndarray:
        """``vector`` as float64, if it is one a space of dimension ``dim`` (None: any) can learn."""
        v = np.asarray(vector, dtype=np.float64)
        if v.ndim != 1:
            raise ValueError(f"expected a 1-D vector, got shape {v.shape}")
        if dim is not None and v.shape[0] != dim:
            raise DimensionMismatch(dim, v.shape[0])
        if v.shape[0] == 0:
            raise ValueError("empty vector")
        m = float(np.max(np.abs(v)))
        if not m < math.inf:  # inf or nan
            raise ValueError("vector must be finite")
        if m == 0.0:
            raise ValueError("zero vector")
        return v

    def _fix_dim(self, dim: int) -> None:
        dim = int(dim)
        if dim < 1:
            raise ValueError("dim must be >= 1")
        self._dim = dim
        self._members = None
        self._mat = np.zeros((0, dim), dtype=F32)
        self._w = np.zeros(0)
        self._cnt = np.zeros(0)
        self._last = np.zeros(0)
        self._conf = np.zeros(0)
        self._col = np.zeros(0, dtype=np.int64)
        # Screening window. A float32 dot of two rows of norm <= 1 is off
        # by at most ~dim * 2**-24 in any summation order; two rows can err
        # in opposite directions, and the rest is margin. Any row that could
        # cross a decision boundary is therefore always re-scored.
        self._tol = 4.0 * dim * 2.0**-24

    def _approx(self, a: np.ndarray, w: float) -> np.ndarray | None:
        """Screening similarities of a matching-space row to every live row (float64; None: no rows)."""
        n = len(self._row_ids)
        if n == 0:
            return None
        approx = (self._mat[:n] @ a).astype(np.float64)
        if self._mu64 is not None:
            approx += self._w[:n] * w
        return approx

    def _exact(self, rows: np.ndarray, a: np.ndarray, w: float) -> np.ndarray:
        # float32 x float32 products are exact in float64, so the re-score
        # is a function of the two vectors alone.
        exact = exact_dot(self._mat[rows], a.astype(np.float64)) + self._w[rows] * w
        # Rounding rows to float32 can push a similarity a hair past +-1.
        return np.clip(exact, -1.0, 1.0)

    def _rank(
        self, approx: np.ndarray | None, a: np.ndarray, w: float, k: int
    ) -> list[tuple[str, float, float]]:
        """The ``k`` best ``(pattern_id, similarity, created_ts)``, from the screening vector ``approx``."""
        n = len(self._row_ids)
        if n == 0:
            return []
        if k >= n:
            cand = np.arange(n)
        else:
            kth = approx.max() if k == 1 else np.partition(approx, n - k)[n - k]
            cand = (approx >= kth - self._tol).nonzero()[0]
        exact = self._exact(cand, a, w)
        scored = []
        for r, sim in zip(cand.tolist(), exact.tolist()):  # candidates only: usually one
            pid = self._row_ids[r]
            scored.append((-sim, self._patterns[pid].created_ts, pid))
        scored.sort()
        return [(pid, -neg, c) for neg, c, pid in scored[:k]]

    def _scans(self) -> bool:
        return self._merge <= 1.0 or self._relates()

    def _relates(self) -> bool:
        return self.cfg.max_related > 0 and self._band > 0.0

    def _scan_row(self, pid: str) -> tuple[np.ndarray, np.ndarray, float]:
        """Screening similarities of pattern ``pid`` to all others (itself -inf)."""
        r = self._row_of[pid]
        a, w = self._mat[r].copy(), float(self._w[r])
        approx = self._approx(a, w)
        approx[r] = -math.inf
        return approx, a, w

    def _scan_after_join(
        self, pid: str, approx_x: np.ndarray, xr: np.ndarray, wx: float
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """:meth:`_scan_row` after a join, screened by the record's own product.

        Merges and relationships only look at similarities >= ``floor =
        min(merge_threshold, band low end)``. On the unit sphere of matching
        space, ``angle(t_new, q) >= angle(x, q) - angle(x, t_new)``, so a
        pattern ``q`` can reach ``floor`` only if the record's similarity to
        it is at least ``cos(acos(floor) + angle(x, t_new))``. Only those rows
        are multiplied (minus float32 margins, so the screen is rigorous);
        the others are -inf, which no decision can pick. Where the cone
        holds an eighth of the rows or more, the full product is cheaper: gathering scattered
        rows costs several times what streaming the contiguous matrix does per row (10,000 x
        768: 2,000 gathered rows 0.95 ms, all 10,000 streamed 0.71 ms).
        Decisions still come from exact re-scores: results equal the full scan.
        """
        tol = self._tol
        n = len(self._row_ids)
        floor = min(
            self._merge_floor(),
            self._t - self._band if self._relates() else math.inf,
        )
        r = self._row_of[pid]
        a, w = self._mat[r].copy(), float(self._w[r])
        if floor > -1.0:
            c_xt = float(np.dot(a, xr)) + w * wx - tol  # a lower bound on cos(x, t_new)
            cone = math.acos(max(-1.0, min(1.0, floor))) + math.acos(max(-1.0, min(1.0, c_xt)))
            if cone < math.pi:
                cut = math.cos(cone) - 2.0 * tol - 1e-6
                cand = (approx_x >= cut).nonzero()[0]
                cand = cand[cand != r]
                if 8 * len(cand) < n:
                    approx = np.full(n, -math.inf)
                    if len(cand):
                        approx[cand] = self._mat[cand] @ a
                        if self._mu64 is not None:
                            approx[cand] += self._w[cand] * w
                    return approx, a, w
        return self._scan_row(pid)

    def _related_from(self, approx: np.ndarray, a: np.ndarray, w: float) -> Related:
        """Top ``max_related`` in the related band, exact, from a screening vector."""
        cfg, tol = self.cfg, self._tol
        hi = self._t
        lo = hi - self._band
        k = cfg.max_related
        idx = ((approx >= lo - tol) & (approx < hi + tol)).nonzero()[0]
        if len(idx) > 4 * k + 8:
            # Only the top k can be kept: rows surely inside the band set a
            # floor that every row of the exact top k clears, screened.
            av = approx[idx]
            sure = av[(av >= lo + tol) & (av < hi - tol)]
            if len(sure) >= k:
                floor = np.partition(sure, len(sure) - k)[len(sure) - k]
                idx = idx[av >= floor - tol]
        if len(idx) == 0:
            return ()
        exact = self._exact(idx, a, w).tolist()
        found = sorted(
            (-s, self._row_ids[r]) for r, s in zip(idx.tolist(), exact) if lo <= s < hi
        )
        return tuple((pid, -neg) for neg, pid in found[:k])

    def _relate(
        self, pid: str, scan: tuple[np.ndarray, np.ndarray, float], events: dict[str, str], offer: bool
    ) -> None:
        approx, a, w = scan
        p = self._patterns[pid]
        self._set_related(p, self._related_from(approx, a, w))
        if offer:
            self._offer(pid, events)

    def _offer(self, pid: str, events: dict[str, str]) -> None:
        """Make ``pid``'s relationships mutual where they rank (docstring, step 5)."""
        k = self.cfg.max_related
        for qid, sim in self._patterns[pid].related:
            q = self._patterns[qid]
            if any(r == pid for r, _ in q.related):
                continue
            cand = [e for e in q.related if e[0] in self._patterns]
            cand.append((pid, sim))
            cand.sort(key=lambda e: (-e[1], e[0]))
            rel = tuple(cand[:k])
            if rel != q.related:
                self._set_related(q, rel)
                events.setdefault(qid, "updated")

    # -- internals: merges ---------------------------------------------------

    def _merge_loop(
        self,
        pid: str,
        scan: tuple[np.ndarray, np.ndarray, float],
        events: dict[str, str],
        merged: list[tuple[str, str]],
    ) -> tuple[str, tuple[np.ndarray, np.ndarray, float]]:
        """Merge ``pid`` while some pattern is over its merge threshold (step 6); the survivor and its scan."""
        mt = self._merge
        lo = self._merge_floor()
        single = min(mt, _single_merge(self._t))
        calibrated = self.cfg.match_threshold is None
        while mt <= 1.0:
            approx, a, w = scan
            cand = (approx >= lo - self._tol).nonzero()[0]
            if len(cand) == 0:
                break
            exact = self._exact(cand, a, w).tolist()
            if calibrated:
                own = _centre_agreement(self._patterns[pid].count, self._t)
                need = [min(mt, own * _centre_agreement(self._patterns[self._row_ids[r]].count, self._t))
                        for r in cand.tolist()]
            else:
                need = [single if self._patterns[self._row_ids[r]].count == 1 else mt for r in cand.tolist()]
            best = min(
                ((-s, self._patterns[self._row_ids[r]].created_ts, self._row_ids[r])
                 for r, s, bar in zip(cand.tolist(), exact, need)
                 if s >= bar),
                default=None,
            )
            if best is None:
                break
            p, q = self._patterns[pid], self._patterns[best[2]]
            if (q.created_ts, q.pattern_id) < (p.created_ts, p.pattern_id):
                p, q = q, p
            self._absorb(p, q)
            merged.append((p.pattern_id, q.pattern_id))
            events.pop(q.pattern_id, None)
            events[p.pattern_id] = "merged"
            pid = p.pattern_id
            scan = self._scan_row(pid)
        return pid, scan

    def _merge_floor(self) -> float:
        """The lowest similarity at which any merge can happen (inf: merges off)."""
        mt = self._merge
        if mt > 1.0:
            return math.inf
        if self.cfg.match_threshold is None:  # the joined pattern has two members at least
            return min(mt, _centre_agreement(1, self._t) * _centre_agreement(2, self._t))
        return min(mt, _single_merge(self._t))

    def _absorb(self, s: Pattern, a: Pattern) -> None:
        """Merge pattern ``a`` into survivor ``s``."""
        ws, wa = _mu_weight(s.count, self.cfg), _mu_weight(a.count, self.cfg)
        c = (s.centroid.astype(np.float64) * ws + a.centroid.astype(np.float64) * wa) / (ws + wa)
        s.centroid = frozen_f32(c)
        s.count = s.count + a.count
        s.similarity_sum += a.similarity_sum
        s.successes += a.successes
        s.failures += a.failures
        s.last_ts = max(s.last_ts, a.last_ts)
        self._set_related(s, tuple(e for e in s.related if e[0] != a.pattern_id))  # recomputed after
        s.confidence = pattern_confidence(s, self.cfg)
        self._remove(a.pattern_id)
        self._set_row(s.pattern_id)
        gone, target = a.pattern_id, s.pattern_id
        for k, v in self._aliases.items():  # compress chains: always one hop
            if v == gone:
                self._aliases[k] = target
        self._aliases[gone] = target
        while len(self._aliases) > self.cfg.max_aliases:
            del self._aliases[next(iter(self._aliases))]
        self._now_floor = self._now

    # -- internals: eviction -------------------------------------------------

    def _evict(self, k: int, now: float) -> list[Pattern]:
        n = len(self._row_ids)
        v = value_scores(self._conf[:n], self._last[:n], self._cnt[:n], now, self.cfg)
        if k >= n:
            cand = np.arange(n)
        else:
            kth = np.partition(v, k - 1)[k - 1]
            cand = (v <= kth).nonzero()[0]  # the k lowest plus any tie
        cand = cand.tolist()
        vals = v[cand].tolist()
        ranked = sorted(
            zip(cand, vals), key=lambda rv: (rv[1], self._last[rv[0]], self._row_ids[rv[0]])
        )
        victims = [self._row_ids[r] for r, _ in ranked[:k]]
        out = []
        for pid in victims:
            p = self._patterns[pid]
            out.append(p._snapshot())
            self._retired += p.count
            self._remove(pid)
        self._now_floor = self._now
        return out

    # -- internals: calibration ---------------------------------------------------

    def _set_threshold(self, t: float) -> None:
        """The match threshold and what follows from it: the related band and the merge threshold.

        A pinned space uses the config's band and merge threshold as they are; a calibrated one
        derives both from its threshold (streams.core.patterns.calibration), unless the config turns them off.
        """
        cfg = self.cfg
        self._t = float(t)
        if cfg.match_threshold is not None:
            self._band, self._merge = cfg.related_band, cfg.merge_threshold
            return
        self._band = derived_band(self._t, cfg.calibration_band_ratio) if cfg.related_band > 0.0 else 0.0
        self._merge = (derived_merge(self._t, cfg.calibration_merge_ratio)
                       if cfg.merge_threshold <= 1.0 else cfg.merge_threshold)

    def _sample_record(self, event_id: str, u: np.ndarray, pid: str) -> int | None:
        """Keep ``u`` in the calibration sample if it belongs there; the slot it took, or None.

        The first ``calibration_sample`` records fill the slots in order; after that record ``n``
        replaces slot ``h mod n`` when that is a slot (reservoir sampling, Vitter's algorithm R),
        with ``h`` a hash of the space and the record's id instead of a random draw, so that a
        replay keeps the same sample.
        """
        cfg = self.cfg
        if cfg.match_threshold is not None:
            return None
        size = cfg.calibration_sample
        if len(self._sample) < size:
            self._sample.append(u)
            self._sample_of.append(pid)
            self._member_written(len(self._sample) - 1, u)
            return len(self._sample) - 1
        h = hashlib.blake2b((self.space + "\0" + event_id).encode("utf-8"), digest_size=8)
        slot = int.from_bytes(h.digest(), "big") % self._n
        if slot >= size:
            return None
        self._sample[slot] = u
        self._sample_of[slot] = pid
        self._member_written(slot, u)
        self._unit_gram = None  # a row it holds changed (regroups are over by now anyway)
        return slot

    def _member_written(self, slot: int, u: np.ndarray) -> None:
        if self._members is not None:  # per row the bits of centred_rows over the whole sample
            self._members[slot] = centred_row(u, self._mu64, 0.0)[0]
            self._members_n = max(self._members_n, slot + 1)

    def _member_rows(self) -> np.ndarray:
        """The sample's rows centred by mu without the lift, built when first needed after a change
        of mu or a restore, and kept in step with the sample's writes after that."""
        if self._members is None:
            self._members = np.zeros((max(self.cfg.calibration_sample, len(self._sample)), self._dim), dtype=F32)
            self._members_n = len(self._sample)
            self._members[: self._members_n] = centred_rows(np.stack(self._sample), self._mu64, 0.0)[0]
        return self._members[: self._members_n]

    def _joins(self, approx, xr: np.ndarray, wx: float, u: np.ndarray) -> tuple[str, float, float] | None:
        """The pattern record ``u`` joins (docstring, step 4), as ``(pattern_id, similarity to its
        centroid, created_ts)``: its nearest centroid at the threshold, or else through a member;
        None: it starts a pattern of its own."""
        best = self._rank(approx, xr, wx, 1)
        if best and best[0][1] >= self._t:
            return best[0]
        return self._through_member(xr, wx, u)

    def _through_member(self, xr: np.ndarray, wx: float, u: np.ndarray) -> tuple[str, float, float] | None:
        """The pattern a record below the threshold joins through a sampled member (docstring,
        step 4), as ``(pattern_id, similarity to its centroid, created_ts)``; None if none."""
        if self.cfg.match_threshold is not None or not self._settled or not self._sample:
            return None
        rows = self._member_rows()
        z = centred_row(u, self._mu64, 0.0)[0]
        approx = rows @ z  # a screen, as the patterns' product: decided on exact re-scores
        cand = (approx >= approx.max() - self._tol).nonzero()[0]
        exact = exact_dot(rows[cand], z.astype(np.float64))
        slot = int(cand[int(np.argmax(exact))])  # the first slot of the best
        bar = self._t if self._member_t is None else self._member_t  # set with the threshold
        if float(exact.max()) < bar * bar:
            return None
        pid = self.resolve(self._sample_of[slot]) if self._sample_of[slot] else None
        if pid is None:  # its pattern was evicted meanwhile
            return None
        if self._patterns[pid].count < 2:
            # A record alone is its pattern's centroid, and no core of a dense group: joining
            # through it would only be a lower threshold (t^2), and lets the first record of a
            # group that has no pattern yet join another group's stray record.
            return None
        sim = float(self._exact(np.array([self._row_of[pid]]), xr, wx)[0])
        return pid, sim, self._patterns[pid].created_ts

    def _maybe_calibrate(self, events: dict[str, str], merged: list[tuple[str, str]]) -> bool:
        """Choose the threshold again, or consolidate, if due (streams.core.patterns.calibration); True
        if the space state changed.

        Choices are due after 32, 64 and 128 records while the space has not chosen yet (taken only
        when the sample's structure is clear), after ``calibration_warmup`` records (the full
        choice), and every ``calibration_interval`` records once the sample is a reservoir. Between
        the full choice and a full sample, every ``calibration_regroup`` records, a space whose
        choice consolidated its warm-up consolidates again (:meth:`_regroup`). A schedule that is a
        function of ``n`` alone.
        """
        cfg = self.cfg
        if cfg.match_threshold is None:
            n, size, warmup = self._n, cfg.calibration_sample, cfg.calibration_warmup
            early = not self._settled and n < warmup and n in (32, 64, 128)
            if early or n == warmup or (n > size and n % cfg.calibration_interval == 0):
                return self._choose(not early, events, merged)
            if self._regrouping and n > warmup and n == len(self._sample) and (n - warmup) % cfg.calibration_regroup == 0:
                return self._regroup(events, merged)
        return False

    def _sample_gram(self) -> np.ndarray:
        """The fixed-point Gram matrix of the sample, centred by mu (the members' rows), or by its
        own mean before the space has a mu."""
        if self._mu64 is not None:
            return gram(self._member_rows())
        rows = np.stack(self._sample).astype(np.float64)
        mean = tree_sum_rows(rows.copy()) / len(self._sample)  # a fixed order: the same bits everywhere
        return gram(centred_rows(np.stack(self._sample), mean, 0.0)[0])

    def _choose(self, final: bool, events: dict[str, str], merged: list[tuple[str, str]]) -> bool:
        cfg = self.cfg
        g = self._sample_gram()
        # An early choice takes the best cut, not a finer one near it: a few dozen records from a
        # handful of tight groups often show a finer peak that only splits off a group's first few.
        # It also needs a clear structure, and a cut that two neighbouring thresholds agree on: a
        # lone sharp peak in a small sample is often one group against the rest.
        # HDBSCAN's groups, computed at most once: they may arbitrate a finer peak (calibration.select)
        # and consolidate the warm-up (calibration.groups).
        hdbscans = functools.cache(lambda: dense_groups(g, cfg.calibration_min_cluster))
        threshold, clarity, plateau, rise, cut, finest = select(g, cfg.calibration_peak_share if final else 1.0,
                                                                dense=hdbscans if final else None)
        if threshold is None or not (final or (clarity >= cfg.calibration_clear and plateau >= 2)):
            return False
        member = threshold if finest is None else finest  # finest >= threshold
        # Settling is space state too (it ends the early choices), even when the threshold stays.
        changed = not self._settled or threshold != self._t or member != self._member_t
        self._settled = True
        self._member_t = member
        if threshold != self._t:
            self._set_threshold(threshold)
        if self._n == len(self._sample):
            dense = False
            if rise >= SAME_SCORE:
                found = groups(g, threshold, cfg.calibration_passes, cfg.calibration_min_cluster, cut,
                               hdbscans())
                dense = found.dense
                if self._consolidate(found.labels.tolist(), events, merged):
                    changed = True
            # The last such choice decides: one that leaves the strict start alone (no interior
            # peak) stops the regroups an early choice may have started.
            changed = changed or dense != self._regrouping
            self._regrouping = dense
        if changed:
            self._now_floor = self._now
        return changed

    def _regroup(self, events: dict[str, str], merged: list[tuple[str, str]]) -> bool:
        """Consolidate again over the grown sample, which still holds every record (docstring of
        :meth:`_consolidate`): each group's later records give HDBSCAN the density to tell which of
        the patterns they went to are one group. Only in a space whose full choice took HDBSCAN's
        groups: where the leader consensus separated the sample clearly better, the groups are large
        and evenly spread, HDBSCAN finds sub-groups of them or lumps neighbours, and the choice left
        them whole already. The threshold stays.

        HDBSCAN sees the records here as they came, unit rows not centred by mu. Centring spreads
        the similarities of a space whose records share a large component, so that one threshold
        can cut it; density needs no such help, since each record's core distance sets its own
        scale, and centring also magnifies what a copy does not share with its source (noise,
        another sound mixed in). Measured on the benchmark's 30 recorded and real streams, in 4
        orders other than its own, against the same regroups on centred rows: mean ARI 0.467 ->
        0.473, up by more than 0.01 on 10 streams and down by more than 0.01 on one (recorded oxygen
        resemblyzer, -0.015); in the benchmark's order 0.495 -> 0.499. The full choice keeps
        the centred rows: there HDBSCAN's groups are weighed against the leader rule's at the
        threshold, which lives in the centred geometry, and the unit rows scored lower. The groups
        are HDBSCAN's finest (:func:`calibration.fine_groups` says why and what they gained)."""
        g = gram(np.stack(self._sample), self._unit_gram)
        # The sample grows in order until it is full, and the regroups end there.
        self._unit_gram = g.astype(np.int32) if len(self._sample) < self.cfg.calibration_sample else None
        if not self._consolidate(fine_groups(g, self.cfg.calibration_regroup_min_cluster).tolist(), events, merged):
            return False
        self._now_floor = self._now
        return True

    def _consolidate(self, labels: list[int], events: dict[str, str], merged: list[tuple[str, str]]) -> bool:
        """Merge the patterns of the warm-up that one dense group of its records spans; True if any.

        Until its first choice a space learns at the strict ``calibration_start``, so one group may
        sit in several patterns. While the sample still holds every record of the space (slot ``i``
        is record ``i``), ``labels`` are the groups of those very records (:func:`calibration.groups`:
        HDBSCAN's or the leader rule's consensus, whichever separates them better): each pattern
        goes to the group that holds most of its sampled records (the earliest on a tie), and the
        patterns that share a group merge into the one that holds the most records, the oldest of
        those on a tie (absorbed ids resolve to the survivor): the id most of the group's
        recognitions so far have named. The merge rule's merges keep the older pattern instead, as
        a pinned space always has. Splitting is never done: a pattern id a user has seen keeps
        standing for all its records.
        """
        votes: dict[str, dict[int, int]] = {}
        for label, pid in zip(labels, self._sample_of):
            live = self.resolve(pid) if pid else None
            if live is not None:
                v = votes.setdefault(live, {})
                v[label] = v.get(label, 0) + 1
        groups: dict[int, list[str]] = {}
        for live, v in votes.items():
            groups.setdefault(min(v, key=lambda c: (-v[c], c)), []).append(live)
        survivors = []
        for label in sorted(groups):
            ids = sorted(groups[label], key=lambda q: (-self._patterns[q].count, self._patterns[q].created_ts, q))
            if len(ids) < 2:
                continue
            survivor = self._patterns[ids[0]]
            for q in ids[1:]:
                self._absorb(survivor, self._patterns[q])
                merged.append((survivor.pattern_id, q))
                events.pop(q, None)
            events[survivor.pattern_id] = "merged"
            survivors.append(survivor.pattern_id)
        if self._relates():
            for pid in survivors:
                self._relate(pid, self._scan_row(pid), events, offer=True)
        return bool(survivors)

    # -- internals: centring ----------------------------------------------------

    def _set_center(self) -> None:
        self._members = None  # centred by the mu they were built with
        if self._mu is None or not self.cfg.centering:
            self._mu64, self._h2 = None, 0.0
            return
        self._mu64 = self._mu.astype(np.float64)
        spread = 1.0 - scaled_dot(self._mu64, self._mu64)
        self._h2 = self.cfg.center_lift * max(spread, _SPREAD_FLOOR)

    def _maybe_refresh(self) -> list[str] | None:
        """Refresh mu if due (docstring, step 2). None if not due, else the ids
        whose cohesion the first refresh re-measured (step 7)."""
        cfg = self.cfg
        if not cfg.centering or self._n < cfg.center_warmup:
            return None
        # A refresh costs O(patterns * dim): spacing refreshes at least as
        # many records apart as there are patterns keeps it O(dim) per record.
        interval = min(max(cfg.center_refresh, len(self._patterns)), self._mu_n)
        if self._mu_n and self._n - self._mu_n < interval:
            return None
        first = self._mu_n == 0
        ps = list(self._patterns.values())  # creation order: the fixed summation order
        acc = np.zeros(self._dim)
        weights = [_mu_weight(p.count, cfg) for p in ps]
        for i in range(0, len(ps), _ROW_CHUNK):
            block = ps[i : i + _ROW_CHUNK]
            c = np.stack([p.centroid for p in block]).astype(np.float64)
            c *= np.array(weights[i : i + _ROW_CHUNK])[:, None]
            acc += tree_sum_rows(c)
        total = 0.0
        for wt in weights:  # a fixed order
            total += wt
        mu = frozen_f32(acc / total)
        self._mu, self._mu_n = mu, self._n
        self._now_floor = self._now
        self._set_center()
        rescored = self._rescore_cohesion(ps, mu.astype(np.float64)) if first else []
        self._rebuild_rows()
        return rescored

    def _rescore_cohesion(self, ps: list[Pattern], mu64: np.ndarray) -> list[str]:
        """At the first refresh: cap each pattern's cohesion by its centred cohesion.

        Members that joined under plain cosine were scored with the common
        component still in: a warm-up "blob" of unrelated records looks tight.
        For members ``u_i`` (unit) with mean ``c``, ``z_i = u_i - mu`` has mean
        ``c - mu`` and mean square ``1 - 2 c.mu + |mu|^2``, so their mean
        resultant length ``|c - mu| / sqrt(1 - 2 c.mu + |mu|^2)`` (in 0..1)
        measures how tightly they agree once centred; it needs no members.
        ``similarity_sum = min(similarity_sum, count * that)``. A blob centred
        on ``mu`` drops to ~0 confidence; real groups barely move. One member
        is its own mean (that == 1, or 0/0 when it is ``mu``): skipped.
        """
        changed = []
        mm = scaled_dot(mu64, mu64)
        for p in ps:
            if p.count == 1:  # one member is its own mean: r == 1 exactly (0/0 if u == mu)
                continue
            c = p.centroid.astype(np.float64)
            z = c - mu64
            ms = 1.0 - 2.0 * scaled_dot(c, mu64) + mm
            r = min(1.0, math.sqrt(scaled_dot(z, z)) / math.sqrt(max(ms, 1e-12)))
            capped = p.count * r
            if capped < p.similarity_sum:
                p.similarity_sum = capped
                p.confidence = pattern_confidence(p, self.cfg)
                changed.append(p.pattern_id)
        return changed

    # -- internals: rows -------------------------------------------------------

    def _rebuild_rows(self) -> None:
        """Every row from the patterns, in creation order (vectorized by blocks)."""
        ps = list(self._patterns.values())
        n = len(ps)
        self._row_ids = [p.pattern_id for p in ps]
        self._row_of = {pid: r for r, pid in enumerate(self._row_ids)}
        if n > self._mat.shape[0]:
            self._grow(n)
        for i in range(0, n, _ROW_CHUNK):
            block = ps[i : i + _ROW_CHUNK]
            a, w = centred_rows(np.stack([p.centroid for p in block]), self._mu64, self._h2)
            self._mat[i : i + len(block)] = a
            self._w[i : i + len(block)] = w
        self._mat[n:] = 0.0
        self._w[n:] = 0.0
        self._col[:] = -1
        self._cnt[:n] = [p.count for p in ps]
        self._last[:n] = [p.last_ts for p in ps]
        self._conf[:n] = [p.confidence for p in ps]

    def _set_row(self, pid: str) -> None:
        p = self._patterns[pid]
        r = self._row_of[pid]
        self._mat[r], self._w[r] = centred_row(p.centroid, self._mu64, self._h2)
        self._cnt[r] = p.count
        self._last[r] = p.last_ts
        self._conf[r] = p.confidence
        self._col[r] = -1

    def _fresh_id(self, event_id: str) -> str:
        pid = pattern_id_for(self.space, event_id)
        i = 0
        # Only a redelivered event whose first pattern is still alive (or was
        # absorbed) lands here; a deterministic suffix keeps ids unique.
        while pid in self._patterns or pid in self._aliases:
            i += 1
            pid = pattern_id_for(self.space, f"{event_id}\0{i}")
        return pid

    def _set_related(self, p: Pattern, related: Related) -> None:
        """The one way a live pattern's relationships change: it keeps their count."""
        self._related_n += len(related) - len(p.related)
        p.related = related

    def _insert(self, p: Pattern) -> None:
        self._related_n += len(p.related)
        n = len(self._row_ids)
        if n == self._mat.shape[0]:
            self._grow(n + 1)
        self._row_ids.append(p.pattern_id)
        self._row_of[p.pattern_id] = n
        self._patterns[p.pattern_id] = p
        self._set_row(p.pattern_id)

    def _grow(self, need: int) -> None:
        cap = self._mat.shape[0]
        # Doubling amortizes growth; stopping at max_patterns avoids paying
        # for rows the eviction policy will never let us use.
        new_cap = max(need, min(max(2 * cap, self._MIN_CAPACITY), self.cfg.max_patterns))
        mat = np.zeros((new_cap, self._mat.shape[1]), dtype=F32)
        mat[:cap] = self._mat
        self._mat = mat
        for name in ("_w", "_cnt", "_last", "_conf"):
            old = getattr(self, name)
            new = np.zeros(new_cap)
            new[:cap] = old
            setattr(self, name, new)
        col = np.full(new_cap, -1, dtype=np.int64)
        col[:cap] = self._col
        self._col = col

    def _remove(self, pattern_id: str) -> None:
        row = self._row_of.pop(pattern_id)
        last = len(self._row_ids) - 1
        if row != last:
            moved = self._row_ids[last]
            self._mat[row] = self._mat[last]
            for a in (self._w, self._cnt, self._last, self._conf, self._col):
                a[row] = a[last]
            self._row_ids[row] = moved
            self._row_of[moved] = row
        self._row_ids.pop()
        self._mat[last] = 0.0
        self._related_n -= len(self._patterns.pop(pattern_id).related)


class _Screen:
    """The screening products of a batch's records (module docstring, "Batches").

    It covers the records ``[start, stop)`` of ``units``: ``x``/``wx`` are their matching-space rows
    under the mu it was taken with, and ``p[j, c]`` the float32 product of record ``start + j``'s
    row with the row content column ``c`` was computed for. The memory's ``_col[r]`` names the
    column that holds row ``r``'s current content; a row that changed since (joined, merged,
    created, re-centred: ``-1``) gets a new column, multiplied once for the records still to come.
    ``p`` is None where too few records are left for a product to pay: each takes its own.
    """

    def __init__(self, units: np.ndarray) -> None:
        self.units = units
        self.start = self.stop = 0
        self.mu64: np.ndarray | None = None
        self.h2 = 0.0
        self.x = self.wx = np.zeros(0)
        self.p: np.ndarray | None = None
        self.used = 0  # columns of p in use

    def take(self, m: SpaceMemory, i: int) -> tuple[np.ndarray, float, np.ndarray | None]:
        """Record ``i``'s matching-space row, lift weight and screening vector, as ``learn_one``'s
        ``_transform`` and ``_approx`` would give them now (the vector up to float32 rounding)."""
        if m._screen is not self or m._mu64 is not self.mu64 or m._h2 != self.h2 or i >= self.stop:
            self._retake(m, i)  # another screen took the columns, mu moved, or past its records
        elif self.p is not None and not self._renew(m, i):
            self._retake(m, i)  # more rows changed than the product has room for
        j = i - self.start
        xr, wx = self.x[j], float(self.wx[j])
        if self.p is None:
            return xr, wx, m._approx(xr, wx)
        n = len(m._row_ids)
        if n == 0:
            return xr, wx, None
        approx = self.p[j].take(m._col[:n]).astype(np.float64)
        if m._mu64 is not None:
            approx += m._w[:n] * wx
        return xr, wx, approx

    def _renew(self, m: SpaceMemory, i: int) -> bool:
        """Multiply the rows that changed since their column was taken with records ``i``..; False
        (nothing done) when the product has no room for them."""
        cols = m._col[: len(m._row_ids)]
        stale = np.flatnonzero(cols < 0)
        k, used, j = len(stale), self.used, i - self.start
        if k > self.p.shape[1] - used:
            return False
        if k:
            # One row (a join's, a creation's) is a matrix-vector product.
            self.p[j:, used : used + k] = ((self.x[j:] @ m._mat[stale[0]])[:, None] if k == 1
                                           else (m._mat[stale] @ self.x[j:].T).T)
            cols[stale] = np.arange(used, used + k)
            self.used += k
        return True

    def _retake(self, m: SpaceMemory, i: int) -> None:
        """One product of records ``i``.. with every row as it is now."""
        self.start, self.stop = i, min(len(self.units), i + _SCREEN_RECORDS)
        self.mu64, self.h2 = m._mu64, m._h2
        # The bits of centred_row of each record (arithmetic): its row as learn_one computes it.
        if self.stop - self.start <= _ROW_BY_ROW:
            rows = [centred_row(u, m._mu64, m._h2) for u in self.units[self.start : self.stop]]
            self.x = np.stack([x for x, _ in rows])
            self.wx = np.array([w for _, w in rows], dtype=np.float64)
        else:
            blocks = [centred_rows(self.units[b : b + _BLOCK_RECORDS], m._mu64, m._h2)
                      for b in range(self.start, self.stop, _BLOCK_RECORDS)]
            self.x = np.concatenate([x for x, _ in blocks])
            self.wx = np.concatenate([w for _, w in blocks])
        m._screen = self
        n = len(m._row_ids)
        records = self.stop - self.start
        if records < _SCREEN_MIN_RECORDS or n < _SCREEN_MIN_ROWS:
            self.p = None
            return
        # Room for the rows the covered records change (one or two each, as a rule) before a retake.
        self.p = np.empty((records, n + 2 * records + 8), dtype=F32)
        # rows @ records.T, not records @ rows.T: OpenBLAS takes the first twice as fast for a few records.
        self.p[:, :n] = (m._mat[:n] @ self.x.T).T
        m._col[:n] = np.arange(n)
        self.used = n


def _event_ts(ts: Any) -> float:
    ts = float(ts)
    if not math.isfinite(ts):
        raise ValueError("ts must be finite")
    return ts


def _mu_weight(count: int, cfg: PatternConfig) -> float:
    """A pattern's weight in mu and in merges: ``min(count, centroid_window)``,
    the members its centroid represents (docstring, steps 2, 4 and 6)."""
    return float(min(count, cfg.centroid_window))


def _sizeof_estimates() -> tuple[int, int, int, int]:
    """Per-object RAM estimates, measured once on this interpreter."""
    hdr = sys.getsizeof(np.zeros(0, dtype=F32))
    pid = "p-" + "0" * 16
    sample = Pattern(pid, 1, np.zeros(0, dtype=F32), 1.0, 0.5, 1.0, 1.0, 1, 0.0, 0.0, ())
    dict_entry = 3 * 8 * 2  # hash, key, value; dicts run at most 2/3 full
    per_pattern = (
        sys.getsizeof(sample)
        + hdr  # centroid array object (its data is counted per dim)
        + sys.getsizeof(pid)
        + 5 * sys.getsizeof(1.0)  # boxed floats
        + sys.getsizeof(10**6)  # boxed count / seq
        + 2 * dict_entry  # _patterns, _row_of
        + 8  # _row_ids slot
        + sys.getsizeof(0)  # _row_of value
    )
    per_related = sys.getsizeof((pid, 0.5)) + sys.getsizeof(0.5) + 8
    per_alias = 2 * sys.getsizeof(pid) + dict_entry
    return hdr, per_pattern, per_related, per_alias


_NDARRAY_HEADER, _PER_PATTERN, _PER_RELATED, _PER_ALIAS = _sizeof_estimates()


def _centre_agreement(count: int, match_threshold: float) -> float:
    """How well the mean of ``count`` members of one group agrees with the group's centre.

    Members that agree pairwise at ``kappa^2`` (the match threshold) sit at ``kappa`` to their
    centre, and the mean of ``m`` of them at ``1 / sqrt(1 + (1/kappa^2 - 1) / m)``. Two patterns
    of one group are then expected at the product of their two agreements: a calibrated space
    merges them there (capped by its merge threshold), so that the small patterns its strict
    start left behind rejoin their group. For one member against a settled pattern this is
    ``sqrt(match_threshold)``, the one-record rule of step 6.
    """
    if match_threshold <= 0.0:
        return match_threshold
    m = float(count)
    return math.sqrt(m * match_threshold / (m * match_threshold + 1.0 - match_threshold))


def _single_merge(match_threshold: float) -> float:
    """Similarity at which a one-record pattern merges into another (docstring, step 6)."""
    return math.sqrt(match_threshold) if match_threshold > 0.0 else match_threshold


def load_kernels() -> None:
    """Load (or, on a machine's first run, compile) the core's compiled loops now
    (streams.core.patterns.compiled), rather than in the first records and the first choice of the
    first space: the worker calls it before it consumes. Eighty records of two groups, one by one
    and in batches of two, take the hot path's loops and an early choice (the leader passes) through
    the types a worker's records give them; HDBSCAN on a sample of four records takes Prim's tree."""
    dense_groups(gram(np.eye(4, dtype=F32)), (2,))
    memory = SpaceMemory("load-kernels", PatternConfig())
    rng = np.random.default_rng(0)
    for i in range(40):
        memory.learn_one(f"e{i}", rng.normal(size=8).astype(F32) + 4.0 * (i % 2), float(i))
    for i in range(40, 80, 2):  # the worker's path: batches, row by row while small (_ROW_BY_ROW)
        memory.learn_many([(f"e{j}", rng.normal(size=8).astype(F32) + 4.0 * (j % 2), float(j))
                           for j in (i, i + 1)])
