"""Namespace and device resolution, and the registry of array backends.

Every public xrnn call resolves exactly one array namespace (``xp``), one device and one
floating dtype from *all* of its array arguments, parameters included, before it computes
anything. Mixing libraries, devices or floating dtypes is refused with an error that names the
offending argument: xrnn never copies between host and device behind the user's back, and never
silently promotes float32 work to float64.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import warnings
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any, NamedTuple

import array_api_compat

__all__ = [
    "Context",
    "available_backends",
    "backend_name",
    "check_values",
    "get_ops",
    "jit_enabled",
    "resolve",
]


class Context(NamedTuple):
    """What a public call computes with: the namespace, device and floating dtype (a named
    tuple: every call makes one, and a tuple is quicker to make than a frozen dataclass)."""

    xp: Any
    device: Any
    dtype: Any


def backend_name(xp: Any) -> str:
    """A short library name for messages: ``numpy``, ``torch``, ``cupy``, ``array_api_strict``."""
    name = getattr(xp, "__name__", repr(xp))
    for prefix in ("array_api_compat.", "array_api_strict"):
        if name.startswith(prefix):
            return name[len(prefix) :] if prefix.endswith(".") else "array_api_strict"
    return name


def _describe(value: Any) -> str:
    return f"{type(value).__module__}.{type(value).__qualname__}"


# The namespace of array types whose namespace depends on the type alone (NumPy, CuPy, PyTorch),
# found once per type, with how to read an array's device (NumPy's is "cpu"; a CuPy array or a
# tensor says): array_namespace and device cost a few µs per array, a dozen arrays per call
_NAMESPACES: dict[type, tuple[Any, Callable[[Any], Any]]] = {}


def _numpy_device(value: Any) -> str:
    return "cpu"


def _tensor_device(value: Any) -> Any:
    if value.is_cpu:  # one device object for every CPU tensor (making one costs more)
        return _torch_cpu()
    return value.device


@cache
def _torch_cpu() -> Any:
    return sys.modules["torch"].device("cpu")


def _remember_namespace(value: Any, xp: Any) -> None:
    if array_api_compat.is_numpy_array(value):
        _NAMESPACES.setdefault(type(value), (xp, _numpy_device))
    elif array_api_compat.is_torch_array(value):
        _NAMESPACES.setdefault(type(value), (xp, _tensor_device))
    elif array_api_compat.is_cupy_array(value):
        _NAMESPACES.setdefault(type(value), (xp, array_api_compat.device))


def _supported_dtype(xp: Any, dtype: Any) -> bool:
    return dtype == xp.float32 or dtype == xp.float64


def resolve(named: Iterable[tuple[str, Any]], *, check_finite: bool = False) -> Context:
    """Resolve the namespace, device and dtype shared by every named array.

    Parameters
    ----------
    named : iterable of (name, array or None)
        The call's array arguments with the names used in error messages; ``None`` entries
        (absent optional arguments) are skipped.
    check_finite : bool
        Also refuse arrays holding NaN or infinity (one reduction per array).

    Raises
    ------
    TypeError
        An argument is not an array, is from another library than the first array, or has a
        non-floating dtype or another floating dtype than the first array.
    ValueError
        An argument lives on another device than the first array, or holds NaN/inf while
        ``check_finite`` is true.
    """
    first: tuple[str, Any, Any, Any] | None = None  # name, xp, device, dtype
    items = [(n, v) for n, v in named if v is not None]
    # the first array's type, dtype and device, and how to read a device of its library
    kind: Any = None
    kind_dtype: Any = None
    kind_device: Any = None
    device_of_kind: Callable[[Any], Any] = array_api_compat.device
    for name, value in items:
        if (
            type(value) is kind
            and value.dtype == kind_dtype
            and device_of_kind(value) == kind_device
        ):
            continue  # the first array's library, dtype and device: nothing to check
        xp, device_of = _NAMESPACES.get(type(value), (None, array_api_compat.device))
        if xp is None:
            if type(value).__module__.startswith("numpy.ma"):
                raise TypeError(
                    f"{name} is a masked array; xrnn does not read masks — pass lengths= for "
                    f"padded sequences, or the plain values ({name}.filled(0) or .data)"
                )
            if not array_api_compat.is_array_api_obj(value):
                raise TypeError(
                    f"{name} must be an array (NumPy, CuPy, PyTorch or another array-API "
                    f"library), got {_describe(value)}"
                )
            xp = array_api_compat.array_namespace(value)
        if not _supported_dtype(xp, value.dtype):
            if getattr(value.dtype, "byteorder", "=") not in ("=", "|"):  # NumPy's non-native
                raise TypeError(
                    f"{name} has dtype {value.dtype.str}, in the other byte order than this "
                    f"machine's; convert it first, e.g. "
                    f"{name}.astype({name}.dtype.newbyteorder('='))"
                )
            if not xp.isdtype(value.dtype, "real floating"):
                raise TypeError(
                    f"{name} has dtype {value.dtype}; xrnn needs a real floating dtype "
                    f"(float32 or float64) — convert it first, e.g. x.astype(float32)"
                )
            raise TypeError(  # float16, bfloat16, longdouble
                f"{name} has dtype {value.dtype}; xrnn computes in float32 or float64 only "
                f"(half precision and extended precision are not supported) — convert it "
                f"first, e.g. x.astype(float32)"
            )
        device = device_of(value)
        if first is None:
            _remember_namespace(value, xp)
            first = (name, xp, device, value.dtype)
            if device is not None:  # (a value being traced has none: compared in full below)
                kind, kind_dtype, kind_device = type(value), value.dtype, device
                device_of_kind = device_of
            continue
        name0, xp0, device0, dtype0 = first
        if xp is not xp0:
            raise TypeError(
                f"{name} is a {backend_name(xp)} array but {name0} is a {backend_name(xp0)} "
                f"array; xrnn does not copy between libraries — convert one of them "
                f"(for parameters: xrnn.to_device(parameters, {name0}))"
            )
        # None: a value being traced (jax.jit, jax.grad) has no device yet
        if device != device0 and None not in (device, device0):
            raise ValueError(
                f"{name} is on device {device} but {name0} is on device {device0}; xrnn "
                f"does not move data between devices — move one of them "
                f"(for parameters: xrnn.to_device(parameters, {name0}))"
            )
        if value.dtype != dtype0:
            raise TypeError(
                f"{name} has dtype {value.dtype} but {name0} has dtype {dtype0}; xrnn does not "
                f"mix floating dtypes — cast one of them (for parameters: "
                f"xrnn.to_device(parameters, {name0}) casts to {name0}'s dtype)"
            )
    if first is None:
        raise TypeError("no array arguments were given")
    if first[2] is None:  # take the device from an argument that has one, if any
        known = [array_api_compat.device(v) for _, v in items]
        first = (*first[:2], next((d for d in known if d is not None), None), first[3])
    ctx = Context(xp=first[1], device=first[2], dtype=first[3])
    if check_finite:
        check_values(ctx, items)
    return ctx


def _traced(arrays: list) -> bool:
    """Whether any of ``arrays`` is a JAX value being traced (it has no value to read)."""
    jax = sys.modules.get("jax")
    return jax is not None and any(isinstance(a, jax.core.Tracer) for a in arrays)


def check_values(
    ctx: Context,
    named: Iterable[tuple[str, Any]],
    conditions: Iterable[Any] = (),
    produced: Iterable[tuple[str, Any]] = (),
) -> None:
    """Refuse an array holding NaN or infinity, or a false condition, with one host read.

    Parameters
    ----------
    named : iterable of (name, array or None)
        The call's inputs, which must be finite (``None`` entries skipped): ``ValueError``.
    conditions : iterable of (0-d boolean array, message), or None entries
        Checks computed on the device (e.g. lengths in range) that must hold: ``ValueError``.
    produced : iterable of (name, array or None)
        What the call computed from finite inputs, which must be finite too: where it is
        not (a state or gradient overflowed), ``FloatingPointError``.

    The test itself is the backend's (:meth:`xrnn.core.ops.Ops.all_finite`: on a GPU one host
    read for all arrays and conditions); only a failure (or a sum of finite values that
    overflowed) pays for the exact per-array and per-condition tests that name the culprit,
    inputs first.
    """
    xp = ctx.xp
    items = [(n, v) for n, v in named if v is not None]
    results = [(n, v) for n, v in produced if v is not None]
    checks = [c for c in conditions if c is not None]
    if not items and not checks and not results:
        return
    values = [v for _, v in items] + [v for _, v in results]
    if _traced(values + [ok for ok, _ in checks]):
        return  # values being traced (jax.jit, jax.grad, jax.vmap): nothing to read yet
    if get_ops(xp).all_finite(values, [ok for ok, _ in checks]):
        return
    with warnings.catch_warnings():  # torch warns when it reads a tensor that requires grad
        warnings.simplefilter("ignore", UserWarning)
        for name, value in items:
            if not bool(xp.all(xp.isfinite(value))):
                raise ValueError(
                    f"{name} contains NaN or infinity; it would poison every later step "
                    f"(pass check_finite=False to skip this check)"
                )
        for ok, message in checks:
            if not bool(ok):
                raise ValueError(message)
        for name, value in results:
            if not bool(xp.all(xp.isfinite(value))):
                raise FloatingPointError(
                    f"{name} came out with NaN or infinity from finite inputs: the values "
                    f"overflowed (weights too large, or a recurrence that grows over the "
                    f"steps); pass check_finite=False to get them unchecked"
                )


def get_ops(xp: Any) -> Any:
    """The step work for ``xp``: a backend subclass where one exists, else the reference."""
    return _ops_for(xp)


@cache
def _ops_for(xp: Any) -> Any:
    from xrnn.core.ops import Ops

    if array_api_compat.is_numpy_namespace(xp):
        if jit_enabled():
            from xrnn.backends.numpy.jit import JitOps

            return JitOps(xp)
        from xrnn.backends.numpy import NumpyOps

        return NumpyOps(xp)
    if array_api_compat.is_torch_namespace(xp):
        from xrnn.backends.torch import TorchOps

        return TorchOps(xp)
    if array_api_compat.is_cupy_namespace(xp):
        from xrnn.backends.cupy import CupyOps

        return CupyOps(xp)
    if array_api_compat.is_jax_namespace(xp):
        from xrnn.backends.jax import JaxOps

        return JaxOps(xp)
    return Ops(xp)


def jit_enabled() -> bool:
    """Whether NumPy arrays get the compiled step kernels (:mod:`xrnn.backends.numpy.jit`): numba is
    importable and ``XRNN_JIT`` is not ``0`` in the environment (read at the first call with
    NumPy arrays; the pure-NumPy kernels otherwise)."""
    if os.environ.get("XRNN_JIT", "1").strip() == "0":
        return False
    return _numba_found()


@cache
def _numba_found() -> bool:
    return importlib.util.find_spec("numba") is not None


def available_backends() -> list[str]:
    """Names of the array backends usable on this machine, NumPy first.

    ``cupy`` is listed only when ``cupy.is_available()`` reports a working GPU.
    """
    found = ["numpy"]
    for name in ("array_api_strict", "torch", "jax"):
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        found.append(name)
    try:
        cupy = importlib.import_module("cupy")
    except ImportError:
        pass
    else:
        if cupy.is_available():
            found.append("cupy")
    return found
