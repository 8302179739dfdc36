"""Parameter dictionaries, cell-independent: key and shape checks, seeded initialisation and
moving between libraries and devices. Each cell's keys, shapes and init rule live in its own
module (:mod:`xrnn.rnn`, :mod:`xrnn.lstm`, :mod:`xrnn.gru`)."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import array_api_compat

from xrnn.backends import backend_name, resolve

__all__ = [
    "check_parameter",
    "initialize",
    "output_layer",
    "parameter_items",
    "positive_int",
    "to_device",
]


def parameter_items(parameters: Any, keys: tuple[str, ...]) -> list[tuple[str, Any]]:
    """``(name, array)`` pairs for :func:`xrnn.backends.resolve`, present keys only."""
    if not isinstance(parameters, Mapping):
        raise TypeError(f"parameters must be a dict of arrays, got {type(parameters).__name__}")
    names = _parameter_names(tuple(keys))
    return [(names[k], parameters[k]) for k in keys if k in parameters]


@lru_cache(maxsize=256)
def _parameter_names(keys: tuple[str, ...]) -> dict[str, str]:
    """Each key's name in messages (asked on every call)."""
    return {k: f"parameters[{k!r}]" for k in keys}


def check_parameter(
    parameters: Mapping[str, Any], key: str, expected: tuple[int, ...], why: str
) -> None:
    """``parameters[key]`` exists and has shape ``expected`` (``why`` explains the shape)."""
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
    check_parameter(parameters, w, (n_y, n_a), f"n_y={n_y}, n_a={n_a}")
    check_parameter(parameters, b, (n_y, 1), f"n_y={n_y}")
    return n_y


# --- initialisation -----------------------------------------------------------------------


def positive_int(name: str, value: Any, *, optional: bool = False) -> None:
    """``value`` is a positive integer (a NumPy integer too; None when ``optional``); the
    error names it."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def initialize(
    draw: Callable[[Callable, Callable, int, int], dict[str, Any]],
    output_keys: tuple[str, str],
    n_x: int,
    n_a: int,
    n_y: int | None,
    *,
    seed: int,
    dtype: Any,
    like: Any,
    uniform: Callable | None = None,
) -> dict[str, Any]:
    """The shared body of the ``initialize_<cell>`` functions.

    ``draw(uniform, zeros, n_x, n_a)`` is the cell's rule (from its module): it returns the
    host arrays of the cell's keys, drawing ``uniform(shape)`` from ``U(±1/sqrt(n_a))`` in a
    fixed order. The output layer ``(n_y, n_a)``/``(n_y, 1)`` is drawn after it when ``n_y``
    is given. The arrays are then created in ``like``'s library, device and dtype. A
    ``uniform`` sampler shared by several calls (a stacked layer's) replaces the one ``seed``
    would start.
    """
    from xrnn.core.host import cast, cast_all, uniform_sampler, zeros

    positive_int("n_x", n_x)
    positive_int("n_a", n_a)
    positive_int("n_y", n_y, optional=True)
    u = uniform_sampler(seed, n_a) if uniform is None else uniform
    arrays = draw(u, zeros, n_x, n_a)
    if n_y is not None:
        w, b = output_keys
        arrays.update({w: u((n_y, n_a)), b: zeros((n_y, 1))})
    if like is None:
        return cast_all(arrays, dtype)
    ctx = resolve([("like", like)])
    target = ctx.dtype if dtype is None else dtype
    return {k: ctx.xp.asarray(cast(v, target), device=ctx.device) for k, v in arrays.items()}


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
                from xrnn.core.host import to_numpy

                moved = xp.asarray(to_numpy(v), device=ctx.device)
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
