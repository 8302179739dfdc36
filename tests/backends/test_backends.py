"""Backend kernels against the generic reference, activations, helpers and dispatch."""

import warnings

import numpy as np
import pytest

import xrnn
from tests.cell_cases import NAMES, backward, cell_forward, forward, random_parameters, spec
from xrnn.backends import get_ops, jit_enabled
from xrnn.core.ops import Ops


def _run_all(xp, cell, rng_seed, dtype="float64", **kw):
    """Forward outputs, final states and every gradient of one call, as NumPy arrays."""
    rng = np.random.default_rng(rng_seed)
    n_x, n_a, m, T = 3, 4, 3, 5
    p = xp.params(random_parameters(cell, rng, n_x, n_a), dtype)
    x = xp.asarray(rng.normal(size=(n_x, m, T)), dtype)
    state0 = tuple(xp.asarray(rng.normal(size=(n_a, m)), dtype) for _ in spec(cell).states)
    if "lengths" in kw:
        kw["lengths"] = xp.xp.asarray(kw["lengths"], device=xp.device)
    states, _, caches = forward(cell, x, state0, p, **kw)
    g = backward(cell, xp.asarray(rng.normal(size=(n_a, m, T)), dtype), caches)
    out = {f"out{i}": s for i, s in enumerate(states)}
    out.update({f"final{i}": s for i, s in enumerate(caches[0].final_states())})
    out.update(g)
    return {k: xp.to_numpy(v).copy() for k, v in out.items()}


