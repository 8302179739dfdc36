"""Parameter dictionaries: validation, initialisation and moving between backends/devices."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import array_api_compat

from xrnn.backends import backend_name, resolve

__all__ = [
    "LSTM_GATES",
    "initialize_lstm",
    "initialize_rnn",
    "output_layer",
    "parameter_items",
    "to_device",
    "validate_lstm_parameters",
    "validate_rnn_parameters",
]

RNN_KEYS = ("Wax", "Waa", "ba")
RNN_OUTPUT = ("Wya", "by")
# (weight, bias) per gate, in the order the kernels stack them: sigmoid gates first, then c̃.
LSTM_GATES = (("Wf", "bf"), ("Wi", "bi"), ("Wo", "bo"), ("Wc", "bc"))
LSTM_KEYS = tuple(k for pair in LSTM_GATES for k in pair)
LSTM_OUTPUT = ("Wy", "by")


def parameter_items(parameters: Any, keys: tuple[str, ...]) -> list[tuple[str, Any]]:
    """``(name, array)`` pairs for :func:`xrnn.backends.resolve`, present keys only."""
    if not isinstance(parameters, Mapping):
        raise TypeError(f"parameters must be a dict of arrays, got {type(parameters).__name__}")
    return [(f"parameters[{k!r}]", parameters[k]) for k in keys if k in parameters]


def _check_shape(parameters: Mapping[str, Any], key: str, expected: tuple[int, ...], why: str):
    if key not in parameters:
        raise KeyError(f"parameters is missing {key!r} (expected shape {expected}, {why})")
    shape = tuple(parameters[key].shape)
    if shape != expected:
        raise ValueError(f"parameters[{key!r}] has shape {shape}; expected {expected} ({why})")


def output_layer(parameters: Mapping[str, Any], keys: tuple[str, str], n_a: int) -> int | None:
    """Validate the optional output layer ``(W, b)``; return ``n_y``, or None if absent."""
    w, b = keys
    if w not in parameters and b not in parameters:
        return None
    if w not in parameters or b not in parameters:
        have, missing = (w, b) if w in parameters else (b, w)
        raise KeyError(
            f"parameters has {have!r} but is missing {missing!r}: the output layer needs both "
            f"(or neither, for no output layer)"
        )
    W = parameters[w]
    if len(W.shape) != 2:
        raise ValueError(f"parameters[{w!r}] must be 2-D (n_y, n_a); got shape {tuple(W.shape)}")
    n_y = int(W.shape[0])
    _check_shape(parameters, w, (n_y, n_a), f"n_y={n_y}, n_a={n_a}")
    _check_shape(parameters, b, (n_y, 1), f"n_y={n_y}")
    return n_y


def validate_rnn_parameters(parameters: Mapping[str, Any], n_x: int, n_a: int) -> int | None:
    """Check every RNN key and shape against ``n_x``/``n_a``; return ``n_y`` or None."""
    _check_shape(parameters, "Wax", (n_a, n_x), f"n_a={n_a}, n_x={n_x}")
    _check_shape(parameters, "Waa", (n_a, n_a), f"n_a={n_a}")
    _check_shape(parameters, "ba", (n_a, 1), f"n_a={n_a}")
    return output_layer(parameters, RNN_OUTPUT, n_a)


def validate_lstm_parameters(parameters: Mapping[str, Any], n_x: int, n_a: int) -> int | None:
    """Check every LSTM key and shape against ``n_x``/``n_a``; return ``n_y`` or None."""
    for w, b in LSTM_GATES:
        _check_shape(parameters, w, (n_a, n_a + n_x), f"n_a={n_a}, n_a + n_x={n_a + n_x}")
        _check_shape(parameters, b, (n_a, 1), f"n_a={n_a}")
    return output_layer(parameters, LSTM_OUTPUT, n_a)


# --- initialisation -----------------------------------------------------------------------


def _positive(name: str, value: Any, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _sampler(n_x: Any, n_a: Any, n_y: Any, seed: int) -> Any:
    """Validate the sizes; return the seeded ``U(±1/sqrt(n_a))`` sampler both initialisers use."""
    _positive("n_x", n_x)
    _positive("n_a", n_a)
    _positive("n_y", n_y, optional=True)
    from xrnn.backends import numpy as npb

    return npb.uniform_sampler(seed, n_a)


def _materialise(host: dict[str, Any], dtype: Any, like: Any) -> dict[str, Any]:
    from xrnn.backends import numpy as npb

    if like is None:
        return npb.cast_all(host, dtype)
    ctx = resolve([("like", like)])
    xp = ctx.xp
    target = ctx.dtype if dtype is None else dtype
    return {k: xp.asarray(npb.cast(v, target), device=ctx.device) for k, v in host.items()}


def initialize_rnn(
    n_x: int,
    n_a: int,
    n_y: int | None = None,
    *,
    seed: int = 0,
    dtype: Any = None,
    like: Any = None,
) -> dict[str, Any]:
    """Random RNN parameters ``Wax (n_a, n_x)``, ``Waa (n_a, n_a)``, ``ba (n_a, 1)`` and,
    when ``n_y`` is given, the output layer ``Wya (n_y, n_a)``, ``by (n_y, 1)``.

    Weights are drawn uniformly from ``±1/sqrt(n_a)`` (PyTorch's ``nn.RNN`` default; output layer
    ``±1/sqrt(n_a)`` too) from a NumPy ``Generator`` seeded with ``seed``, so every backend gets
    the same numbers; biases start at zero.

    Parameters
    ----------
    like : array, optional
        Create the arrays in this array's namespace, on its device, with its dtype.
    dtype : dtype, optional
        Floating dtype of the result (of ``like``'s namespace when ``like`` is given). Default:
        ``like``'s dtype, else NumPy float64.
    """
    from xrnn.backends import numpy as npb

    u = _sampler(n_x, n_a, n_y, seed)
    host = {"Wax": u((n_a, n_x)), "Waa": u((n_a, n_a)), "ba": npb.zeros((n_a, 1))}
    if n_y is not None:
        host.update(Wya=u((n_y, n_a)), by=npb.zeros((n_y, 1)))
    return _materialise(host, dtype, like)


def initialize_lstm(
    n_x: int,
    n_a: int,
    n_y: int | None = None,
    *,
    seed: int = 0,
    dtype: Any = None,
    like: Any = None,
) -> dict[str, Any]:
    """Random LSTM parameters ``Wf, Wi, Wc, Wo (n_a, n_a + n_x)``, ``bf, bi, bc, bo (n_a, 1)``
    and, when ``n_y`` is given, ``Wy (n_y, n_a)``, ``by (n_y, 1)``.

    Weights are uniform in ``±1/sqrt(n_a)`` (PyTorch's ``nn.LSTM`` default) from a NumPy
    ``Generator`` seeded with ``seed``; biases are zero except the forget-gate bias ``bf = 1``,
    which keeps the cell's memory open early in training (Jozefowicz et al., 2015).
    ``like`` and ``dtype`` as in :func:`initialize_rnn`.
    """
    from xrnn.backends import numpy as npb

    u = _sampler(n_x, n_a, n_y, seed)
    host: dict[str, Any] = {}
    for w, b in (("Wf", "bf"), ("Wi", "bi"), ("Wc", "bc"), ("Wo", "bo")):
        host[w] = u((n_a, n_a + n_x))
        host[b] = npb.zeros((n_a, 1)) + (1.0 if w == "Wf" else 0.0)
    if n_y is not None:
        host.update(Wy=u((n_y, n_a)), by=npb.zeros((n_y, 1)))
    return _materialise(host, dtype, like)


def to_device(parameters: Mapping[str, Any], target: Any, /) -> dict[str, Any]:
    """A copy of ``parameters`` moved to ``target``'s namespace, device and dtype.

    Parameters
    ----------
    parameters : dict of arrays
    target : array or device
        An array: every parameter becomes an array of its library, on its device, with its
        floating dtype (a deliberate, explicit copy — e.g. NumPy → CuPy, or float64 → float32).
        A device object of the parameters' own library (``torch.device("cuda")``,
        ``array_api_strict.Device("device1")``): the arrays move there, dtype kept.

    Returns
    -------
    dict of arrays
        A new dict; the input dict and its arrays are not modified.
    """
    if not isinstance(parameters, Mapping):
        raise TypeError(f"parameters must be a dict of arrays, got {type(parameters).__name__}")
    if array_api_compat.is_array_api_obj(target):
        ctx = resolve([("target", target)])
        xp = ctx.xp
        out = {}
        for k, v in parameters.items():
            if not array_api_compat.is_array_api_obj(v):
                raise TypeError(f"parameters[{k!r}] must be an array, got {type(v).__name__}")
            if array_api_compat.array_namespace(v) is xp:
                moved = array_api_compat.to_device(v, ctx.device)
            else:
                from xrnn.backends import numpy as npb

                moved = xp.asarray(npb.to_numpy(v), device=ctx.device)
            out[k] = xp.astype(moved, ctx.dtype)
        return out
    out = {}
    for k, v in parameters.items():
        try:
            out[k] = array_api_compat.to_device(v, target)
        except Exception as exc:  # the library's own message says why; name the key
            xp = array_api_compat.array_namespace(v)
            raise ValueError(
                f"cannot move parameters[{k!r}] ({backend_name(xp)}) to device {target!r}: "
                f"{exc}. To change library, pass an array of the target library instead."
            ) from exc
    return out
