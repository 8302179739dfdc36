"""Bad input gets a clear error naming the argument — never a deep traceback or a wrong answer —
and nothing the user passed is mutated."""

import re
import warnings

import numpy as np
import pytest

import xrnn
from tests.cell_cases import NAMES, backward, cell_backward, cell_forward, forward, initialize, spec


def lstm_case(xp, rng, n_x=3, n_a=4, m=2, T=5, dtype="float64"):
    p = xrnn.initialize_lstm(n_x, n_a, 2, seed=1)
    return (
        xp.asarray(rng.normal(size=(n_x, m, T)), dtype),
        xp.asarray(rng.normal(size=(n_a, m)), dtype),
        xp.params(p, dtype),
    )


def rnn_case(xp, rng, n_x=3, n_a=4, m=2, T=5):
    p = xrnn.initialize_rnn(n_x, n_a, 2, seed=1)
    return (
        xp.asarray(rng.normal(size=(n_x, m, T))),
        xp.asarray(rng.normal(size=(n_a, m))),
        xp.params(p),
    )


def test_wrong_parameter_shape_names_key_and_both_shapes(xp, rng):
    x, a0, p = lstm_case(xp, rng)
    p["Wi"] = xp.asarray(np.zeros((4, 6)))
    with pytest.raises(
        ValueError, match=re.escape("parameters['Wi'] has shape (4, 6); expected (4, 7)")
    ):
        xrnn.lstm_forward(x, a0, p)
    x, a0, p = rnn_case(xp, rng)
    p["ba"] = xp.asarray(np.zeros((4,)))
    with pytest.raises(
        ValueError, match=re.escape("parameters['ba'] has shape (4,); expected (4, 1)")
    ):
        xrnn.rnn_forward(x, a0, p)


@pytest.mark.parametrize("key", ["Wf", "bc", "Wo"])
def test_missing_lstm_key(key, xp, rng):
    x, a0, p = lstm_case(xp, rng)
    del p[key]
    with pytest.raises(KeyError, match=f"missing '{key}'"):
        xrnn.lstm_forward(x, a0, p)


def test_half_an_output_layer(xp, rng):
    x, a0, p = rnn_case(xp, rng)
    del p["by"]
    with pytest.raises(KeyError, match="has 'Wya' but is missing 'by'"):
        xrnn.rnn_forward(x, a0, p)


def test_wrong_ndim_and_batch(xp, rng):
    x, a0, p = lstm_case(xp, rng)
    with pytest.raises(
        ValueError, match=re.escape("x must be 3-D with shape (n_x, m, T_x); got shape (3, 2)")
    ):
        xrnn.lstm_forward(x[:, :, 0], a0, p)
    with pytest.raises(ValueError, match=re.escape("a0 has shape (4, 1); expected (4, 2)")):
        xrnn.lstm_forward(x, a0[:, :1], p)
    with pytest.raises(ValueError, match=re.escape("c0 has shape (4, 1)")):
        xrnn.lstm_forward(x, a0, p, c0=a0[:, :1])
    with pytest.raises(ValueError, match="xt must be 2-D"):
        xrnn.rnn_cell_forward(x, a0, rnn_case(xp, rng)[2])


def test_integer_arrays_are_refused(xp, rng):
    x, a0, p = rnn_case(xp, rng)
    xi = xp.asarray(np.ones((3, 2, 5)), "int64")
    with pytest.raises(TypeError, match="x has dtype .*int64.*real floating"):
        xrnn.rnn_forward(xi, a0, p)


def test_not_an_array(xp, rng):
    x, a0, p = rnn_case(xp, rng)
    with pytest.raises(TypeError, match="a0 must be an array.*list"):
        xrnn.rnn_forward(x, [[0.0] * 2] * 4, p)
    with pytest.raises(TypeError, match="parameters must be a dict"):
        xrnn.rnn_forward(x, a0, [1, 2])


