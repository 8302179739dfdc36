"""The exercise's second part ("Dinosaur Island") as a drop-in, on xrnn's own kernels.

The notebook's graded functions — :func:`clip`, :func:`sample`, :func:`optimize`,
:func:`model` — and its helpers (:func:`initialize_parameters`, :func:`rnn_step_forward`,
:func:`rnn_step_backward`, :func:`rnn_forward`, :func:`rnn_backward`,
:func:`update_parameters`, :func:`get_initial_loss`, :func:`smooth`, :func:`get_sample`,
:func:`print_sample`, :func:`softmax`) with the notebook's names, argument order, keyword names
and return values, and its protocols exactly: the reseeding of NumPy's global generator in
:func:`sample`, the in-place update of the caller's parameters in :func:`optimize`, the shuffle
and printout of :func:`model`. The recurrent cell is :func:`xrnn.rnn_cell_forward` /
:func:`xrnn.rnn_forward` / :func:`xrnn.rnn_backward`; nothing here re-implements it.

This module is NumPy-only, like the notebook: its protocols draw from ``np.random``. The
parameter bias may be spelled ``b`` (the oldest revision) or ``ba`` (later ones), its gradient
``db`` or ``dba``; every function answers in the spelling it was given. For a batched, masked,
Adam-trained model on any backend use :mod:`xrnn.charlm`.

>>> import numpy as np
>>> from xrnn import exercise
>>> chars = ["\\n", *"abcdefghijklmnopqrstuvwxyz"]
>>> char_to_ix = {c: i for i, c in enumerate(chars)}
>>> parameters = exercise.initialize_parameters(50, 27, 27)
>>> X = [None] + [char_to_ix[c] for c in "trex"]
>>> Y = X[1:] + [char_to_ix["\\n"]]
>>> loss, gradients, a_last = exercise.optimize(X, Y, np.zeros((50, 1)), parameters)
>>> round(float(loss), 2)       # five characters, untrained: about 5 · log 27
16.48
>>> exercise.sample(parameters, char_to_ix, 0)[-1] == char_to_ix["\\n"]
True
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from xrnn.core.activations import softmax
from xrnn.core.layout import output_layer_backward
from xrnn.core.params import positive_int
from xrnn.rnn import rnn_backward as _bptt
from xrnn.rnn import rnn_cell_backward, rnn_cell_forward
from xrnn.rnn import rnn_forward as _rnn

__all__ = [
    "clip",
    "get_initial_loss",
    "get_sample",
    "initialize_parameters",
    "model",
    "optimize",
    "print_sample",
    "rnn_backward",
    "rnn_forward",
    "rnn_step_backward",
    "rnn_step_forward",
    "sample",
    "smooth",
    "softmax",
    "update_parameters",
]

# The notebook's parameter names; the bias is "b" or "ba" (BIAS_SPELLINGS), its gradient "d" + it.
WEIGHTS = ("Wax", "Waa", "Wya", "by")
BIAS_SPELLINGS = ("b", "ba")
# The notebook's sample() stops after this many characters and then appends the newline.
MAX_SAMPLE_LENGTH = 50
NEWLINE = "\n"


# --- argument checks -------------------------------------------------------------------------


def _bias_key(d: Mapping[str, Any], name: str, prefix: str = "") -> str:
    """Which spelling of the bias ``d`` uses (``b``/``ba``, or ``db``/``dba`` with prefix)."""
    have = [prefix + b for b in BIAS_SPELLINGS if prefix + b in d]
    if len(have) != 1:
        spellings = " or ".join(repr(prefix + b) for b in BIAS_SPELLINGS)
        problem = "has both" if have else "is missing the bias"
        raise ValueError(f"{name} {problem} {spellings}; give exactly one of them")
    return have[0]


def _arrays(d: Any, name: str, keys: Sequence[str]) -> None:
    if not isinstance(d, Mapping):
        raise TypeError(f"{name} must be a dict of NumPy arrays, got {type(d).__name__}")
    for k in keys:
        if k not in d:
            raise ValueError(f"{name} is missing {k!r} (it needs {', '.join(map(repr, keys))})")
        if not isinstance(d[k], np.ndarray):
            raise TypeError(
                f"{name}[{k!r}] must be a NumPy array (xrnn.exercise follows the notebook, which "
                f"draws with np.random), got {type(d[k]).__name__}"
            )


def _kernel_parameters(parameters: Any) -> tuple[dict[str, Any], str]:
    """The caller's parameters under xrnn's key names (same arrays, no copies), and the
    caller's bias spelling."""
    if not isinstance(parameters, Mapping):
        kind = type(parameters).__name__
        raise TypeError(f"parameters must be a dict of NumPy arrays, got {kind}")
    bias = _bias_key(parameters, "parameters")
    _arrays(parameters, "parameters", (*WEIGHTS, bias))
    kernel = {k: parameters[k] for k in WEIGHTS}
    kernel["ba"] = parameters[bias]
    return kernel, bias


