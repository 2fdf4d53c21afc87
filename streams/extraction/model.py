"""wav2vec2 on the CPU: loading a model and turning prepared windows into pooled, unit-length vectors.

This is the only module that imports torch and transformers; only the extraction role loads it.

Loading. ``FMS_EXTRACT_MODEL`` is a hub id or a directory written by ``save_pretrained``; both go
through ``Wav2Vec2Model.from_pretrained``. In offline mode (``FMS_EXTRACT_OFFLINE``,
``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``) only local files are used, so a hub id works only
when the hub cache already holds it. Any failure to load is one :class:`ModelUnavailable` that says
how to provide a model.

Layers. Layer L is the model's output with its transformer cut after the first L layers (0 keeps
none). Cutting is exact: for post-LN models such as wav2vec2-base it equals transformers'
``hidden_states[L]`` (a unit test checks this), and the layers above L are never computed. For
pre-LN models (``do_stable_layer_norm``, e.g. large-lv60) it is the encoder's final layer norm
applied to layer L's output, i.e. the last hidden state of the shorter model.

Identity. A model is named ``<name>#<12 hex digits>``: its directory or hub name, and a hash of its
weights, so that two different checkpoints behind the same name never share a pattern space. The
model space is ``wav2vec2:<model id>:L<layer>:<pooling>``, with ``:int8`` appended when the model runs
quantized.

Determinism. Inference runs in eval mode under ``torch.inference_mode()``, with a fixed thread
count. The same windows in the same batches give bit-identical vectors on every run. A different
batch size can change the last bits (the BLAS kernels block the work differently; about 1e-6), and
that is why batches never mix windows of different records: a record's vectors depend on the record
and the settings alone, never on what arrived next to it. With int8 quantization the activations'
scale is taken per batch, so there the batch size matters more (still deterministic per record).
"""
from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from streams.core.audio import MODEL_RATE, POOLINGS, WindowPlan, l2_normalize, pool, prepare

QUANTIZATIONS = ("none", "int8")
from streams.extraction.settings import ExtractionSettings

log = logging.getLogger(__name__)


class ModelUnavailable(RuntimeError):
    """The configured model cannot be loaded; the message says how to provide one."""


class InferenceFailed(RuntimeError):
    """The model ran but its output cannot become a feature (NaN or infinite values)."""


HOW_TO_PROVIDE = (
    "Provide a wav2vec2 model by setting FMS_EXTRACT_MODEL to either a local directory written by "
    "Wav2Vec2Model.save_pretrained (config.json and model.safetensors), or a hub id such as "
    "facebook/wav2vec2-base, which needs access to the hub or, in offline mode (FMS_EXTRACT_OFFLINE=1, "
    "HF_HUB_OFFLINE=1 or TRANSFORMERS_OFFLINE=1), the model already in the hub cache (HF_HOME)."
)


def _looks_like_path(source: str) -> bool:
    return source.startswith((".", "/", "~")) or Path(source).expanduser().exists()


def load_model(source: str, *, offline: bool):
    """An eval-mode Wav2Vec2Model from a directory or a hub id; ModelUnavailable when it cannot be had."""
    from transformers import Wav2Vec2Model
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a per-load progress bar only clutters worker logs
    where = Path(source).expanduser()
    if _looks_like_path(source) and not where.is_dir():
        raise ModelUnavailable(f"no model directory at {source!r}. {HOW_TO_PROVIDE}")
    try:
        model = Wav2Vec2Model.from_pretrained(str(where) if where.is_dir() else source,
                                              local_files_only=offline or where.is_dir())
    except Exception as exc:  # a missing file, a bad config, a corrupt checkpoint: all mean "no model"
        mode = " (offline mode: local files only)" if offline else ""
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelUnavailable(f"cannot load wav2vec2 model {source!r}{mode}: {first_line}. {HOW_TO_PROVIDE}") from exc
    return model.eval()


def wants_normalized_input(source: str, *, offline: bool) -> bool:
    """The checkpoint's own `do_normalize` (preprocessor_config.json); True, as for wav2vec2-base, without one."""
    from transformers import Wav2Vec2FeatureExtractor

    where = Path(source).expanduser()
    try:
        fe = Wav2Vec2FeatureExtractor.from_pretrained(str(where) if where.is_dir() else source,
                                                      local_files_only=offline or where.is_dir())
    except (OSError, ValueError):
        return True
    return bool(fe.do_normalize)