def test_erratum_3_mismatched_time_length(xp, rng):
    """The exercise's test passes da with 4 steps against a forward pass of 7."""
    x, a0, p = lstm_case(xp, rng, T=7)
    _, _, _, caches = xrnn.lstm_forward(x, a0, p)
    da = xp.asarray(rng.normal(size=(4, 2, 4)))
    with pytest.raises(ValueError, match="da has 4 time steps but the forward pass has 7"):
        xrnn.lstm_backward(da, caches)
    x, a0, p = rnn_case(xp, rng, T=7)
    with pytest.raises(ValueError, match="da has 4 time steps but the forward pass has 7"):
        xrnn.rnn_backward(da, xrnn.rnn_forward(x, a0, p)[2])


def test_bad_caches(xp, rng):
    x, a0, p = lstm_case(xp, rng)
    da = xp.asarray(rng.normal(size=(4, 2, 5)))
    with pytest.raises(ValueError, match=r"caches must be the \(step_caches, x\) pair"):
        xrnn.lstm_backward(da, "nope")
    with pytest.raises(ValueError, match="cache must be the 10-tuple"):
        xrnn.lstm_cell_backward(a0, a0, (1, 2, 3))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_are_refused(bad, xp, rng):
    x, a0, p = lstm_case(xp, rng)
    host = xp.to_numpy(x).copy()
    host[0, 0, 0] = bad
    with pytest.raises(ValueError, match="x contains NaN or infinity"):
        xrnn.lstm_forward(xp.asarray(host), a0, p)
    wf = xp.to_numpy(p["Wf"]).copy()
    wf[1, 1] = bad
    with pytest.raises(ValueError, match=r"parameters\['Wf'\] contains NaN or infinity"):
        xrnn.lstm_forward(x, a0, {**p, "Wf": xp.asarray(wf)})
    # documented escape hatch: the check is skipped and values propagate as IEEE arithmetic says
    # (NaN stays NaN; ±inf saturates the gates)
    a, _, _, _ = xrnn.lstm_forward(xp.asarray(host), a0, p, check_finite=False)
    assert np.isnan(xp.to_numpy(a)[:, 0, 0]).any() == bool(np.isnan(bad))


def test_mixed_float32_float64_is_refused(xp, rng):
    x, a0, p = lstm_case(xp, rng, dtype="float32")
    with pytest.raises(TypeError, match="a0 has dtype .*float64.* but x has dtype .*float32"):
        xrnn.lstm_forward(x, xp.asarray(xp.to_numpy(a0), "float64"), p)
    # the documented fix: cast the parameters to the input's dtype explicitly
    p64 = xp.params(xrnn.initialize_lstm(3, 4, 2, seed=1))
    p32 = xrnn.to_device(p64, x)
    a, y, c, _ = xrnn.lstm_forward(x, a0, p32)
    assert a.dtype == y.dtype == c.dtype == xp.dtype("float32")


def test_mixed_libraries_are_refused(xp, rng):
    if xp.name == "numpy":
        pytest.skip("needs a second library")
    x, a0, p = rnn_case(xp, rng)
    p_np = xrnn.initialize_rnn(3, 4, 2, seed=1)
    with pytest.raises(
        TypeError, match=r"parameters\['Wax'\] is a numpy array but x is a .* array"
    ):
        xrnn.rnn_forward(x, a0, p_np)
    with pytest.raises(TypeError, match="a0 is a numpy array"):
        xrnn.rnn_forward(x, np.zeros((4, 2)), p)


def test_mixed_devices_are_refused(xp, rng):
    if not xp.name.startswith("array_api_strict"):
        pytest.skip("array-api-strict's two devices are the CPU stand-in for CPU/GPU")
    import array_api_strict as xs

    x, a0, p = lstm_case(xp, rng)
    other = (
        xs.Device("device1") if xp.device == xs.Device("CPU_DEVICE") else xs.Device("CPU_DEVICE")
    )
    a0_other = xs.asarray(xp.to_numpy(a0), device=other)
    with pytest.raises(ValueError, match="a0 is on device .* but x is on device"):
        xrnn.lstm_forward(x, a0_other, p)
    moved = xrnn.to_device(p, other)
    with pytest.raises(ValueError, match=r"parameters\['Wf'\] is on device"):
        xrnn.lstm_forward(x, a0, moved)


