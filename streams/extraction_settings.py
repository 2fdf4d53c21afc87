"""Settings of the extraction role and of `fms ingest`, read from the environment like Settings.

Kept apart from streams.settings so that reading them never needs torch, and so that a
pattern-memory worker carries none of them. README.md lists them; keep the two in step.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from streams.settings import _bool, _env, _float, _int

ROLES = ("pattern-memory", "extraction")
# What huggingface_hub and transformers themselves read; honoured here too, so that one switch works.
HUB_OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def default_role() -> str:
    return _env("FMS_WORKER_ROLE", ROLES[0])


@dataclass(frozen=True)
class ExtractionSettings:
    # A hub id (needs the hub, or its files in the local cache) or a directory from save_pretrained.
    model: str = "facebook/wav2vec2-base"
    # Which transformer layer's output is pooled: 0 is the input of the first layer, -1 the last.
    layer: int = -1
    pooling: str = "mean"
    # Windows per forward pass. Batches never span records, so a record's vectors do not depend on
    # its neighbours (see streams/extraction.py).
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
        d = cls()
        return cls(
            model=_env("FMS_EXTRACT_MODEL", d.model),
            layer=_int("FMS_EXTRACT_LAYER", d.layer),
            pooling=_env("FMS_EXTRACT_POOLING", d.pooling),
            batch_size=_int("FMS_EXTRACT_BATCH_SIZE", d.batch_size),
            threads=_int("FMS_EXTRACT_THREADS", d.threads),
            offline=_bool("FMS_EXTRACT_OFFLINE", d.offline) or any(_bool(v, False) for v in HUB_OFFLINE_VARIABLES),
            quantize=_env("FMS_EXTRACT_QUANTIZE", d.quantize),
            window_s=_float("FMS_EXTRACT_WINDOW_S", d.window_s),
            hop_s=_float("FMS_EXTRACT_HOP_S", d.hop_s),
            max_audio_s=_float("FMS_MAX_AUDIO_S", d.max_audio_s),
        )

    @property
    def torch_threads(self) -> int:
        return self.threads if self.threads > 0 else (os.cpu_count() or 1)
