"""Forward pass (SPEC §4) against the plain-numpy reference in tests/reference.py."""

import numpy as np
import pytest

import bnnslstm as bl
from helpers import make_params, y_time_major
from reference import GATES, batch_sizes_from_lengths, lstm_forward, random_weights

TOLERANCE = {np.float32: 3e-5, np.float64: 1e-11}
CUSTOM = {  # gate -> (fn, alpha, beta): every gate with a different elementwise function
    "input": (int(bl.ActivationFunction.HARD_SIGMOID), 0.2, 0.5),
    "forget": (int(bl.ActivationFunction.SIGMOID), 0.0, 0.0),
    "candidate": (int(bl.ActivationFunction.SCALED_TANH), 1.5, 0.7),
    "output": (int(bl.ActivationFunction.SOFTSIGN), 0.0, 0.0),
    "hidden": (int(bl.ActivationFunction.ELU), 0.8, 0.0),
}


def masks_for(L, T, B, D, H, p, seed, dtype):
    if p == 0 or L == 1:
        return None
    masks = [None]
    for layer in range(1, L):
        out = np.empty((T, B, D * H), dtype)
        bl.dropout_mask(seed, layer, p, out)
        masks.append(out.astype(np.float64))
    return masks


def run_case(*, T=5, B=3, I=4, H=3, L=1, bidirectional=False, dtype=np.float64, layout="SNE",
             peephole=None, bias=True, activations=None, lengths=None, dropout=0.0, seed=7,
             states=True, cache=True, rng_seed=0):
    rng = np.random.default_rng(rng_seed)
    D = 2 if bidirectional else 1
    weights = random_weights(rng, I, H, L, D, peephole=peephole, bias=bias, dtype=dtype)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0 = rng.standard_normal((L, D, B, H)).astype(dtype) if states else None
    c0 = rng.standard_normal((L, D, B, H)).astype(dtype) if states else None
    batch_sizes = None if lengths is None else batch_sizes_from_lengths(lengths, T)
    params, out = make_params(x, weights, h0=h0, c0=c0, batch_sizes=batch_sizes,
                              bidirectional=bidirectional, activations=activations,
                              dropout=dropout, seed=seed, layout=layout)
    training_cache = bytearray(bl.compute_lstm_training_cache_capacity(params)) if cache else None
    bl.direct_apply_lstm_batch_training_caching(params, training_cache=training_cache)
    as64 = lambda a: None if a is None else a.astype(np.float64)
    w64 = {k: {g: (None if v is None else ([as64(w) for w in v] if isinstance(v, list) else as64(v)))
               for g, v in part.items()} for k, part in weights.items()}
    y, h_n, c_n, trace = lstm_forward(
        as64(x), w64, as64(h0), as64(c0), batch_sizes=batch_sizes,
        dropout_masks=masks_for(L, T, B, D, H, dropout if L > 1 else 0.0, seed, dtype),
        activations=activations, bidirectional=bidirectional)
    tol = TOLERANCE[dtype]
    np.testing.assert_allclose(y_time_major(out, layout), y, rtol=tol, atol=tol)
    np.testing.assert_allclose(out["h_n"], h_n, rtol=tol, atol=tol)
    np.testing.assert_allclose(out["c_n"], c_n, rtol=tol, atol=tol)
    return params, out, training_cache, trace


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["SNE", "NSE"])
@pytest.mark.parametrize("L,bidirectional", [(1, False), (1, True), (2, False), (3, True)])
def test_stacks_and_directions(dtype, layout, L, bidirectional):
    run_case(L=L, bidirectional=bidirectional, dtype=dtype, layout=layout)


@pytest.mark.parametrize("peephole", ["diagonal", "full",
                                      {"input": "full", "forget": "diagonal", "candidate": None, "output": "full"},
                                      {"input": None, "forget": None, "candidate": "diagonal", "output": "diagonal"}])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_peepholes(peephole, bidirectional):
    run_case(L=2, bidirectional=bidirectional, peephole=peephole)


@pytest.mark.parametrize("bias", [False, {"input": True, "forget": False, "candidate": True, "output": False}])
def test_optional_biases(bias):
    run_case(L=2, bias=bias)


def test_without_initial_states():
    run_case(L=2, bidirectional=True, states=False)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_custom_activations(dtype):
    run_case(L=2, bidirectional=True, activations=CUSTOM, peephole="diagonal", dtype=dtype)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("layout", ["SNE", "NSE"])
def test_variable_batch(bidirectional, layout):
    params, out, _, _ = run_case(T=6, B=4, L=2, bidirectional=bidirectional, layout=layout,
                                 lengths=[6, 4, 4, 1], peephole="full")
    y = y_time_major(out, layout)
    assert np.all(y[1:, 3] == 0) and np.all(y[4:, 1:] == 0)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_dropout_between_layers(bidirectional):
    run_case(L=3, bidirectional=bidirectional, dropout=0.4, seed=123)