def test_inputs_are_not_mutated(xp, rng):
    for T, m in [(5, 2), (1, 2), (5, 1)]:  # T=1 / m=1: reshapes may be views of the input
        x, a0, p = lstm_case(xp, rng, T=T, m=m)
        da = xp.asarray(rng.normal(size=(4, m, T)))
        before = {k: xp.to_numpy(v).copy() for k, v in {"x": x, "a0": a0, "da": da, **p}.items()}
        _, _, _, caches = xrnn.lstm_forward(x, a0, p, c0=a0)
        xrnn.lstm_backward(da, caches)
        _, _, caches = xrnn.rnn_forward(x, a0, xp.params(xrnn.initialize_rnn(3, 4, seed=2)))
        xrnn.rnn_backward(da, caches)
        after = {k: xp.to_numpy(v) for k, v in {"x": x, "a0": a0, "da": da, **p}.items()}
        for k in before:
            np.testing.assert_array_equal(before[k], after[k], err_msg=f"{k} was mutated")


def test_empty_axes(xp, rng):
    x, a0, p = rnn_case(xp, rng)
    with pytest.raises(ValueError, match="every axis needs at least one element"):
        xrnn.rnn_forward(xp.asarray(np.zeros((3, 2, 0))), a0, p)


def test_finite_check_has_no_false_alarm_on_overflowing_sums(xp, rng):
    """The finiteness check sums first; a sum that overflows on finite data is re-checked."""
    x, a0, p = lstm_case(xp, rng, dtype="float32")
    big = xp.asarray(np.full((3, 2, 5), 3e38), "float32")  # finite, but the sum overflows
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no overflow warning reaches the user
        a, _, _, _ = xrnn.lstm_forward(big, a0, p)
    assert np.isfinite(xp.to_numpy(a)).all()


@pytest.mark.parametrize(
    "lengths, error, message",
    [
        ([5, 0], ValueError, r"lengths must lie in \[1, 5\]"),
        ([6, 2], ValueError, r"lengths must lie in \[1, 5\]"),
        ([5, 2, 3], ValueError, r"lengths has shape \(3,\); expected \(2,\)"),
        ([5.0, 2.0], TypeError, "lengths must hold integers"),
        ("52", TypeError, "lengths must be an integer array"),
        (5, TypeError, "lengths must be an integer array"),
    ],
)
@pytest.mark.parametrize("cell", NAMES)
def test_bad_lengths_are_named(cell, lengths, error, message, xp, rng):
    x, a0, _ = lstm_case(xp, rng)
    p = xp.params(initialize(cell, 3, 4, seed=1))
    with pytest.raises(error, match=message):
        forward(cell, x, (a0,), p, lengths=lengths)


def test_lengths_of_the_wrong_dtype_library_or_device(xp, rng):
    x, a0, p = lstm_case(xp, rng)
    with pytest.raises(TypeError, match="lengths must have an integer dtype"):
        xrnn.lstm_forward(x, a0, p, lengths=xp.asarray(np.array([5.0, 2.0])))
    if xp.name != "numpy":
        with pytest.raises(TypeError, match="lengths must be an array of the inputs' library"):
            xrnn.lstm_forward(x, a0, p, lengths=np.array([5, 2]))


def test_caches_of_another_cell_are_refused(xp, rng):
    x, a0, p = lstm_case(xp, rng)
    _, _, _, caches = xrnn.lstm_forward(x, a0, p)
    da = xp.asarray(rng.normal(size=(4, 2, 5)))
    with pytest.raises(ValueError, match="caches come from lstm_forward, not gru_forward"):
        xrnn.gru_backward(da, caches)


