"""Loading wav2vec2 and turning windows into vectors, with a tiny model saved and loaded for real."""
from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the audio extra (torch, transformers) is not installed")

from streams.core.audio import MODEL_RATE  # noqa: E402
from streams.extraction.model import (  # noqa: E402
    InferenceFailed,
    ModelUnavailable,
    cut_to_layer,
    load_extractor,
    load_model,
    receptive_field,
)
from streams.extraction.settings import ExtractionSettings  # noqa: E402
from tests.tiny_wav2vec2 import save_tiny_wav2vec2  # noqa: E402


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_wav2vec2(tmp_path_factory.mktemp("tiny-wav2vec2"))


def settings(model_dir, **kw) -> ExtractionSettings:
    return ExtractionSettings(model=str(model_dir), offline=True, threads=1, window_s=0.5, hop_s=0.25, **kw)


def noise(seconds: float, rate: int = MODEL_RATE, channels: int = 1, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal((int(seconds * rate), channels))).astype(np.float32)


def test_a_saved_model_loads_and_names_model_layer_and_pooling(tiny_dir):
    ex = load_extractor(settings(tiny_dir, pooling="mean_std"))
    assert not ex.model.training
    assert ex.layer == 2 and ex.dim == 64
    name, digest = ex.model_id.split("#")
    assert name == tiny_dir.name[:48] and len(digest) == 12
    assert ex.model_space == f"wav2vec2:{ex.model_id}:L2:mean_std"
    assert ex.plan.min_samples == receptive_field(ex.model.config) == 400


def test_the_weights_name_the_model_not_the_directory(tmp_path, tiny_dir):
    same = save_tiny_wav2vec2(tmp_path / tiny_dir.name, seed=0)
    other = save_tiny_wav2vec2(tmp_path / "other" / tiny_dir.name, seed=1)
    ids = [load_extractor(settings(d)).model_id for d in (tiny_dir, same, other)]
    assert ids[0] == ids[1] != ids[2]


@pytest.mark.parametrize("source", ["/nonexistent/wav2vec2", "./no-such-model"])
def test_a_missing_directory_says_how_to_provide_a_model(source):
    with pytest.raises(ModelUnavailable) as err:
        load_model(source, offline=False)
    message = str(err.value)
    assert source in message and "FMS_EXTRACT_MODEL" in message and "save_pretrained" in message


def test_a_hub_id_offline_and_not_cached_says_how_to_provide_a_model(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hub-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    s = ExtractionSettings.from_env()
    assert s.offline
    with pytest.raises(ModelUnavailable) as err:
        load_model("facebook/wav2vec2-base", offline=s.offline)
    message = str(err.value)
    assert "facebook/wav2vec2-base" in message and "offline" in message and "HF_HUB_OFFLINE" in message


def test_vectors_are_unit_length_and_bit_identical_on_a_rerun(tiny_dir):
    samples = noise(1.3, rate=44100, channels=2)
    first = load_extractor(settings(tiny_dir, batch_size=3))
    v1, starts = first.extract(samples, 44100)
    v2, _ = load_extractor(settings(tiny_dir, batch_size=3)).extract(samples, 44100)
    assert starts == [0, 4000, 8000, 12000, 12800]  # 1.3 s at 16 kHz: 4 windows of 0.5 s, one at the tail
    assert v1.shape == (5, 32) and v1.dtype == np.float32
    assert np.allclose(np.linalg.norm(v1, axis=1), 1, atol=1e-6)
    assert v1.tobytes() == v2.tobytes()


def test_batch_size_changes_at_most_the_last_bits(tiny_dir):
    samples = noise(2.0)
    one = load_extractor(settings(tiny_dir, batch_size=1)).extract(samples, MODEL_RATE)[0]
    many = load_extractor(settings(tiny_dir, batch_size=16)).extract(samples, MODEL_RATE)[0]
    assert np.allclose(one, many, atol=1e-5)


def test_different_sounds_give_different_vectors(tiny_dir):
    ex = load_extractor(settings(tiny_dir))
    t = np.arange(8000) / MODEL_RATE
    low = np.sin(2 * np.pi * 200 * t).astype(np.float32)[:, None]
    a = ex.extract(low, MODEL_RATE)[0][0]
    b = ex.extract(noise(0.5), MODEL_RATE)[0][0]
    assert float(a @ b) < 0.99


@pytest.mark.parametrize("stable", [False, True])
def test_cutting_the_transformer_keeps_what_transformers_reports_for_that_layer(stable):
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                            do_stable_layer_norm=stable, feat_extract_norm="layer" if stable else "group")
    full = Wav2Vec2Model(config).eval()
    x = torch.randn(2, 8000)
    with torch.inference_mode():
        reported = full(x, output_hidden_states=True).hidden_states
        for layer in range(4):
            cut = copy.deepcopy(full)
            assert cut_to_layer(cut, layer) == layer
            out = cut(x).last_hidden_state
            if not stable:
                assert torch.equal(out, reported[layer])
            else:  # pre-LN: the shorter model's final layer norm applies to layer L's output
                assert torch.allclose(out, full.encoder.layer_norm(reported[layer]), atol=1e-6)
    with pytest.raises(ValueError):
        cut_to_layer(copy.deepcopy(full), 4)
    assert cut_to_layer(copy.deepcopy(full), -1) == 3


def test_a_model_that_yields_nan_raises_instead_of_emitting(tmp_path):
    ex = load_extractor(settings(save_tiny_wav2vec2(tmp_path / "nan", nan_weights=True)))
    with pytest.raises(InferenceFailed):
        ex.extract(noise(0.5), MODEL_RATE)


def test_silence_gives_a_finite_unit_vector(tiny_dir):
    ex = load_extractor(settings(tiny_dir))
    vectors, _ = ex.extract(np.zeros((8000, 1), np.float32), MODEL_RATE)
    assert np.isfinite(vectors).all() and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-6)


def test_settings_are_checked_before_loading(tiny_dir):
    with pytest.raises(ValueError, match="POOLING"):
        load_extractor(dataclasses.replace(settings(tiny_dir), pooling="max"))
    with pytest.raises(ValueError, match="layer"):
        load_extractor(dataclasses.replace(settings(tiny_dir), layer=7))


def test_int8_quantization_is_close_to_float32_deterministic_and_a_space_of_its_own(tiny_dir):
    samples = noise(1.0, seed=3)
    exact = load_extractor(settings(tiny_dir))
    fast = load_extractor(settings(tiny_dir, quantize="int8"))
    assert fast.model_space == exact.model_space + ":int8"
    a, b = exact.extract(samples, MODEL_RATE)[0], fast.extract(samples, MODEL_RATE)[0]
    assert np.min(np.sum(a * b, axis=1)) > 0.99
    assert fast.extract(samples, MODEL_RATE)[0].tobytes() == b.tobytes()
    with pytest.raises(ValueError, match="QUANTIZE"):
        load_extractor(settings(tiny_dir, quantize="fp8"))