@pytest.mark.parametrize(
    "kw", [{}, {"lengths": [5, 2, 4]}, {"reverse": True}, {"lengths": [1, 5, 3], "reverse": True}]
)
@pytest.mark.parametrize("cell", NAMES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_backend_kernels_match_the_generic_reference(dtype, cell, kw, xp, monkeypatch):
    """NumPy's in-place and CuPy's fused kernels, with their buffer storage, compute what the
    reference (:class:`xrnn.core.ops.Ops`: the cell's own pointwise math, list storage) computes,
    in float64 and in float32 (where every result must stay float32)."""
    _check_against_the_reference(xp, cell, dtype, kw, monkeypatch)


@pytest.mark.backends("torch")
@pytest.mark.parametrize("kw", [{}, {"lengths": [5, 2, 4], "reverse": True}])
@pytest.mark.parametrize("cell", NAMES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_torch_kernels_of_their_own_match_the_generic_reference(dtype, cell, kw, xp, monkeypatch):
    """torch's own in-place kernels (CUDA tensors' path) on CPU tensors too, where those
    otherwise run whole on NumPy views of the tensors (xrnn.torch.host)."""
    import xrnn.torch

    monkeypatch.setattr(xrnn.torch, "hosted", lambda x: False)
    _check_against_the_reference(xp, cell, dtype, kw, monkeypatch)


def _check_against_the_reference(xp, cell, dtype, kw, monkeypatch):
    import xrnn.core.engine
    import xrnn.torch

    got = _run_all(xp, cell, 7, dtype, **kw)
    monkeypatch.setattr(xrnn.core.engine, "get_ops", lambda _: Ops(xp.xp))
    # the reference on the inputs' own library: not a forward on NumPy views of CPU tensors
    monkeypatch.setattr(xrnn.torch, "hosted", lambda x: False)
    want = _run_all(xp, cell, 7, dtype, **kw)
    assert set(got) == set(want)
    tol = {"float64": (1e-12, 1e-14), "float32": (2e-5, 1e-6)}[dtype]
    for k in want:
        assert got[k].dtype == np.dtype(dtype), k
        np.testing.assert_allclose(got[k], want[k], rtol=tol[0], atol=tol[1], err_msg=k)


def test_every_cell_has_compiled_and_cuda_kernels():
    """Every registered cell is written as elementwise math, and kernels are generated from it
    for the compiled backends (NumPy's compiled path, CUDA); the pure-NumPy backend runs its
    math on whole arrays."""
    from xrnn.backends.cupy import all_sources

    for cell in NAMES:
        assert hasattr(type(spec(cell)), "programs"), cell
        assert {f"{cell}_fwd", f"{cell}_bwd"} <= set(all_sources())
        if jit_enabled():
            from xrnn.backends.numpy.jit import JitOps

            assert JitOps(None).kernel(spec(cell), "forward") is not None


def test_each_library_gets_its_own_ops(xp):
    name = type(get_ops(xp.xp)).__name__
    numpy_ops = "JitOps" if jit_enabled() else "NumpyOps"
    own = {"numpy": numpy_ops, "cupy": "CupyOps", "torch": "TorchOps", "jax": "JaxOps"}
    assert name == own.get(xp.name.split("-")[0], "Ops")  # array-api-strict: the reference


def test_equal_lengths_give_the_unmasked_result(xp, rng):
    """lengths all equal to T_x: exactly the result without lengths, on every backend — to
    rounding on JAX, where XLA compiles the masked loop as another program and may contract
    other multiply-adds into FMAs."""
    for cell in NAMES:
        plain = _run_all(xp, cell, 3)
        full = _run_all(xp, cell, 3, lengths=[5, 5, 5])
        for k in plain:
            if xp.name == "jax":
                np.testing.assert_allclose(full[k], plain[k], rtol=1e-13, atol=1e-15)
            else:
                np.testing.assert_array_equal(full[k], plain[k], err_msg=f"{cell} {k}")


def test_available_backends_lists_numpy_first():
    found = xrnn.available_backends()
    assert found[0] == "numpy"
    assert len(set(found)) == len(found)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_activations_are_stable_at_extremes(xp, dtype):
    z = xp.asarray(np.array([[-1000.0, 0.0, 1000.0], [1000.0, 0.0, -1000.0]]), dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = xp.to_numpy(xrnn.sigmoid(z))
        p = xp.to_numpy(xrnn.softmax(z))
    np.testing.assert_allclose(s, [[0, 0.5, 1], [1, 0.5, 0]], atol=1e-7)
    np.testing.assert_allclose(p, [[0, 0.5, 1], [1, 0.5, 0]], atol=1e-7)
    assert xrnn.sigmoid(z).dtype == xp.dtype(dtype)


def test_initialize_is_seeded_and_follows_like(xp):
    host = xrnn.initialize_lstm(3, 4, 2, seed=7)
    assert host["Wf"].shape == (4, 7) and host["by"].shape == (2, 1)
    assert host["Wf"].dtype == np.float64
    np.testing.assert_array_equal(host["bf"], np.ones((4, 1)))
    like = xp.asarray(np.zeros((1, 1)), "float32")
    p = xrnn.initialize_lstm(3, 4, 2, seed=7, like=like)
    for k, v in p.items():
        assert v.dtype == xp.dtype("float32")
        np.testing.assert_allclose(xp.to_numpy(v), host[k], rtol=1e-6, err_msg=k)
    r = xrnn.initialize_rnn(3, 4, seed=7, like=like)
    assert set(r) == {"Wax", "Waa", "ba"}
    with pytest.raises(ValueError, match="n_a must be a positive integer, got 0"):
        xrnn.initialize_rnn(3, 0)


def test_to_device_moves_every_array(xp):
    host = xrnn.initialize_rnn(3, 4, 2, seed=1)
    like = xp.asarray(np.zeros((1, 1)), "float32")
    moved = xrnn.to_device(host, like)
    assert set(moved) == set(host)
    for k, v in moved.items():
        assert v.dtype == xp.dtype("float32")
        np.testing.assert_allclose(xp.to_numpy(v), host[k], rtol=1e-6)
    back = xrnn.to_device(moved, np.zeros(1))
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float64 for v in back.values())


@pytest.mark.parametrize("cell", NAMES)
def test_exercise_style_list_caches_are_accepted(cell, xp, rng):
    """Backward accepts per-step tuples built by the exercise's own loop (cell by cell)."""
    n_x, n_a, m, T = 2, 3, 2, 4
    p = xp.params(random_parameters(cell, rng, n_x, n_a))
    x = xp.asarray(rng.normal(size=(n_x, m, T)))
    state0 = tuple(xp.asarray(rng.normal(size=(n_a, m))) for _ in spec(cell).states)
    da = xp.asarray(rng.normal(size=(n_a, m, T)))
    state, steps = state0, []
    for t in range(T):
        state, cache = cell_forward(cell, x[:, :, t], state, p)
        steps.append(cache)
    g_list = backward(cell, da, (steps, x))
    g = backward(cell, da, forward(cell, x, state0, p)[2])
    assert set(g_list) == set(g)
    for k in g:
        np.testing.assert_allclose(xp.to_numpy(g_list[k]), xp.to_numpy(g[k]), rtol=1e-12, err_msg=k)


@pytest.mark.parametrize("chunk", [1, 3, 5])
@pytest.mark.parametrize("cell", NAMES)
def test_chunked_backward_equals_one_chunk(cell, chunk, xp, monkeypatch):
    """Chunks of 1 step, of 3 steps with a partial last chunk, or one step short of T: the
    same gradients as one chunk holding every step (with mixed lengths, reversed)."""
    import xrnn.core.engine

    kw = {"lengths": [5, 2, 4], "reverse": True}
    whole = _run_all(xp, cell, 4, **kw)
    monkeypatch.setattr(xrnn.core.tuning, "CHUNK_COLUMNS", chunk * 3)
    parts = _run_all(xp, cell, 4, **kw)
    for k in whole:
        np.testing.assert_allclose(parts[k], whole[k], rtol=1e-12, atol=1e-14, err_msg=k)