@pytest.mark.parametrize("cell", NAMES)
def test_every_cell_names_missing_keys_and_bad_shapes(cell, xp, rng):
    x, a0, _ = lstm_case(xp, rng)
    host = initialize(cell, 3, 4, seed=1)
    key = spec(cell).keys[-1]
    with pytest.raises(KeyError, match=f"missing '{key}'"):
        forward(cell, x, (a0,), xp.params({k: v for k, v in host.items() if k != key}))
    bad = {**host, key: np.zeros((4, 9))}
    with pytest.raises(ValueError, match=re.escape(f"parameters['{key}'] has shape (4, 9)")):
        forward(cell, x, (a0,), xp.params(bad))


@pytest.mark.parametrize("cell", NAMES)
def test_none_for_a_required_array_is_named(cell, xp, rng):
    x, a0, _ = rnn_case(xp, rng)
    p = xp.params(initialize(cell, 3, 4, seed=1))
    state0 = tuple(a0 for _ in spec(cell).states)
    with pytest.raises(TypeError, match="x is required \\(an array\\), got None"):
        forward(cell, None, state0, p)
    with pytest.raises(TypeError, match="a0 is required"):
        forward(cell, x, (None, *state0[1:]), p)
    caches = forward(cell, x, state0, p)[2]
    with pytest.raises(TypeError, match="da is required"):
        backward(cell, None, caches)


@pytest.mark.backends("numpy", "torch", "jax", "cupy")  # array-api-strict has no float16
def test_half_precision_is_refused(xp, rng):
    x, a0, p = lstm_case(xp, rng)
    with pytest.raises(TypeError, match="x has dtype (torch\\.)?float16; xrnn computes in float"):
        xrnn.lstm_forward(xp.xp.astype(x, xp.xp.float16), a0, p)


@pytest.mark.parametrize(
    "dtype", ["float32", np.float32, np.dtype("float32"), "float64", float, np.float64]
)
def test_dtype_accepts_every_spelling(dtype):
    p = xrnn.initialize_lstm(3, 4, dtype=dtype)
    assert p["Wf"].dtype == np.dtype(np.dtype(dtype).name)


def test_bad_dtype_seed_and_sizes_are_named():
    with pytest.raises(TypeError, match="dtype must be float32 or float64, got 'float16'"):
        xrnn.initialize_lstm(3, 4, dtype="float16")
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        xrnn.initialize_gru(3, 4, dtype=np.int32)
    with pytest.raises(ValueError, match="seed must be a non-negative integer, got -1"):
        xrnn.initialize_rnn(3, 4, seed=-1)
    with pytest.raises(ValueError, match="seed must be a non-negative integer, got 1.5"):
        xrnn.initialize_rnn(3, 4, seed=1.5)
    with pytest.raises(ValueError, match="n_y must be a positive integer, got 0"):
        xrnn.initialize_rnn(3, 4, 0)
    p = xrnn.initialize_rnn(np.int64(3), np.int32(4), np.int64(2), seed=np.uint8(7))
    assert p["Wax"].shape == (4, 3) and p["Wya"].shape == (2, 4)
    np.testing.assert_array_equal(p["Wax"], xrnn.initialize_rnn(3, 4, 2, seed=7)["Wax"])


# --- returned arrays and caches (issue #12) ------------------------------------------------


@pytest.mark.backends("numpy", "array_api_strict", "torch", "cupy")  # JAX arrays are immutable
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("cell", NAMES)
def test_writing_into_returned_outputs_leaves_backward_unchanged(cell, reverse, xp, rng):
    x, a0, _ = rnn_case(xp, rng)
    p = xp.params(initialize(cell, 3, 4, 2, seed=1))
    state0 = tuple(a0 for _ in spec(cell).states)
    outputs, y, caches = forward(cell, x, state0, p, reverse=reverse)
    da = xp.asarray(rng.normal(size=(4, 2, 5)))
    before = {k: xp.to_numpy(v) for k, v in backward(cell, da, caches).items()}
    for out in (*outputs, y):
        out[...] = 5.0  # `a *= 0`, `c[...] = 5`: the caller's arrays are the caller's
    after = backward(cell, da, caches)
    for k, v in before.items():
        np.testing.assert_array_equal(xp.to_numpy(after[k]), v, err_msg=k)


