"""The worker's HTTP surface beyond faust's own: /health (and /metrics, set up in streams.app)."""
from __future__ import annotations

import time

from schemas.codec import encode_json


def health(runtime) -> tuple[str, dict]:
    """Health of this worker and why. Unhealthy answers 503 so that a load balancer stops using it."""
    app = runtime.app
    try:
        assigned = len(app.consumer.assignment())
    except Exception:  # before the consumer exists
        assigned = 0
    rebalancing = bool(getattr(app, "rebalancing", False))
    components = {
        "kafka": {"status": "degraded" if rebalancing else "healthy", "assigned_partitions": assigned,
                  "rebalancing": rebalancing},
        "patterns": {"status": "healthy", "spaces": len(runtime.store.counts()),
                     "patterns": sum(runtime.store.counts().values())},
        "worker": {"status": "healthy", "uptime_s": round(time.time() - runtime.started, 3),
                   "name": runtime.settings.worker},
    }
    order = ["healthy", "degraded", "unhealthy"]
    status = max((c["status"] for c in components.values()), key=order.index)
    return status, components


def register(runtime) -> None:
    app = runtime.app

    @app.page("/health")
    async def health_view(self, request):
        status, components = health(runtime)
        return self.bytes(encode_json({"status": status, "components": components}),
                          content_type="application/json", status=503 if status == "unhealthy" else 200)
