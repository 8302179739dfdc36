"""Inputs a hostile but fair user passes (issue #23's reproductions): each one a clear error
naming what is wrong — quickly, before memory grows — never a hang, a deep traceback or a
silently wrong result. (Crafted checkpoints: tests/charlm/test_checkpoints.py.)"""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

import xrnn
from xrnn import charlm
from xrnn.charlm.corpus import MAX_NAME_CHARS, read_names
from xrnn.cli import main

NAMES = ["anna", "bob", "carla", "dora", "emma", "fabio", "gina", "hans", "ida", "jonas"]


def _lstm_call(**kw):
    rng = np.random.default_rng(0)
    p = xrnn.initialize_lstm(3, 4, seed=0)
    x, a0 = rng.normal(size=(3, 2, 5)), np.zeros((4, 2))
    return xrnn.lstm_forward(x, a0, p, **kw)


# --- arrays ------------------------------------------------------------------------------------


@pytest.mark.parametrize("lengths", [[2**70, 3], [3, -(2**70)], [0, 3], [3, 6]])
def test_every_lengths_problem_is_a_value_error(lengths):
    """Python ints beyond int64 included (they raised OverflowError), with or without the
    finiteness check."""
    for check in (True, False):
        with pytest.raises(ValueError, match=r"lengths must lie in \[1, 5\]"):
            _lstm_call(lengths=lengths, check_finite=check)


def test_the_other_byte_order_is_named_as_such():
    p = xrnn.initialize_lstm(3, 4, seed=0)
    x = np.zeros((3, 2, 5), dtype=">f8")
    with pytest.raises(TypeError, match="byte order") as exc:
        xrnn.lstm_forward(x, np.zeros((4, 2)), p)
    assert "newbyteorder" in str(exc.value)
    swapped = {**p, "Wf": p["Wf"].astype(">f8")}
    with pytest.raises(TypeError, match=r"parameters\['Wf'\].*byte order"):
        xrnn.lstm_forward(np.zeros((3, 2, 5)), np.zeros((4, 2)), swapped)


def test_masked_arrays_are_refused_everywhere():
    """A mask is never silently dropped: refused as x, as a state and as a parameter, with
    what to do instead."""
    p = xrnn.initialize_lstm(3, 4, seed=0)
    x, a0 = np.zeros((3, 2, 5)), np.zeros((4, 2))
    masked = np.ma.masked_array(x, mask=np.zeros_like(x, dtype=bool))
    for call in (
        lambda: xrnn.lstm_forward(masked, a0, p),
        lambda: xrnn.lstm_forward(x, np.ma.masked_array(a0), p),
        lambda: xrnn.lstm_forward(x, a0, {**p, "bf": np.ma.masked_array(p["bf"])}),
        lambda: xrnn.rnn_cell_forward(masked[:, :, 0], a0, xrnn.initialize_rnn(3, 4)),
    ):
        with pytest.raises(TypeError, match="masked array.*lengths="):
            call()


# --- corpus files ---------------------------------------------------------------------------


def test_a_fifo_is_refused_without_waiting(tmp_path):
    fifo = tmp_path / "names.fifo"
    os.mkfifo(fifo)
    done: list[BaseException] = []

    def read():
        try:
            read_names(fifo)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            done.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(5)
    assert not reader.is_alive(), "reading a FIFO blocked"
    assert isinstance(done[0], ValueError) and "not a regular file" in str(done[0])


def test_devices_and_directories_are_refused(tmp_path):
    with pytest.raises(ValueError, match="not a regular file"):
        read_names("/dev/zero")
    with pytest.raises(ValueError, match="is a directory"):
        read_names(tmp_path)


def test_a_huge_line_is_refused_before_any_work(tmp_path):
    data = tmp_path / "names.txt"
    data.write_text("anna\nbob\n" + "x" * (MAX_NAME_CHARS + 1) + "\ncarla\n")
    with pytest.raises(ValueError, match=f"line 3 is {MAX_NAME_CHARS + 1} characters long"):
        read_names(data)
    data.write_text("anna\nbob\n" + "x" * MAX_NAME_CHARS + "\ncarla\n")
    assert len(read_names(data)) == 4


@pytest.mark.parametrize("char", ["\x1b", "\x07", "\r", "\x85", "\ud800"])
def test_names_with_control_characters_are_refused(char):
    with pytest.raises(ValueError, match=f"U\\+{ord(char):04X}"):
        charlm.train(["anna", f"b{char}b", "carla"], hidden=4, steps=1)


# --- training and checkpoints ----------------------------------------------------------------