@pytest.mark.backends("numpy", "array_api_strict", "torch", "cupy")
@pytest.mark.parametrize("cell", NAMES)
def test_writing_into_a_cell_forwards_new_state_leaves_its_backward_unchanged(cell, xp, rng):
    x, a0, _ = rnn_case(xp, rng)
    p = xp.params(initialize(cell, 3, 4, 2, seed=1))
    prev = tuple(a0 for _ in spec(cell).states)
    new, cache = cell_forward(cell, x[:, :, 0], prev, p)
    dnew = tuple(xp.asarray(rng.normal(size=(4, 2))) for _ in new)
    before = {k: xp.to_numpy(v) for k, v in cell_backward(cell, dnew, cache).items()}
    for s in new:
        s[...] = 5.0
    after = cell_backward(cell, dnew, cache)
    for k, v in before.items():
        np.testing.assert_array_equal(xp.to_numpy(after[k]), v, err_msg=k)


@pytest.mark.parametrize("cell", NAMES)
def test_caches_that_do_not_belong_together_are_named(cell, xp, rng):
    x, a0, _ = rnn_case(xp, rng)  # T = 5, m = 2
    p = xp.params(initialize(cell, 3, 4, seed=1))
    state0 = tuple(a0 for _ in spec(cell).states)
    steps, x_cached = forward(cell, x, state0, p)[2]
    da = xp.asarray(rng.normal(size=(4, 2, 5)))
    for other_x, why in [
        (x[:, :, :3], "caches\\[0\\] holds 5 step caches but caches\\[1\\] \\(x\\) has T_x=3"),
        (xp.asarray(rng.normal(size=(3, 2, 7))), "holds 5 step caches but .* has T_x=7"),
        (xp.asarray(rng.normal(size=(3, 3, 5))), "caches\\[0\\] states has shape"),
    ]:
        with pytest.raises(ValueError, match=why):
            backward(cell, da, (steps, other_x))
    # the exercise's own lists of step tuples: too short, or steps of another batch
    tuples = [steps[t] for t in range(5)]
    with pytest.raises(ValueError, match="caches\\[0\\] holds 3 step caches but .* T_x=5"):
        backward(cell, da, (tuples[:3], x_cached))
    x3 = xp.asarray(rng.normal(size=(3, 3, 5)))
    foreign = forward(cell, x3, tuple(xp.asarray(rng.normal(size=(4, 3))) for _ in state0), p)
    mixed = [*tuples[:4], foreign[2][0][4]]
    with pytest.raises(ValueError, match="caches\\[0\\]\\[4\\] has states of shape"):
        backward(cell, da, (mixed, x_cached))


@pytest.mark.backends("numpy")  # the buffers are planted through NumPy's in-place writes
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_check_finite_covers_the_caches_contents(cell, xp, rng):
    x, a0, _ = rnn_case(xp, rng)
    p = xp.params(initialize(cell, 3, 4, seed=1))
    state0 = tuple(a0 for _ in spec(cell).states)
    caches = forward(cell, x, state0, p)[2]
    da = xp.asarray(rng.normal(size=(4, 2, 5)))
    trace = caches[0].trace
    trace.saved[2, 0, 0] = np.nan  # a saved gate block (the LSTM's Γf, Γu, c̃, Γo; GRU's)
    with pytest.raises(ValueError, match="caches\\[0\\] \\(saved gates\\) contains NaN"):
        backward(cell, da, caches)
    trace.saved[2, 0, 0] = 0.5
    trace.states[-1][3, 1, 1] = np.inf  # a state (c for the LSTM)
    with pytest.raises(ValueError, match="caches\\[0\\] \\(\\w+ states\\) contains NaN"):
        backward(cell, da, caches)
    with np.errstate(all="ignore"):  # the documented escape hatch: IEEE arithmetic runs on
        backward(cell, da, caches, check_finite=False)
