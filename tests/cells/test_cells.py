"""Cells written as elementwise math (xrnn/cells/): the generic API, the peephole LSTM against
an independent implementation, derived backwards, the traced programs and their compiled
kernels, and the user-cell example of docs/cells.md run exactly as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import xrnn
from tests import peephole_reference
from tests.cell_cases import FAMILIES, NAMES, backward, forward, initialize, random_parameters, spec
from tests.contract_cells import Everything
from xrnn.cells import PeepholeLSTMCell

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cells.md"


# --- the generic API is the per-family API --------------------------------------------------


@pytest.mark.parametrize("cell", FAMILIES)
def test_generic_api_equals_the_cell_functions(cell, xp):
    """``xrnn.forward(name, ...)`` runs the same body as ``<family>_forward``: the same arrays,
    bit for bit, forward and backward, with lengths and reverse."""
    rng = np.random.default_rng(0)
    n_x, n_a, m, T = 3, 4, 3, 5
    host = random_parameters(cell, rng, n_x, n_a)
    p = xp.params(host)
    x = xp.asarray(rng.normal(size=(n_x, m, T)))
    state0 = tuple(xp.asarray(rng.normal(size=(n_a, m))) for _ in spec(cell).states)
    da = xp.asarray(rng.normal(size=(n_a, m, T)))
    kw = {"lengths": [5, 2, 4], "reverse": True}
    states, y, caches = forward(cell, x, state0, p, **kw)
    extra = {"c0": state0[1]} if len(state0) > 1 else {}
    out = xrnn.forward(cell, x, state0[0], p, **extra, **kw)
    assert len(out) == 2 + len(state0)
    got = (out[0], *out[2:-1])
    for a, b in zip(got, states, strict=True):
        np.testing.assert_array_equal(xp.to_numpy(a), xp.to_numpy(b))
    want = backward(cell, da, caches)
    grads = xrnn.backward(da, out[-1])
    assert set(grads) == set(want)
    for k in want:
        np.testing.assert_array_equal(xp.to_numpy(grads[k]), xp.to_numpy(want[k]), err_msg=k)


@pytest.mark.parametrize("cell", NAMES)
def test_generic_initialize_equals_the_cell_initializer(cell):
    got = xrnn.initialize(cell, 3, 4, 2, seed=7)
    want = initialize(cell, 3, 4, 2, seed=7)
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


def test_generic_api_errors():
    p = xrnn.initialize("gru", 3, 4)
    x, a0 = np.zeros((3, 2, 5)), np.zeros((4, 2))
    with pytest.raises(ValueError, match="cell must be one of"):
        xrnn.forward("no_such_cell", x, a0, p)
    with pytest.raises(TypeError, match="unexpected state c0"):
        xrnn.forward("gru", x, a0, p, c0=a0)
    a, y, caches = xrnn.forward("gru", x, a0, p)
    with pytest.raises(ValueError, match="pass cell="):
        xrnn.backward(a, ([caches[0][t] for t in range(5)], x))
    with pytest.raises(ValueError, match="not 'lstm'"):
        xrnn.backward(a, caches, cell="lstm")
    step = [caches[0][t] for t in range(5)]
    list_grads = xrnn.backward(a, (step, x), cell="gru")
    np.testing.assert_allclose(list_grads["dWr"], xrnn.backward(a, caches)["dWr"], rtol=1e-12)
    with pytest.raises(TypeError, match="needs c_prev"):
        xrnn.cell_forward("peephole_lstm", x[:, :, 0], a0, xrnn.initialize("peephole_lstm", 3, 4))


# --- the peephole LSTM --------------------------------------------------------------------


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("lengths", [None, [6, 2, 5, 1]], ids=["full", "mixed"])
def test_peephole_lstm_matches_autograd_through_its_math(lengths, reverse, xp):
    """Outputs, final states and every gradient (the peepholes included, dfinal given) against
    PyTorch autograd through the math written out (tests/peephole_reference.py), float64."""
    pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    n_x, n_a, m, T = 3, 4, 4, 6
    host = random_parameters("peephole_lstm", rng, n_x, n_a)
    x = rng.normal(size=(n_x, m, T))
    a0, c0 = rng.normal(size=(n_a, m)), rng.normal(size=(n_a, m))
    da = rng.normal(size=(n_a, m, T))
    dfinal = (rng.normal(size=(n_a, m)), rng.normal(size=(n_a, m)))
    ref = peephole_reference.run(
        host, x, a0, c0, da, lengths=lengths, reverse=reverse, dfinal=dfinal
    )
    kw = {"lengths": lengths, "reverse": reverse}
    a, y, c, caches = xrnn.forward(
        "peephole_lstm", xp.asarray(x), xp.asarray(a0), xp.params(host), c0=xp.asarray(c0), **kw
    )
    tol = {"rtol": 1e-10, "atol": 1e-12}
    np.testing.assert_allclose(xp.to_numpy(a), ref["a"], **tol)
    np.testing.assert_allclose(xp.to_numpy(c), ref["c"], **tol)
    for got, want in zip(caches[0].final_states(), ref["final"], strict=True):
        np.testing.assert_allclose(xp.to_numpy(got), want, **tol)
    grads = xrnn.backward(xp.asarray(da), caches, dfinal=tuple(xp.asarray(d) for d in dfinal))
    assert set(grads) == set(ref["grads"])
    for k, want in ref["grads"].items():
        np.testing.assert_allclose(xp.to_numpy(grads[k]), want, **tol, err_msg=k)


def test_peephole_lstm_with_zero_peepholes_is_the_lstm():
    """Initialised peepholes are zero: the cell is then the LSTM, outputs and weight
    gradients alike."""
    rng = np.random.default_rng(2)
    p = xrnn.initialize("peephole_lstm", 3, 4, seed=3)
    assert all(not p[k].any() for k in ("pf", "pi", "po"))
    lstm = {k: v for k, v in p.items() if k not in ("pf", "pi", "po")}
    x, a0 = rng.normal(size=(3, 2, 5)), rng.normal(size=(4, 2))
    a, _, c, caches = xrnn.forward("peephole_lstm", x, a0, p)
    b, _, d, lstm_caches = xrnn.lstm_forward(x, a0, lstm)
    np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(c, d, rtol=1e-13, atol=1e-15)
    g, h = xrnn.backward(np.ones_like(a), caches), xrnn.lstm_backward(np.ones_like(b), lstm_caches)
    for k in h:
        np.testing.assert_allclose(g[k], h[k], rtol=1e-12, atol=1e-14, err_msg=k)


# --- derived backwards ----------------------------------------------------------------------


class DerivedPeephole(PeepholeLSTMCell):
    """The peephole LSTM's forward alone: its backward derived (not registered)."""

    name = "peephole_lstm_derived"
    saves = ()
    backward = None


