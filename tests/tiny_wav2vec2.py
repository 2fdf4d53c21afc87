"""A tiny wav2vec2 for tests: the real architecture at a few thousand parameters, random weights
from a fixed seed, saved like any checkpoint so that it loads through the real loading code."""
from __future__ import annotations

from pathlib import Path


def save_tiny_wav2vec2(directory: Path, *, seed: int = 0, hidden: int = 32, layers: int = 2,
                       nan_weights: bool = False) -> Path:
    """Writes config.json, model.safetensors and preprocessor_config.json into `directory`.

    `nan_weights` poisons the final layer norm, for a model that runs but yields NaN.
    """
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(seed)
    config = Wav2Vec2Config(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                            intermediate_size=2 * hidden, conv_dim=(16,) * 7,
                            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    model = Wav2Vec2Model(config)
    if nan_weights:
        with torch.no_grad():
            model.encoder.layers[-1].final_layer_norm.weight.fill_(float("nan"))
    model.save_pretrained(directory)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, do_normalize=True).save_pretrained(directory)
    return directory
