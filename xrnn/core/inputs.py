"""Shape checks of the data arguments (``x``, ``a0``, ``da``, …) with messages that name them."""

from __future__ import annotations

from typing import Any

__all__ = ["check_da", "check_shape", "required", "sequence_shape", "shape_of", "unpack_caches"]


def shape_of(name: str, a: Any, layout: tuple[str, ...]) -> tuple[int, ...]:
    """``a.shape`` as ints after checking its number of axes against ``layout``'s names."""
    shape = tuple(map(int, a.shape))
    if len(shape) != len(layout):
        raise ValueError(
            f"{name} must be {len(layout)}-D with shape ({', '.join(layout)}); got shape {shape}"
        )
    return shape


def check_shape(name: str, a: Any, expected: tuple[int, ...], why: str) -> None:
    shape = tuple(map(int, a.shape))
    if shape != expected:
        raise ValueError(f"{name} has shape {shape}; expected {expected} ({why})")


def unpack_caches(caches: Any, forward: str) -> tuple[Any, Any]:
    """``(step_caches, x)`` from the ``caches`` a sequence forward function returned."""
    if not isinstance(caches, tuple | list) or len(caches) != 2:
        raise ValueError(
            f"caches must be the (step_caches, x) pair returned by {forward}; "
            f"got {type(caches).__name__}"
            + (f" of length {len(caches)}" if isinstance(caches, tuple | list) else "")
        )
    return caches[0], caches[1]


def sequence_shape(x: Any) -> tuple[int, int, int]:
    n_x, m, T = shape_of("x", x, ("n_x", "m", "T_x"))
    if min(n_x, m, T) == 0:
        raise ValueError(f"x has shape {(n_x, m, T)}; every axis needs at least one element")
    return n_x, m, T


def check_da(da: Any, n_a: int, m: int, T: int) -> None:
    shape = shape_of("da", da, ("n_a", "m", "T_x"))
    if shape[2] != T:
        raise ValueError(
            f"da has {shape[2]} time steps but the forward pass has {T}: da must hold the "
            f"gradient of every hidden state, shape {(n_a, m, T)}; got {shape}"
        )
    check_shape("da", da, (n_a, m, T), "(n_a, m, T_x) of the forward pass")


def required(*named: tuple[str, Any]) -> None:
    """Each ``(name, value)`` is given: ``None`` for a required array is a ``TypeError`` naming
    it (rather than an ``AttributeError`` deep inside)."""
    for name, value in named:
        if value is None:
            raise TypeError(f"{name} is required (an array), got None")