DERIVED = DerivedPeephole()


def test_a_cell_without_backward_keeps_its_pre_activations():
    assert DERIVED.derived and not spec("peephole_lstm").derived
    assert DERIVED.saves == ("z_Wf", "z_Wi", "z_Wo", "z_Wc")
    assert DERIVED.cache_size == 2 + 2 + 4 + 2


@pytest.mark.parametrize("kw", [{}, {"lengths": [5, 1, 3], "reverse": True}], ids=["full", "mixed"])
def test_the_derived_backward_equals_the_written_one(kw, xp):
    rng = np.random.default_rng(4)
    n_x, n_a, m, T = 3, 4, 3, 5
    host = random_parameters("peephole_lstm", rng, n_x, n_a)
    p = xp.params(host)
    x, a0 = xp.asarray(rng.normal(size=(n_x, m, T))), xp.asarray(rng.normal(size=(n_a, m)))
    c0 = xp.asarray(rng.normal(size=(n_a, m)))
    da = xp.asarray(rng.normal(size=(n_a, m, T)))
    results = []
    for cell in ("peephole_lstm", DERIVED):
        a, _, c, caches = xrnn.forward(cell, x, a0, p, c0=c0, **kw)
        results.append((a, c, xrnn.backward(da, caches)))
    (a1, c1, g1), (a2, c2, g2) = results
    np.testing.assert_allclose(xp.to_numpy(a2), xp.to_numpy(a1), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(xp.to_numpy(c2), xp.to_numpy(c1), rtol=1e-13, atol=1e-15)
    for k in g1:
        np.testing.assert_allclose(
            xp.to_numpy(g2[k]), xp.to_numpy(g1[k]), rtol=1e-10, atol=1e-12, err_msg=k
        )


def test_derive_covers_every_operation_of_the_namespace():
    """A cell using every function of ``m`` (a where, a maximum, an exp, ...) gets a derived
    backward that matches central finite differences of the forward."""
    cell = Everything()
    rng = np.random.default_rng(5)
    n_x, n_a, m, T = 2, 3, 2, 4
    p = {k: rng.normal(size=shape) for k, (shape, _) in cell.shapes(n_x, n_a).items()}
    x, a0 = rng.normal(size=(n_x, m, T)), rng.normal(size=(n_a, m))
    R = rng.normal(size=(n_a, m, T))
    a, _, caches = xrnn.forward(cell, x, a0, p)
    grads = xrnn.backward(R, caches)
    for key in ("Wa", "bb", "v"):
        for index in np.ndindex(p[key].shape):
            shifted = []
            for sign in (1, -1):
                q = {**p, key: p[key].copy()}
                q[key][index] += sign * 1e-6
                shifted.append(float((xrnn.forward(cell, x, a0, q)[0] * R).sum()))
            estimate = (shifted[0] - shifted[1]) / 2e-6
            np.testing.assert_allclose(grads["d" + key][index], estimate, rtol=1e-6, atol=1e-8)


def test_tracing_refuses_a_branch_on_a_value():
    class Branchy(xrnn.ElementwiseCell):
        name = "branchy"
        gates = (("W", "b"),)

        @staticmethod
        def forward(m, z, a_prev):
            return ((z if z > 0 else -z),), ()

    with pytest.raises(TypeError, match="m.where"):
        _ = Branchy().programs


def test_a_cell_that_saves_must_write_its_backward():
    with pytest.raises(TypeError, match="has no backward"):

        class Saves(xrnn.ElementwiseCell):
            name = "saves"
            gates = (("W", "b"),)
            saves = ("h",)

            @staticmethod
            def forward(m, z, a_prev):
                return (m.tanh(z),), (z,)


# --- compiled kernels --------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["peephole_lstm", DERIVED], ids=["written", "derived"])
def test_generated_float32_kernels_compute_in_float32(cell):
    """The generated step kernels keep float32 math in float32 (constants are float32
    globals): no widening, no double arithmetic in the LLVM IR."""
    pytest.importorskip("numba")
    from xrnn.backends.numpy import generated

    cell = spec(cell) if isinstance(cell, str) else cell
    import numba

    made = generated.compiled(cell, np.float32)
    # fresh uncached compilations: numba cannot show the IR of code loaded from its cache
    fresh = numba.njit(nogil=True, error_model="numpy")
    forward_step, backward_step = (fresh(k.py_func) for k in made[:2])
    n = len(cell.states)
    z = np.zeros((0, 3), np.float32)
    V = (z,) if cell.vectors else ()
    S = (z,) if cell.saved_blocks else ()
    forward_step(z, z, *V, *(z,) * n, *(z,) * n, *(() if made.saved_in_gx else S))
    backward_step(*(z,) * n, *S, *V, *(z,) * (2 * n), z, 0)
    arithmetic = re.compile(r"= (fadd|fsub|fmul|fdiv|frem|fneg|call)( \w+)* double\b")
    for kernel in (forward_step, backward_step):
        for ir in kernel.inspect_llvm().values():
            body = ir.split("define", 1)[1]
            assert "fpext" not in body and not arithmetic.search(body)
            assert "fmul float" in body


# --- the layers and the docs ------------------------------------------------------------------


def test_a_layer_of_any_cell_is_the_functional_call():
    rng = np.random.default_rng(6)
    layer = xrnn.RecurrentLayer(3, 4, cell="peephole_lstm", seed=1)
    assert "cell='peephole_lstm'" in repr(layer)
    x = rng.normal(size=(3, 2, 5))
    out, (a_n, c_n) = layer(x, lengths=[5, 3])
    a, _, c, caches = xrnn.forward(
        "peephole_lstm", x, np.zeros((4, 2)), layer.parameters[0][0], lengths=[5, 3]
    )
    np.testing.assert_allclose(out, a, rtol=1e-14)
    np.testing.assert_allclose(a_n[0], caches[0].final_states()[0], rtol=1e-14)
    grads = layer.backward(np.ones_like(out))
    np.testing.assert_allclose(
        grads["parameters"][0][0]["dpf"], xrnn.backward(np.ones_like(a), caches)["dpf"]
    )
    with pytest.raises(TypeError, match="needs cell="):
        xrnn.RecurrentLayer(3, 4)


@pytest.mark.skipif(not xrnn.backends.jit_enabled(), reason="the compiled kernels are off")
def test_generated_kernels_are_cached_on_disk(tmp_path):
    """A second process loads the generated kernels from the cache directory: the module
    written once, numba's compiled code beside it."""
    code = (
        "import numpy as np, xrnn\n"
        "p = xrnn.initialize('peephole_lstm', 3, 4, seed=0)\n"
        "a = xrnn.forward('peephole_lstm', np.ones((3, 2, 5)), np.zeros((4, 2)), p)[0]\n"
        "print(float(a.sum()))\n"
    )
    env = {**__import__("os").environ, "XRNN_KERNEL_CACHE": str(tmp_path)}
    runs = [
        subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        for _ in range(2)
    ]
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr
    assert runs[0].stdout == runs[1].stdout
    modules = sorted((tmp_path / "kernels").glob("xrnn_kernels_peephole_lstm_float64_*.py"))
    assert len(modules) == 1
    assert list((tmp_path / "kernels" / "__pycache__").glob("*.nbi"))


def test_the_docs_user_cell_runs_as_written(tmp_path):
    """docs/cells.md: the first block saved as my_cells.py, the second run as a script beside
    it, printing what the page says it prints."""
    text = DOCS.read_text("utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 2
    (tmp_path / "my_cells.py").write_text(blocks[0])
    (tmp_path / "use.py").write_text(blocks[1])
    done = subprocess.run(
        [sys.executable, "use.py"], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    printed = text.split("This prints\n\n```\n", 1)[1].split("```", 1)[0]
    assert done.stdout == printed
