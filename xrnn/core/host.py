"""Host-side NumPy helpers that are not kernels: seeded initial weights, dtype casts and copies
to the host (for ``to_device`` and checkpoints).

The kernels never import NumPy; these helpers do host work that the array API has no words for
(a seeded random generator, a copy from any library to the host).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "c_contiguous",
    "cast",
    "cast_all",
    "host_generator",
    "is_generator",
    "to_numpy",
    "uniform_sampler",
    "zeros",
]


def to_numpy(a: Any) -> np.ndarray:
    """A host NumPy copy of an array of any supported library (explicit, for ``to_device``)."""
    if hasattr(a, "get") and type(a).__module__.startswith("cupy"):
        return a.get()
    if type(a).__module__.startswith("torch"):
        return a.detach().cpu().numpy()
    try:
        return np.asarray(a)
    except (TypeError, ValueError, RuntimeError):
        return np.from_dlpack(a)


def c_contiguous(a: np.ndarray, *, copy: bool) -> np.ndarray:
    """``a`` in C order: a copy sharing no memory with it (``copy``), else ``a`` itself where
    it already is (the array API has no memory-order words)."""
    return np.array(a, order="C", copy=True) if copy else np.ascontiguousarray(a)


def zeros(shape: tuple[int, ...]) -> np.ndarray:
    return np.zeros(shape)


def uniform_sampler(seed: int, n_a: int) -> Callable[[tuple[int, ...]], np.ndarray]:
    """Draws of ``U(-1/sqrt(n_a), 1/sqrt(n_a))`` from one seeded generator, in call order."""
    rng = host_generator(seed)
    bound = 1.0 / np.sqrt(n_a)
    return lambda shape: rng.uniform(-bound, bound, size=shape)


def dtype_name(dtype: Any) -> str:
    """``"float32"`` or ``"float64"`` from a dtype in any spelling: a string, a NumPy dtype or
    type (``np.float32``, ``float``), another library's dtype object (``torch.float32``);
    anything else is a ``TypeError`` naming ``dtype``."""
    if isinstance(dtype, str):
        name = dtype
    else:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            name = str(dtype).rsplit(".", 1)[-1]  # torch.float32, array_api_strict.float32
    if name not in ("float32", "float64"):
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}")
    return name


def cast(a: np.ndarray, dtype: Any) -> np.ndarray:
    """``a`` as ``dtype`` (any spelling :func:`dtype_name` reads); None keeps it."""
    if dtype is None:
        return a
    return a.astype(np.dtype(dtype_name(dtype)))


def cast_all(arrays: dict[str, np.ndarray], dtype: Any) -> dict[str, np.ndarray]:
    return {k: cast(v, dtype) for k, v in arrays.items()}


def host_generator(seed: int) -> np.random.Generator:
    """A NumPy generator for host-side draws (initial weights, dropout masks); a seed that is
    not a non-negative integer is a ``ValueError`` naming it."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.default_rng(int(seed))


def is_generator(g: object) -> bool:
    return isinstance(g, np.random.Generator)
