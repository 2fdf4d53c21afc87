"""Settings of the extraction role and of `fms ingest`, read from the environment like Settings.

Kept apart from streams.service.settings so that reading them never needs torch, and so that a
pattern-memory worker carries none of them. Declared once, like Settings: each field is read from
FMS_EXTRACT_<NAME> (max_audio_s, shared with `fms ingest`: FMS_MAX_AUDIO_S) by its type; README's
table is checked against them (tests/unit/service/test_settings_errors.py).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from streams.service.settings import _bool, _env, fields_from_env

ROLES = ("pattern-memory", "extraction")
# What huggingface_hub and transformers themselves read; honoured here too, so that one switch works.
HUB_OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def default_role() -> str:
    return _env("FMS_WORKER_ROLE", ROLES[0])


def extraction_env_name(field_name: str) -> str:
    """The environment variable of an ExtractionSettings field."""
    return "FMS_MAX_AUDIO_S" if field_name == "max_audio_s" else f"FMS_EXTRACT_{field_name.upper()}"


@dataclass(frozen=True)
class ExtractionSettings:
    # A hub id (needs the hub, or its files in the local cache) or a directory from save_pretrained.
    model: str = "facebook/wav2vec2-base"
    # Which transformer layer's output is pooled: 0 is the input of the first layer, -1 the last.
    layer: int = -1
    pooling: str = "mean"
    # Windows per forward pass. Batches never span records, so a record's vectors do not depend on
    # its neighbours (see streams/extraction/model.py).
    batch_size: int = 16
    # Intra-op threads for torch; 0: one per core.
    threads: int = 0
    offline: bool = False
    # "int8": dynamic int8 quantization of the linear layers, about twice as fast on a CPU; vectors
    # move slightly (cosine ~0.9996 to float32), so it is part of the space name.
    quantize: str = "none"
    window_s: float = 2.0
    # Every second of audio goes through the model once. Half a window (1.0) puts a sound cut by a
    # window boundary whole inside the next window, at twice the cost.
    hop_s: float = 2.0
    # The contract's default; `fms ingest` cuts files into records no longer than this.
    max_audio_s: float = 30.0

    @classmethod
    def from_env(cls) -> ExtractionSettings:
        return fields_from_env(cls, extraction_env_name, {
            # The hub's own switches count too, so that one switch works.
            "offline": lambda name, default: _bool(name, default) or any(_bool(v, False) for v in HUB_OFFLINE_VARIABLES),
        })

    @property
    def torch_threads(self) -> int:
        return self.threads if self.threads > 0 else (os.cpu_count() or 1)