def model_name(source: str) -> str:
    """The last path component of a directory or hub id, as a short identifier."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(source.rstrip("/\\")).name or "model").strip("-")
    return (name or "model")[:48]


def fingerprint(model) -> str:
    """A hash of every tensor of the model (names, dtypes, shapes, bytes), in state_dict order."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def receptive_field(config) -> int:
    """Fewest input samples for which the convolutional feature encoder yields one frame."""
    field = 1
    for kernel, stride in zip(reversed(config.conv_kernel), reversed(config.conv_stride)):
        field = (field - 1) * stride + kernel
    return field


def cut_to_layer(model, layer: int) -> int:
    """Drop the transformer layers above `layer` (-1: the last one); returns the layer as a number."""
    total = len(model.encoder.layers)
    resolved = total + 1 + layer if layer < 0 else layer
    if not 0 <= resolved <= total:
        raise ValueError(f"layer {layer} is outside 0..{total} (or -{total + 1}..-1) for this model")
    model.encoder.layers = model.encoder.layers[:resolved]
    return resolved


@dataclass
class Extractor:
    model: torch.nn.Module
    model_id: str
    layer: int
    pooling: str
    batch_size: int
    normalize: bool
    plan: WindowPlan
    dim: int
    quantize: str = "none"

    @property
    def model_space(self) -> str:
        suffix = "" if self.quantize == "none" else f":{self.quantize}"
        return f"wav2vec2:{self.model_id}:L{self.layer}:{self.pooling}{suffix}"

    def embed(self, windows: np.ndarray) -> np.ndarray:
        """(count, samples) prepared windows -> (count, dim) unit vectors, batch by batch."""
        pooled = []
        with torch.inference_mode():
            for i in range(0, len(windows), self.batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(windows[i:i + self.batch_size]))
                hidden = self.model(batch).last_hidden_state
                pooled.append(pool(hidden.numpy(), self.pooling))
        vectors = l2_normalize(np.concatenate(pooled))
        if not np.isfinite(vectors).all():
            raise InferenceFailed(f"model {self.model_id} produced NaN or infinite values")
        return vectors

    def extract(self, samples: np.ndarray, sample_rate: int) -> tuple[np.ndarray, list[int]]:
        """Frames x channels at any rate -> (vectors, window starts in samples at 16 kHz)."""
        windows, starts = prepare(samples, sample_rate, self.plan, normalize=self.normalize)
        return self.embed(windows), starts


def load_extractor(settings: ExtractionSettings) -> Extractor:
    if settings.pooling not in POOLINGS:
        raise ValueError(f"FMS_EXTRACT_POOLING={settings.pooling!r} is not one of {', '.join(POOLINGS)}")
    if settings.quantize not in QUANTIZATIONS:
        raise ValueError(f"FMS_EXTRACT_QUANTIZE={settings.quantize!r} is not one of {', '.join(QUANTIZATIONS)}")
    if settings.batch_size < 1:
        raise ValueError(f"FMS_EXTRACT_BATCH_SIZE must be at least 1, not {settings.batch_size}")
    # The event loop thread only waits while inference runs, so every core can go to torch.
    torch.set_num_threads(settings.torch_threads)
    model = load_model(settings.model, offline=settings.offline)
    model_id = f"{model_name(settings.model)}#{fingerprint(model)[:12]}"
    layer = cut_to_layer(model, settings.layer)
    if settings.quantize == "int8":
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    plan = WindowPlan.of_seconds(settings.window_s, settings.hop_s, receptive_field(model.config), MODEL_RATE)
    dim = model.config.hidden_size * (2 if settings.pooling == "mean_std" else 1)
    extractor = Extractor(model=model, model_id=model_id, layer=layer, pooling=settings.pooling,
                          batch_size=settings.batch_size,
                          normalize=wants_normalized_input(settings.model, offline=settings.offline),
                          plan=plan, dim=dim, quantize=settings.quantize)
    log.info("extraction model %s: space %s, dim %d, %d threads", settings.model, extractor.model_space, dim,
             torch.get_num_threads())
    return extractor
