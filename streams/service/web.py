"""The worker's HTTP surface beyond faust's own: /health, /recognize and /patterns/<space>.

/metrics is set up in streams.service.app. The two read endpoints are answered by the worker that owns the
space's partition: another worker forwards the request there (one hop, marked with a header so it
can never loop) and relays the answer. Nothing here writes state.
"""
from __future__ import annotations

import time

from schemas.codec import decode, decode_json, encode_json
from schemas.vectors import check_dimension, encode_vector

ROUTED_HEADER = "X-FMS-Routed"


def health(runtime) -> tuple[str, dict]:
    """Health of this worker and why. Unhealthy answers 503 so that a load balancer stops using it."""
    app = runtime.app
    try:
        assigned = len(app.consumer.assignment())
    except Exception:  # before the consumer exists
        assigned = 0
    rebalancing = bool(getattr(app, "rebalancing", False))
    counts = runtime.store.counts()
    kafka = {"status": "degraded" if rebalancing else "healthy", "assigned_partitions": assigned,
             "rebalancing": rebalancing}
    broker = getattr(runtime, "broker", None)
    if broker is not None:
        # Reachability (streams.core.resilience.outage): reachable, since, last_ok, failed_probes, reason.
        reach = broker.health()
        kafka["status"] = _worst(kafka["status"], reach.pop("status"))
        if rebalancing and reach["reachable"]:
            reach["reason"] = "partitions are being assigned or restored"
        kafka.update(reach)
    components = {
        "kafka": kafka,
        "patterns": {"status": "healthy", "spaces": len(counts), "patterns": sum(counts.values())},
        "worker": {"status": "healthy", "uptime_s": round(time.time() - runtime.started, 3),
                   "name": runtime.settings.worker},
        "resources": {"status": runtime.health.status, "reason": runtime.health.reason},
    }
    return _worst(*(c["status"] for c in components.values())), components


def _worst(*statuses: str) -> str:
    return max(statuses, key=["healthy", "degraded", "unhealthy"].index)


def pattern_view(memory, pattern) -> dict:
    """A pattern's newest state, with confidence decayed to the space's event clock."""
    return {
        "pattern_id": pattern.pattern_id,
        "count": pattern.count,
        "confidence": memory.confidence_at(pattern),
        "established": memory.is_established(pattern),
        "centroid": encode_vector(pattern.centroid),
        "related": [{"pattern_id": pid, "similarity": sim} for pid, sim in pattern.related],
        "created_ts": pattern.created_ts,
        "last_ts": pattern.last_ts,
    }


def recognize(runtime, body: bytes) -> tuple[int, dict]:
    """The nearest patterns of a vector in its space, read-only."""
    decoded = decode("recognize-request", body, runtime.limits)
    request = decoded.record
    if request is None:
        return 400, {"errors": [e.to_dict() for e in decoded.result.errors]}
    memory = runtime.store.peek(request.space)
    if memory is None:
        return 404, {"errors": [{"code": "unknown_space", "message": f"no patterns in space {request.space!r}",
                                 "field": "space"}]}
    if not check_dimension(request.vector, memory.dim, "vector", decoded.result):
        return 400, {"errors": [e.to_dict() for e in decoded.result.errors]}
    matches = memory.predict_one(request.vector, k=request.k)
    optimizations = []
    for m in matches:
        related = memory.get(m.pattern_id).related
        for rec in runtime.optimizations.recommendations(request.space, m.pattern_id, related, request.model_id):
            optimizations.append(optimization_view(rec))
    return 200, {
        "space": request.space,
        "matches": [{"pattern_id": m.pattern_id, "similarity": m.similarity, "confidence": m.confidence,
                     "established": m.established} for m in matches],
        "optimizations": optimizations,
        "worker": runtime.settings.worker,
    }


def optimization_view(rec) -> dict:
    """A recommendation as /recognize lists it: the fields of an `fms.optimizations` record."""
    return {"pattern_id": rec.pattern_id, "model_id": rec.model_id, "config": rec.config,
            "effectiveness": rec.effectiveness, "support": rec.support,
            "source_model_id": rec.source_model_id, "source_pattern_id": rec.source_pattern_id}


def patterns_of(runtime, space: str) -> tuple[int, dict]:
    memory = runtime.store.peek(space)
    if memory is None:
        return 404, {"errors": [{"code": "unknown_space", "message": f"no patterns in space {space!r}",
                                 "field": "space"}]}
    return 200, {"space": space, "dim": memory.dim, "worker": runtime.settings.worker, "now": memory.now,
                 "threshold": memory.threshold, "calibrated": memory.calibrated,
                 "patterns": [pattern_view(memory, p) for p in memory.patterns()],
                 "merged_into": memory.merged_into()}


async def read_body(request, limit: int) -> bytes | None:
    """The request body, or None when it is larger than `limit` (declared or actual)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    body = await request.content.read(limit + 1)
    return None if len(body) > limit else body


def register(runtime) -> None:
    from faust import web

    app = runtime.app
    limit = runtime.settings.max_request_bytes

    def reply(view, status: int, body: dict):
        return view.bytes(encode_json(body), content_type="application/json", status=status)

    def too_large(view):
        return reply(view, 413, {"errors": [{"code": "request_too_large",
                                             "message": f"request body over {limit} bytes"}]})

    async def forward(view, request, space: str, body: bytes | None):
        """The owner's answer when another worker owns `space`; None when this worker should answer."""
        if getattr(app, "in_recovery", False) or getattr(app, "rebalancing", False):
            # The tables are being restored: an answer now would come from a partial memory.
            return reply(view, 503, {"errors": [{"code": "unavailable",
                                                 "message": "partitions are being assigned or restored"}]})
        if request.headers.get(ROUTED_HEADER):
            return None
        try:
            owner = app.router.key_store("memory", space)
        except (KeyError, TypeError):  # no assignment yet, or no topic metadata yet (starting)
            return reply(view, 503, {"errors": [{"code": "unavailable", "message": "partitions are being assigned"}]})
        canonical = app.conf.canonical_url
        if (owner.host, owner.port) == (canonical.host, canonical.port):
            return None
        target = request.url.with_host(owner.host).with_port(owner.port)
        headers = {ROUTED_HEADER: "1", "Content-Type": "application/json"}
        async with app.http_client.request(request.method, target, data=body, headers=headers) as resp:
            return view.bytes(await resp.read(), content_type="application/json", status=resp.status)

    @app.page("/health")
    async def health_view(self, request):
        status, components = health(runtime)
        return reply(self, 503 if status == "unhealthy" else 200, {"status": status, "components": components})

    @app.page("/recognize")
    class RecognizeView(web.View):
        async def post(self, request):
            body = await read_body(request, limit)
            if body is None:
                return too_large(self)
            space = _space_of(body)
            if space is not None:
                routed = await forward(self, request, space, body)
                if routed is not None:
                    return routed
            return reply(self, *recognize(runtime, body))

    @app.page("/patterns/{space}")
    async def patterns_view(self, request, space: str):
        routed = await forward(self, request, space, None)
        if routed is not None:
            return routed
        return reply(self, *patterns_of(runtime, space))


def _space_of(body: bytes) -> str | None:
    """The space a request names, for routing only; validation happens where it is answered."""
    try:
        obj = decode_json(body)
    except ValueError:
        return None
    space = obj.get("space") if isinstance(obj, dict) else None
    return space if isinstance(space, str) and space else None