@pytest.mark.parametrize("lr", [1e30, 1e10])
def test_an_exploding_loss_is_divergence(lr):
    """A finite loss that explodes (it finished with rc 0 at 6.6e32) stops the run with the
    documented error, as a non-finite one does."""
    with pytest.raises(FloatingPointError, match="diverged"):
        charlm.train(NAMES, hidden=8, layers=1, dropout=0.0, steps=50, lr=lr, validation=0)


def test_an_unwritable_save_target_is_refused_before_training(tmp_path, capsys):
    target = "/proc/xrnn-model.npz"
    assert main(["train", "--steps", "1", "--samples", "0", "--save", target]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot create a file" in err[0] and target in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_a_batch_larger_than_the_data_is_refused_before_any_work(capsys):
    argv = ["train", "--batch-size", "100000000", "--steps", "1", "--samples", "0"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--batch-size 100000000 is larger than the" in err[0], err


def test_a_batch_of_many_epochs_costs_its_size():
    """The API still lets a batch repeat names (many epochs a batch); building it is linear
    in its size (it was quadratic: 10^8 never started)."""
    import time

    start = time.perf_counter()
    model, history = charlm.train(NAMES, hidden=2, layers=1, steps=1, batch_size=20_000,
                                  validation=0, dropout=0.0)  # fmt: skip
    assert history["steps"] == 1 and time.perf_counter() - start < 60


def test_cli_errors_are_bounded(tmp_path, capsys):
    data = tmp_path / "names.txt"
    data.write_text("x" * 5000 + "\n")  # one too-long name: the message must not quote it all
    assert main(["train", "--data", str(data) + "/" + "y" * 2000, "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and len(err[0]) <= 520, len(err[0])


# --- non-finite results from finite inputs -----------------------------------------------------


def _exploding_rnn(T: int = 2000):
    """A tanh RNN whose states stay at 0 (zero inputs and initial state, where tanh' = 1) and
    whose recurrence has spectral radius 3: the gradients grow as 3^T and overflow."""
    rng = np.random.default_rng(0)
    n_x, n_a, m = 3, 8, 2
    p = xrnn.initialize_rnn(n_x, n_a, n_x, seed=0)
    W = rng.normal(size=(n_a, n_a))
    p["Waa"] = W * (3 / max(abs(np.linalg.eigvals(W))))
    x, a0 = np.zeros((n_x, m, T)), np.zeros((n_a, m))
    return x, a0, p, rng.normal(size=(n_a, m, T))


def test_gradients_that_overflow_raise():
    x, a0, p, da = _exploding_rnn()
    _, _, caches = xrnn.rnn_forward(x, a0, p)
    with pytest.raises(FloatingPointError, match="the gradient d.* came out with NaN or inf"):
        xrnn.rnn_backward(da, caches)
    with np.errstate(all="ignore"):  # unchecked: NumPy's own warnings are the caller's
        g = xrnn.rnn_backward(da, caches, check_finite=False)
    assert not np.isfinite(g["dWaa"]).all()


def test_states_that_overflow_raise():
    x, a0, p, _ = _exploding_rnn()
    a0 = a0 + 1.0  # ReLU states grow as 3^t along the leading eigenvector from here
    with pytest.raises(FloatingPointError, match="the output a came out with NaN or inf"):
        xrnn.rnn_forward(x, a0, p, nonlinearity="relu")
    with np.errstate(all="ignore"):
        a, _, _ = xrnn.rnn_forward(x, a0, p, nonlinearity="relu", check_finite=False)
    assert not np.isfinite(a).all()
    with pytest.raises(FloatingPointError, match="the output a"):
        xrnn.rnn_forward(x, a0, p, nonlinearity="relu", return_caches=False)


def test_a_cell_step_that_overflows_raises():
    p = xrnn.initialize_rnn(3, 4, 3, seed=0)
    p["Waa"] = np.full((4, 4), 1e308)
    xt, a_prev = np.ones((3, 2)), np.ones((4, 2))
    with pytest.raises(FloatingPointError, match="the new state a"):
        xrnn.rnn_cell_forward(xt, a_prev, p, nonlinearity="relu")


def test_bad_inputs_are_named_before_what_they_poisoned():
    """Inputs and results are read together: a NaN input is still reported as the input."""
    x, a0, p, _ = _exploding_rnn(T=5)
    x[0, 0, 2] = np.nan
    with pytest.raises(ValueError, match="x contains NaN or infinity"):
        xrnn.rnn_forward(x, a0, p)
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 5\]"):
        xrnn.rnn_forward(np.ones((3, 2, 5)), a0, p, lengths=np.array([9, 2]), reverse=True)
