"""Pipeline-level functions beyond what the CLI tests cover."""

import numpy as np
import pytest

from chandra.errors import ChandraError, ParameterError
from chandra.pipeline import TrainConfig, ir_over_k, stage_hash


def test_ir_over_k_peaks_at_the_true_number_of_clusters():
    # 6 well-separated prototypes recurring in a fixed motif: K = 8 is the
    # first size that resolves them; K = 2 merges them into a predictable
    # but uninformative sequence, and IR must rank K=8 above K=2.
    rng = np.random.default_rng(0)
    prototypes = rng.standard_normal((6, 12)) * 5
    motif = [0, 1, 2, 3, 4, 5, 2, 3]
    seq = motif * 30
    X = prototypes[seq] + 0.01 * rng.standard_normal((len(seq), 12))
    curve = ir_over_k(X, ks=[2, 8, 64])
    assert curve["k"] == [2, 8, 64]
    ir = dict(zip(curve["k"], curve["ir"]))
    assert ir[8] > ir[2]
    assert curve["best_k"] in (8, 64) and curve["best_ir"] == max(curve["ir"])


def test_ir_over_k_default_grid_and_errors():
    X = np.random.default_rng(1).standard_normal((40, 5))
    curve = ir_over_k(X)
    assert curve["k"] == [2, 3, 4, 6, 8, 12, 16]  # the K grid up to half the segments
    assert curve["recommended_k"] == curve["recommended"]["k"] == 8  # 40 segments / 4 uses per token, K >= 8
    assert ir_over_k(X, include=(20,))["k"][-1] == 20  # a run's own K joins the sweep
    with pytest.raises(ChandraError):
        ir_over_k(X, ks=[100])


def test_stage_hash_tracks_only_relevant_options():
    a, b = TrainConfig(n_tokens=8), TrainConfig(n_tokens=16)
    assert stage_hash(a, "segment") == stage_hash(b, "segment")
    assert stage_hash(a, "harmony") == stage_hash(b, "harmony")
    assert stage_hash(a, "vocabulary") != stage_hash(b, "vocabulary")
    assert stage_hash(a, "oracle") != stage_hash(b, "oracle")  # depends on vocabulary
    exact = TrainConfig(n_tokens=8, oracle_search="exact")
    assert stage_hash(a, "oracle") != stage_hash(exact, "oracle")
    assert stage_hash(a, "vocabulary") == stage_hash(exact, "vocabulary")
    assert stage_hash(a, "segment", audio_sha256="x") != stage_hash(a, "segment", audio_sha256="y")


@pytest.mark.parametrize("bad, parameter", [
    (dict(n_tokens=0), "n_tokens"), (dict(n_tokens=2.5), "n_tokens"), (dict(oracle="graph"), "oracle"),
    (dict(threshold="often"), "threshold"), (dict(threshold=-1.0), "threshold"),
    (dict(min_duration=2.0, max_duration=1.0), "min_duration"), (dict(normalisation="max"), "normalisation"),
    (dict(encoder="mfcc"), "encoder"), (dict(metric="manhattan"), "metric"), (dict(seed="7"), "seed"),
    (dict(pca_components=0), "pca_components"), (dict(oracle_search="fast"), "oracle_search"),
    (dict(device="tpu"), "device"), (dict(quantize="int4"), "quantize"), (dict(quantize="int8"), "quantize"),
    (dict(encoder="wav2vec2", device="cuda", quantize="int8"), "quantize"), (dict(batch_size=0), "batch_size"),
    (dict(device="cuda"), "device"),
])
def test_config_validation(bad, parameter):
    # An argument error: a ChandraError and a ValueError that names the
    # option as a parameter, never as a command-line flag.
    with pytest.raises(ParameterError) as info:
        TrainConfig(**bad).validate()
    assert isinstance(info.value, ChandraError) and isinstance(info.value, ValueError)
    assert info.value.parameter == parameter
    assert parameter in str(info.value) and "--" not in str(info.value)


def test_config_choices_come_from_the_library():
    from chandra.encoders import ENCODER_NAMES, make_encoder
    from chandra.oracle import KINDS, METRICS, SEARCH_MODES
    from chandra.vocabulary import NORMALISATIONS

    for name in ENCODER_NAMES:
        TrainConfig(encoder=name).validate()
        assert callable(make_encoder(name).encode)
    for kind in KINDS:
        TrainConfig(oracle=kind).validate()
    for metric in METRICS:
        TrainConfig(metric=metric).validate()
    for mode in SEARCH_MODES:
        TrainConfig(oracle_search=mode).validate()
    for method in NORMALISATIONS:
        TrainConfig(normalisation=method).validate()


def test_unknown_option_is_refused():
    with pytest.raises(ChandraError, match="unknown training option"):
        TrainConfig.from_dict({"tokens": 8})
