"""The extraction role's faust app: fms.audio in, fms.audio-features out, no tables.

It is a consumer group of its own (`<FMS_APP_ID>-extraction`), so extraction workers scale apart
from pattern-memory workers, and it is the only app that imports torch (through streams.extraction.model).
It serves /health (with the model's identity), /metrics, and publishes fms.resource-metrics like
any worker.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import faust
from prometheus_client import Counter, Histogram

from schemas.records import ValidationLimits
from streams.service import broker_watch
from streams.service.app import create_app, create_guard
from streams.core.resilience.health import HealthTracker
from streams.service.emit import Emitter
from streams.extraction.model import Extractor, load_extractor
from streams.extraction.settings import ExtractionSettings
from streams.service.guard import Guard
from streams.service.metrics import Metrics
from streams.service.settings import Settings

EXTRACTION_OPERATIONS = ("inference", "send")

# One forward pass of a window batch takes from tens of milliseconds to seconds on a CPU.
_INFERENCE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass
class StageMetrics:
    inference_seconds: Histogram
    audio_seconds: Counter
    warnings: Counter

    @classmethod
    def create(cls, registry) -> StageMetrics:
        return cls(
            inference_seconds=Histogram("fms_inference_latency_seconds", "Time to extract the features of one audio record",
                                        buckets=_INFERENCE_BUCKETS, registry=registry),
            audio_seconds=Counter("fms_audio_seconds", "Seconds of audio turned into features", registry=registry),
            warnings=Counter("fms_input_warnings", "Input records accepted with a warning", ["code"], registry=registry),
        )


class NoPatterns:
    """The pattern and optimization stores' read side as an extraction worker has it: empty.

    Lets the shared health view and resource sampler serve this role unchanged.
    """

    def counts(self) -> dict[str, int]:
        return {}

    def memory_estimate_bytes(self) -> int:
        return 0

    def thresholds(self) -> dict[str, float]:
        return {}


@dataclass
class ExtractionRuntime:
    settings: Settings
    extraction: ExtractionSettings
    app: faust.App
    audio_topic: faust.TopicT
    extractor: Extractor
    limits: ValidationLimits
    metrics: Metrics
    stage_metrics: StageMetrics
    emit: Emitter
    guard: Guard
    store: NoPatterns = field(default_factory=NoPatterns)
    optimizations: NoPatterns = field(default_factory=NoPatterns)
    health: HealthTracker = field(default_factory=HealthTracker)
    started: float = field(default_factory=time.time)
    broker: Any = None  # streams.service.broker_watch.BrokerWatch


def create_extraction_runtime(settings: Settings, extraction: ExtractionSettings,
                              extractor: Extractor | None = None) -> ExtractionRuntime:
    """Loads the model first (ModelUnavailable before anything touches Kafka), then builds the app."""
    extractor = extractor or load_extractor(extraction)
    metrics = Metrics.create()
    app = create_app(settings, metrics, app_id=f"{settings.app_id}-extraction")
    emit = Emitter(app, settings, metrics)
    guard = create_guard(settings, metrics, emit, EXTRACTION_OPERATIONS)
    runtime = ExtractionRuntime(
        broker=broker_watch.install(settings),
        settings=settings,
        extraction=extraction,
        app=app,
        audio_topic=app.topic(settings.topic("audio"), partitions=settings.partitions,
                              key_serializer="raw", value_serializer="raw"),
        extractor=extractor,
        limits=ValidationLimits(max_dim=settings.max_dim, max_audio_seconds=extraction.max_audio_s),
        metrics=metrics,
        stage_metrics=StageMetrics.create(metrics.registry),
        emit=emit,
        guard=guard,
    )

    from agents import extraction as extraction_agent
    from streams.service import resources

    extraction_agent.register(runtime)
    resources.register(runtime)
    register_health(runtime)
    broker_watch.register(runtime, runtime.broker)
    return runtime


def model_component(runtime: ExtractionRuntime) -> dict:
    ex = runtime.extractor
    status = "healthy" if ex.dim <= runtime.settings.max_dim else "degraded"
    out = {"status": status, "model_id": ex.model_id, "model_space": ex.model_space, "dim": ex.dim,
           "layer": ex.layer, "pooling": ex.pooling, "batch_size": ex.batch_size,
           "window_s": runtime.extraction.window_s, "hop_s": runtime.extraction.hop_s}
    if status != "healthy":
        out["reason"] = (f"vectors have {ex.dim} dimensions, above FMS_MAX_DIM={runtime.settings.max_dim}: "
                         "pattern-memory workers with the same setting reject them")
    return out


def register_health(runtime: ExtractionRuntime) -> None:
    from schemas.codec import encode_json
    from streams.service import web

    @runtime.app.page("/health")
    async def health_view(view, request):
        status, components = web.health(runtime)
        components["model"] = model_component(runtime)
        if components["model"]["status"] == "degraded" and status == "healthy":
            status = "degraded"
        return view.bytes(encode_json({"status": status, "components": components}),
                          content_type="application/json", status=503 if status == "unhealthy" else 200)