def _gradient_keys(gradients: Any) -> tuple[str, ...]:
    """The five gradient names the notebook's clip/update read, in the caller's spelling."""
    if not isinstance(gradients, Mapping):
        raise TypeError(f"gradients must be a dict of NumPy arrays, got {type(gradients).__name__}")
    keys = ("dWaa", "dWax", "dWya", _bias_key(gradients, "gradients", "d"), "dby")
    _arrays(gradients, "gradients", keys)
    return keys


def _real(name: str, value: Any, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or (positive and not v > 0):
        kind = "a positive finite number" if positive else "finite"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return v


def _index(name: str, value: Any, size: int) -> int:
    if type(value) is int and 0 <= value < size:  # the common case, cheaply (once per step)
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer index, got {value!r}")
    if not 0 <= int(value) < size:
        raise ValueError(f"{name} = {int(value)} is outside the vocabulary (0 ≤ index < {size})")
    return int(value)


def _newline_index(char_to_ix: Any, vocab_size: int) -> int:
    if not isinstance(char_to_ix, Mapping):
        kind = type(char_to_ix).__name__
        raise TypeError(f"char_to_ix must be a dict of character → index, got {kind}")
    if NEWLINE not in char_to_ix:
        raise ValueError(
            "char_to_ix has no newline '\\n': the model ends every name with it, so the "
            "vocabulary must contain it"
        )
    return _index("char_to_ix['\\n']", char_to_ix[NEWLINE], vocab_size)


def _sequence_pair(X: Any, Y: Any, vocab_size: int) -> tuple[list[int | None], list[int]]:
    for name, s in (("X", X), ("Y", Y)):
        if isinstance(s, (str, bytes)) or not isinstance(s, Sequence):
            raise TypeError(f"{name} must be a list of character indices, got {type(s).__name__}")
    if len(X) == 0 or len(X) != len(Y):
        raise ValueError(
            f"X and Y must be non-empty lists of the same length, got {len(X)} and {len(Y)}"
        )
    xs = [None if v is None else _index(f"X[{t}]", v, vocab_size) for t, v in enumerate(X)]
    ys = [_index(f"Y[{t}]", v, vocab_size) for t, v in enumerate(Y)]
    return xs, ys


# --- the notebook's helpers (its utils.py) ---------------------------------------------------


def initialize_parameters(n_a: int, n_x: int, n_y: int, *, bias: str = "b") -> dict[str, Any]:
    """The notebook's initialisation: ``np.random.seed(1)``, then ``Wax (n_a, n_x)``,
    ``Waa (n_a, n_a)``, ``Wya (n_y, n_a)`` drawn in that order from ``randn · 0.01``; the bias
    ``b (n_a, 1)`` and ``by (n_y, 1)`` zero. ``bias="ba"`` names the bias as later revisions do.
    """
    if bias not in BIAS_SPELLINGS:
        raise ValueError(f"bias must be one of {BIAS_SPELLINGS}, got {bias!r}")
    for name, v in (("n_a", n_a), ("n_x", n_x), ("n_y", n_y)):
        positive_int(name, v)
    np.random.seed(1)
    Wax = np.random.randn(n_a, n_x) * 0.01
    Waa = np.random.randn(n_a, n_a) * 0.01
    Wya = np.random.randn(n_y, n_a) * 0.01
    return {"Wax": Wax, "Waa": Waa, "Wya": Wya, bias: np.zeros((n_a, 1)), "by": np.zeros((n_y, 1))}


def get_initial_loss(vocab_size: int, seq_length: int) -> float:
    """The loss of a uniform guess: ``seq_length · log(vocab_size)``."""
    return -np.log(1.0 / vocab_size) * seq_length


def smooth(loss: float, cur_loss: float) -> float:
    """The notebook's exponential moving average of the loss (weight 0.999 on the past)."""
    return loss * 0.999 + cur_loss * 0.001


def get_sample(sample_ix: Sequence[int], ix_to_char: Mapping[int, str]) -> str:
    """The sampled characters as a string, first letter capitalised (the newline kept)."""
    txt = "".join(ix_to_char[ix] for ix in sample_ix)
    return txt[:1].upper() + txt[1:]


def print_sample(sample_ix: Sequence[int], ix_to_char: Mapping[int, str]) -> None:
    """Print :func:`get_sample`'s string without a line end of its own (the oldest revision)."""
    print(get_sample(sample_ix, ix_to_char), end="")


def rnn_step_forward(parameters: dict[str, Any], a_prev: Any, x: Any) -> tuple[Any, Any]:
    """One step: ``a_next (n_a, m)`` and the softmax probabilities ``p_t (n_y, m)``.

    :func:`xrnn.rnn_cell_forward` with the notebook's argument order.
    """
    kernel, _ = _kernel_parameters(parameters)
    a_next, p_t, _ = rnn_cell_forward(x, a_prev, kernel)
    return a_next, p_t


def rnn_step_backward(
    dy: Any, gradients: dict[str, Any], parameters: dict[str, Any], x: Any, a: Any, a_prev: Any
) -> dict[str, Any]:
    """One step of the notebook's BPTT: adds this step's gradients to ``gradients`` (which
    holds the running sums and ``da_next``) and returns the sums as a new dict.

    ``dy (n_y, 1)`` is ``ŷ⟨t⟩ − y⟨t⟩``; the cell's part is :func:`xrnn.rnn_cell_backward`.
    Unlike the notebook, the caller's arrays are not modified.
    """
    kernel, bias = _kernel_parameters(parameters)
    keys = _gradient_keys(gradients)
    _arrays(gradients, "gradients", ("da_next",))
    da = np.dot(kernel["Wya"].T, dy) + gradients["da_next"]
    cell = rnn_cell_backward(da, (a, a_prev, x, kernel))
    dWaa, dWax, dWya, db, dby = (gradients[k] for k in keys)
    return {
        "dWaa": dWaa + cell["dWaa"],
        "dWax": dWax + cell["dWax"],
        "dWya": dWya + np.dot(dy, a.T),
        keys[3]: db + cell["dba"],
        "dby": dby + dy,
        "da_next": cell["da_prev"],
    }


def rnn_forward(
    X: Sequence[int | None],
    Y: Sequence[int],
    a0: Any,
    parameters: dict[str, Any],
    vocab_size: int | None = None,
) -> tuple[Any, tuple[dict, dict, dict]]:
    """The RNN over one name, with its loss.

    Parameters
    ----------
    X : list of int or None, length T
        Input character indices; ``None`` is the all-zero input (the notebook's first step).
    Y : list of int, length T
        Target indices.
    a0 : array of shape (n_a, 1)
    parameters : dict
        ``Wax (n_a, n_x)``, ``Waa (n_a, n_a)``, ``Wya (n_y, n_a)``, ``b`` or ``ba (n_a, 1)``,
        ``by (n_y, 1)``.
    vocab_size : int, optional
        The one-hot width; default ``Wax``'s column count (the notebook's default is 27, the
        dinosaur vocabulary). A value that disagrees with ``Wax`` is an error.

    Returns
    -------
    loss : float
        ``−Σ_t log ŷ⟨t⟩[Y[t]]``, summed in step order as the notebook does.
    cache : tuple ``(y_hat, a, x)``
        The notebook's dicts keyed by step: ``y_hat[t] (n_y, 1)``, ``a[t] (n_a, 1)`` with
        ``a[-1] = a0``, ``x[t] (n_x, 1)`` one-hot.

    Notes
    -----
    One :func:`xrnn.rnn_forward` call over the whole name: ``a⟨t⟩ = tanh(Waa a⟨t-1⟩ + Wax x⟨t⟩
    + b)``, ``ŷ⟨t⟩ = softmax(Wya a⟨t⟩ + by)``.
    """
    kernel, _ = _kernel_parameters(parameters)
    n_x = int(kernel["Wax"].shape[1])
    if vocab_size is not None and vocab_size != n_x:
        raise ValueError(
            f"vocab_size={vocab_size!r} disagrees with parameters['Wax'], which has {n_x} "
            f"columns (one per character)"
        )
    xs, ys = _sequence_pair(X, Y, n_x)
    T = len(xs)
    x = np.zeros((n_x, 1, T), dtype=kernel["Wax"].dtype)
    for t, ix in enumerate(xs):
        if ix is not None:
            x[ix, 0, t] = 1
    if int(kernel["Wya"].shape[0]) != n_x:
        raise ValueError(
            f"parameters['Wya'] has {kernel['Wya'].shape[0]} rows; a character model predicts "
            f"the next character, so it needs n_y = n_x = {n_x}"
        )
    a, y_hat, _ = _rnn(x, a0, kernel)
    log_p = np.log(y_hat[ys, 0, range(T)])
    loss = 0
    for t in range(T):  # the notebook's running sum, in its order
        loss -= log_p[t]
    a_steps = {-1: np.copy(a0)}
    a_steps.update({t: a[:, :, t] for t in range(T)})
    return loss, ({t: y_hat[:, :, t] for t in range(T)}, a_steps, {t: x[:, :, t] for t in range(T)})


def rnn_backward(
    X: Sequence[int | None], Y: Sequence[int], parameters: dict[str, Any], cache: tuple
) -> tuple[dict[str, Any], dict]:
    """Backpropagation through time for :func:`rnn_forward`'s loss.

    Returns ``(gradients, a)``: ``dWax``, ``dWaa``, ``dWya``, ``db`` or ``dba`` (as the
    parameters spell the bias), ``dby`` and ``da_next`` (the gradient of ``a0``); ``a`` is the
    cache's dict of hidden states.

    Notes
    -----
    ``dy⟨t⟩ = ŷ⟨t⟩ − y⟨t⟩``; the output layer's gradients are one GEMM over all steps and
    ``da⟨t⟩ = Wyaᵀ dy⟨t⟩`` goes to :func:`xrnn.rnn_backward`.
    """
    kernel, bias = _kernel_parameters(parameters)
    if not isinstance(cache, tuple) or len(cache) != 3:
        raise ValueError("cache must be the (y_hat, a, x) tuple returned by rnn_forward")
    y_hat, a, x = cache
    n_x = int(kernel["Wax"].shape[1])
    _, ys = _sequence_pair(X, Y, n_x)
    T = len(ys)
    try:
        y_seq = np.stack([y_hat[t] for t in range(T)], axis=2)
        a_seq = np.stack([a[t] for t in range(-1, T)], axis=2)
        x_seq = np.stack([x[t] for t in range(T)], axis=2)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ValueError(
            f"cache does not hold the {T} steps of X: pass the cache rnn_forward returned for "
            f"this X ({exc})"
        ) from None
    dy = np.copy(y_seq)
    dy[ys, 0, range(T)] -= 1
    dWya, dby, da = output_layer_backward(np, kernel["Wya"], a_seq[:, :, 1:], dy)
    steps = [(a_seq[:, :, t + 1], a_seq[:, :, t], x_seq[:, :, t], kernel) for t in range(T)]
    # rnn_forward checked the parameters and inputs for NaN/inf; the rest derives from them
    cell = _bptt(da, (steps, x_seq), check_finite=False)
    gradients = {
        "dWax": cell["dWax"],
        "dWaa": cell["dWaa"],
        "dWya": dWya,
        "d" + bias: cell["dba"],
        "dby": dby,
        "da_next": cell["da0"],
    }
    return gradients, a


def update_parameters(
    parameters: dict[str, Any], gradients: dict[str, Any], lr: float
) -> dict[str, Any]:
    """The notebook's SGD step ``θ ← θ − lr · dθ``, **in place** on the caller's arrays (as the
    notebook's ``parameters['Wax'] += -lr * gradients['dWax']``); returns ``parameters``."""
    _, bias = _kernel_parameters(parameters)
    keys = _gradient_keys(gradients)
    lr = _real("lr", lr)
    for p, g in zip(("Waa", "Wax", "Wya", bias, "by"), keys, strict=True):
        if gradients[g].shape != parameters[p].shape:
            raise ValueError(
                f"gradients[{g!r}] has shape {gradients[g].shape}; parameters[{p!r}] has "
                f"{parameters[p].shape}"
            )
        parameters[p] += -lr * gradients[g]
    return parameters


# --- the graded functions --------------------------------------------------------------------


def clip(gradients: dict[str, Any], maxValue: float) -> dict[str, Any]:  # noqa: N803 (notebook)
    """Clip ``dWaa``, ``dWax``, ``dWya``, ``db``/``dba`` and ``dby`` elementwise to
    ``[-maxValue, maxValue]``.

    Returns a new dict with those five keys (as the notebook's, ``da_next`` is not carried
    over); the caller's arrays are not modified (the latest revision's ``deepcopy``).
    """
    keys = _gradient_keys(gradients)
    limit = _real("maxValue", maxValue, positive=True)
    return {k: np.clip(gradients[k], -limit, limit) for k in keys}


def sample(parameters: dict[str, Any], char_to_ix: Mapping[str, int], seed: int) -> list[int]:
    """Sample a name, one character at a time, under the notebook's protocol.

    Starting from a zero input and a zero state, each step runs :func:`xrnn.rnn_cell_forward`,
    reseeds NumPy's global generator with ``np.random.seed(counter + seed)`` and draws the next
    index with ``np.random.choice`` over the vocabulary with the softmax probabilities; it feeds
    that character back in, and both ``seed`` and ``counter`` go up by one. Sampling stops at
    the newline or after 50 characters, when the newline is appended.

    Returns
    -------
    list of int
        The sampled indices, ending with ``char_to_ix['\\n']``.
    """
    kernel, _ = _kernel_parameters(parameters)
    vocab_size = int(kernel["by"].shape[0])
    n_a = int(kernel["Waa"].shape[1])
    newline = _newline_index(char_to_ix, vocab_size)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    highest = 2**32 - 1 - 2 * MAX_SAMPLE_LENGTH  # np.random.seed's range, after the increments
    if not 0 <= seed <= highest:
        raise ValueError(f"seed must be between 0 and {highest}, got {seed!r}")
    seed = int(seed)
    dtype = kernel["Wax"].dtype
    x = np.zeros((vocab_size, 1), dtype=dtype)
    a_prev = np.zeros((n_a, 1), dtype=dtype)
    indices: list[int] = []
    idx = -1
    counter = 0
    while idx != newline and counter != MAX_SAMPLE_LENGTH:
        a, y, _ = rnn_cell_forward(x, a_prev, kernel)
        np.random.seed(counter + seed)
        idx = int(np.random.choice(list(range(vocab_size)), p=np.ravel(y)))
        indices.append(idx)
        x = np.zeros((vocab_size, 1), dtype=dtype)
        x[idx] = 1
        a_prev = a
        seed += 1
        counter += 1
    if counter == MAX_SAMPLE_LENGTH:
        indices.append(newline)
    return indices


def optimize(
    X: Sequence[int | None],
    Y: Sequence[int],
    a_prev: Any,
    parameters: dict[str, Any],
    learning_rate: float = 0.01,
) -> tuple[float, dict[str, Any], Any]:
    """One training step on one name: forward, loss, BPTT, ``clip(gradients, 5)``, SGD.

    Updates the caller's ``parameters`` arrays in place, as the notebook does.

    Returns
    -------
    loss : float
    gradients : dict
        The clipped gradients (five keys, the bias in the parameters' spelling).
    a_last : array of shape (n_a, 1)
        The last hidden state, ``a[len(X) - 1]``, to start the next name from.
    """
    learning_rate = _real("learning_rate", learning_rate)
    loss, cache = rnn_forward(X, Y, a_prev, parameters)
    gradients, a = rnn_backward(X, Y, parameters, cache)
    gradients = clip(gradients, 5)
    update_parameters(parameters, gradients, learning_rate)
    return loss, gradients, a[len(X) - 1]


def _examples(data_x: Any, char_to_ix: Mapping[str, int]) -> list[str]:
    if isinstance(data_x, str):  # the oldest revision passes the whole text
        data_x = data_x.split(NEWLINE)
    if not isinstance(data_x, Sequence) or not all(isinstance(s, str) for s in data_x):
        raise TypeError("data_x must be a list of names (strings), one per training example")
    examples = [s.strip() for s in data_x]
    if not examples:
        raise ValueError("data_x holds no names")
    for line, name in enumerate(examples):
        for c in name:
            if c not in char_to_ix:
                raise ValueError(f"data_x[{line}] ({name!r}) has {c!r}, which char_to_ix lacks")
    return examples


def model(
    data_x: Sequence[str],
    ix_to_char: Mapping[int, str],
    char_to_ix: Mapping[str, int],
    num_iterations: int = 35000,
    n_a: int = 50,
    dino_names: int = 7,
    vocab_size: int | None = None,
    verbose: bool = False,
) -> tuple[dict[str, Any], str]:
    """The notebook's training loop: one name per iteration, printing samples as it goes.

    Initialises with :func:`initialize_parameters`, shuffles the names with
    ``np.random.seed(0)``, then for each iteration ``j`` trains on name ``j mod len`` with
    :func:`optimize` (learning rate 0.01), carrying the hidden state from one name to the next,
    and keeps the smoothed loss. Every 2,000 iterations it prints the loss and ``dino_names``
    sampled names (seeds 0, 1, …).

    Parameters
    ----------
    data_x : list of str
        The names, one per entry (``data.split("\\n")``; the whole text is also accepted).
    ix_to_char, char_to_ix : dict
        The vocabulary both ways; it must contain the newline.
    vocab_size : int, optional
        Default ``len(char_to_ix)`` (27 for the dinosaur names, the notebook's default).

    Returns
    -------
    parameters : dict
        The trained parameters (bias ``b``).
    last_dino_name : str
        The last name printed.
    """
    if vocab_size is None:
        vocab_size = len(char_to_ix) if isinstance(char_to_ix, Mapping) else 0
    _newline_index(char_to_ix, vocab_size)
    if not isinstance(ix_to_char, Mapping) or any(i not in ix_to_char for i in range(vocab_size)):
        raise ValueError(f"ix_to_char must map every index 0 … {vocab_size - 1} to its character")
    if any(not 0 <= i < vocab_size for i in char_to_ix.values()):
        raise ValueError(f"char_to_ix maps a character outside 0 … {vocab_size - 1}")
    for name, v in (("num_iterations", num_iterations), ("dino_names", dino_names)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
    n_x, n_y = vocab_size, vocab_size
    parameters = initialize_parameters(n_a, n_x, n_y)
    loss = get_initial_loss(vocab_size, dino_names)
    examples = _examples(data_x, char_to_ix)
    np.random.seed(0)
    np.random.shuffle(examples)
    a_prev = np.zeros((n_a, 1))
    last_dino_name = "abc"
    ix_newline = char_to_ix[NEWLINE]
    for j in range(num_iterations):
        idx = j % len(examples)
        single_example = examples[idx]
        single_example_chars = list(single_example)
        single_example_ix = [char_to_ix[c] for c in single_example_chars]
        X = [None, *single_example_ix]
        Y = [*single_example_ix, ix_newline]  # the notebook's X[1:] + [ix_newline]
        curr_loss, gradients, a_prev = optimize(X, Y, a_prev, parameters, learning_rate=0.01)
        if verbose and j in [0, len(examples) - 1, len(examples)]:
            print("j = ", j, "idx = ", idx)
        if verbose and j in [0]:
            print("single_example =", single_example)
            print("single_example_chars", single_example_chars)
            print("single_example_ix", single_example_ix)
            print(" X = ", X, "\n", "Y =       ", Y, "\n")
        loss = smooth(loss, curr_loss)
        if j % 2000 == 0:
            print("Iteration: %d, Loss: %f" % (j, loss) + "\n")
            seed = 0
            for _ in range(dino_names):
                sampled_indices = sample(parameters, char_to_ix, seed)
                last_dino_name = get_sample(sampled_indices, ix_to_char)
                print(last_dino_name.replace(NEWLINE, ""))
                seed += 1
            print("\n")
    return parameters, last_dino_name
