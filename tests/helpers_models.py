"""Tiny random transformer audio models saved to disk, for tests.

No model hub is reachable in tests, so tests build a tiny random model, save
it with ``save_pretrained`` and load it back through chandra's real loading
code. Importable both as ``tests.helpers_models`` and as ``helpers_models``
(tests directory on ``sys.path``); it imports nothing from the test suite.

Geometry of every tiny model: 16 kHz input, conv kernels (10, 8), strides
(5, 4) → hop 20 samples (1.25 ms), receptive field 45 samples; hidden size
32; 2 transformer layers (so 3 hidden states).
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["save_tiny_wav2vec2", "TINY_HIDDEN_SIZE", "TINY_HOP", "TINY_RECEPTIVE_FIELD", "TINY_LAYERS"]

TINY_HIDDEN_SIZE = 32
TINY_LAYERS = 2
TINY_HOP = 20
TINY_RECEPTIVE_FIELD = 45

_COMMON = dict(
    hidden_size=TINY_HIDDEN_SIZE,
    num_hidden_layers=TINY_LAYERS,
    num_attention_heads=2,
    intermediate_size=37,
    conv_dim=(32, 32),
    conv_stride=(5, 4),
    conv_kernel=(10, 8),
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
    vocab_size=8,
)


def save_tiny_wav2vec2(
    directory,
    *,
    model_type: str = "wav2vec2",
    feat_extract_norm: str = "group",
    seed: int = 0,
    remote_code_config: bool = False,
) -> Path:
    """Build, seed and save a tiny random audio transformer.

    Parameters
    ----------
    directory : str or Path
        Created if missing; receives ``config.json``, weights and
        ``preprocessor_config.json``.
    model_type : {"wav2vec2", "hubert", "wavlm"}
        Architecture.
    feat_extract_norm : {"group", "layer"}
        "group" is what wav2vec2-base uses (GroupNorm over time in the first
        conv, so a chunk's output depends on the whole chunk); "layer" makes
        the conv front end and ``hidden_states[0]`` local in time.
    seed : int
        torch seed for the random weights.
    remote_code_config : bool
        Rewrite ``config.json`` to look like a model that needs repository
        code (``model_type`` unknown to transformers plus an ``auto_map``, as
        MERT's config does), to test the trust_remote_code refusal.

    Returns
    -------
    Path
        The directory.
    """
    import torch
    from transformers import (
        HubertConfig,
        HubertModel,
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Model,
        WavLMConfig,
        WavLMModel,
    )

    kinds = {
        "wav2vec2": (Wav2Vec2Config, Wav2Vec2Model),
        "hubert": (HubertConfig, HubertModel),
        "wavlm": (WavLMConfig, WavLMModel),
    }
    if model_type not in kinds:
        raise ValueError(f"model_type must be one of {sorted(kinds)}, got {model_type!r}")
    config_cls, model_cls = kinds[model_type]
    extra = {}
    if model_type == "wavlm":
        extra = {"num_buckets": 16, "max_bucket_distance": 64}
    config = config_cls(**_COMMON, feat_extract_norm=feat_extract_norm, **extra)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = model_cls(config)
    model.eval()
    model.save_pretrained(directory)
    Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=16000,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=feat_extract_norm == "layer",
    ).save_pretrained(directory)
    if remote_code_config:
        path = directory / "config.json"
        raw = json.loads(path.read_text(encoding="utf-8"))
        raw["model_type"] = "mert_model"
        raw["auto_map"] = {
            "AutoConfig": "configuration_MERT.MERTConfig",
            "AutoModel": "modeling_MERT.MERTModel",
        }
        path.write_text(json.dumps(raw, indent=2), encoding="utf-8")
    return directory