def test_dropout_same_mask_with_and_without_cache():
    a = run_case(L=2, dropout=0.5, seed=5, cache=True)[1]
    b = run_case(L=2, dropout=0.5, seed=5, cache=False)[1]
    np.testing.assert_array_equal(a["y_store"], b["y_store"])
    c = run_case(L=2, dropout=0.5, seed=6, cache=False)[1]
    assert not np.array_equal(a["y_store"], c["y_store"])


def test_dropout_mask_statistics():
    out = np.empty((50, 40, 30), np.float32)
    bl.dropout_mask(1, 1, 0.3, out)
    kept = out != 0
    assert abs(kept.mean() - 0.7) < 0.02
    np.testing.assert_allclose(out[kept], 1 / 0.7, rtol=1e-6)
    again = np.empty_like(out)
    bl.dropout_mask(1, 1, 0.3, again)
    np.testing.assert_array_equal(out, again)
    other_layer = np.empty_like(out)
    bl.dropout_mask(1, 2, 0.3, other_layer)
    assert 0.4 < ((other_layer != 0) == kept).mean() < 0.7


@pytest.mark.parametrize("case", range(8))
def test_random_shapes_and_features(case):
    rng = np.random.default_rng(100 + case)
    T, B = int(rng.integers(1, 7)), int(rng.integers(1, 5))
    lengths = sorted(rng.integers(1, T + 1, size=B).tolist(), reverse=True)
    lengths[0] = T
    kinds = [None, "diagonal", "full"]
    run_case(
        T=T, B=B, I=int(rng.integers(1, 6)), H=int(rng.integers(1, 6)), L=int(rng.integers(1, 4)),
        bidirectional=bool(rng.integers(2)), dtype=[np.float32, np.float64][case % 2],
        layout=["SNE", "NSE"][case // 2 % 2],
        peephole={g: kinds[int(rng.integers(3))] for g in GATES},
        bias={g: bool(rng.integers(2)) for g in GATES},
        lengths=lengths if rng.integers(2) else None,
        dropout=float(rng.uniform(0, 0.6)) if rng.integers(2) else 0.0,
        activations=CUSTOM if rng.integers(2) else None,
        rng_seed=case,
    )


def test_optional_outputs_are_not_written():
    rng = np.random.default_rng(3)
    weights = random_weights(rng, 3, 2, 1, 1)
    x = rng.standard_normal((4, 2, 3))
    params, out = make_params(x, weights)
    params.output_descriptor.data_desc = None
    params.output_descriptor.cell_state_desc = None
    bl.direct_apply_lstm_batch_training_caching(params)
    assert np.all(np.isnan(out["y_store"])) and np.all(np.isnan(out["c_n"]))
    _, h_n, _, _ = lstm_forward(x, weights)
    np.testing.assert_allclose(out["h_n"], h_n, rtol=1e-12)


def test_cache_regions_hold_what_the_reference_traced():
    params, out, cache, trace = run_case(T=4, B=3, L=2, bidirectional=True, activations=CUSTOM,
                                         lengths=[4, 2, 1], peephole="diagonal")
    views = {(r.name, r.layer): np.frombuffer(cache, np.float64, int(np.prod(r.shape)), r.offset).reshape(r.shape)
             for r in bl.training_cache_layout(params)}
    for layer in range(2):
        for d in range(2):
            tr = trace[layer, d]
            np.testing.assert_allclose(views["gates", layer][:, :, d].reshape(4, 3, 4, -1), tr["gates"], atol=1e-12)
            np.testing.assert_allclose(views["preact", layer][:, :, d].reshape(4, 3, 4, -1), tr["gates_pre"], atol=1e-12)
            np.testing.assert_allclose(views["cells", layer][:, :, d], tr["c"], atol=1e-12)
            np.testing.assert_allclose(views["output", layer][..., d * 3:(d + 1) * 3], tr["h"], atol=1e-12)


def test_single_call_is_deterministic():
    first = run_case(T=8, B=5, I=6, H=7, L=2, bidirectional=True, dtype=np.float32)[1]
    second = run_case(T=8, B=5, I=6, H=7, L=2, bidirectional=True, dtype=np.float32)[1]
    np.testing.assert_array_equal(first["y_store"], second["y_store"])


def test_more_than_256_layers():
    """The cache's region offsets of a deep stack (beyond the plan's on-stack table) go on
    the heap: 300 layers with a cache, against the reference."""
    run_case(T=2, B=1, I=2, H=2, L=300, states=False)
