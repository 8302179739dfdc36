"""CuPy emulated on the CPU: the real :class:`xrnn.backends.cupy.CupyOps` over NumPy arrays, each
``ElementwiseKernel`` body compiled as C++ by the system compiler.

A kernel call does what ``cupy.ElementwiseKernel.__call__`` does (CuPy 14,
``cupy/_core/_kernel.pyx``), as far as xrnn's kernels can tell:

- every ``T`` argument must have the same dtype ("Type is mismatched");
- inputs and outputs broadcast together and every output must already have the broadcast
  shape ("Out shape is mismatched"): outputs are written in place, through their strides;
- an input that may share memory with an output, and is not that very array, is copied first
  (``_copy_in_args_if_needed``) — so an in-place update must pass the same array object;
- the body runs once per element with ``const T &in = ...; T &out = ...;`` bound to that
  element, as CuPy's generated code binds them; here in order, on the GPU in parallel (a body
  that reads another element than its own would pass here and race there: none does).

What this cannot see — a float literal that silently promotes float32 work to double, code NVRTC
rejects — ``tests/backends/cupy/test_cuda_build.py`` checks by compiling the same sources with
NVRTC.
"""

from __future__ import annotations

import ctypes
import hashlib
import shutil
import subprocess
import tempfile
import types
from pathlib import Path
from typing import Any

import numpy as np

COMPILER = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")

_CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}

_TEMPLATE = """
#include <cmath>
#include <cstdint>
#include <algorithm>
using std::tanh; using std::exp; using std::max; using std::min; using std::abs;
typedef {ctype} T;
extern "C" void {name}(char **ptrs, const int64_t *strides, const int64_t *shape, int ndim,
                       int64_t size) {{
  for (int64_t i = 0; i < size; ++i) {{
    int64_t off[{nargs}] = {{0}};
    int64_t rest = i;
    for (int d = ndim - 1; d >= 0; --d) {{
      int64_t k = rest % shape[d];
      rest /= shape[d];
      for (int a = 0; a < {nargs}; ++a) off[a] += k * strides[a * ndim + d];
    }}
{bindings}
{operation};
  }}
}}
"""


def _params(spec: str) -> list[str]:
    """Parameter names of a CuPy parameter list such as ``"T gx, T h"`` (all of type ``T``)."""
    names = []
    for item in spec.split(","):
        words = item.split()
        if len(words) != 2 or words[0] != "T":
            raise ValueError(f"the emulator handles 'T name' parameters only, got {item!r}")
        names.append(words[1])
    return names


class _Compiled:
    """One shared library per (kernel, dtype), cached by the source's hash in ``build_dir``."""

    def __init__(self, build_dir: Path) -> None:
        self.build_dir = build_dir
        self.libraries: dict[str, Any] = {}

    def function(self, source: str, name: str) -> Any:
        key = hashlib.sha256(source.encode()).hexdigest()[:16]
        if key not in self.libraries:
            path = self.build_dir / f"{name}_{key}.so"
            if not path.exists():
                cpp = self.build_dir / f"{name}_{key}.cpp"
                cpp.write_text(source)
                assert COMPILER is not None
                subprocess.run(
                    [COMPILER, "-O1", "-shared", "-fPIC", "-o", str(path), str(cpp)],
                    check=True,
                    capture_output=True,
                    text=True,
                )
            self.libraries[key] = ctypes.CDLL(str(path))
        fn = getattr(self.libraries[key], name)
        fn.restype = None
        return fn


class ElementwiseKernel:
    """``cupy.ElementwiseKernel(in_params, out_params, operation, name)`` on NumPy arrays."""

    def __init__(self, in_params: str, out_params: str, operation: str, name: str, *, emulator):
        self.inputs = _params(in_params)
        self.outputs = _params(out_params)
        self.operation = operation
        self.name = name
        self.emulator = emulator

    def source(self, dtype: np.dtype) -> str:
        names = self.inputs + self.outputs
        bindings = [
            f"    {'const T &' if j < len(self.inputs) else 'T &'}{n} = "
            f"*reinterpret_cast<T *>(ptrs[{j}] + off[{j}]);"
            for j, n in enumerate(names)
        ]
        return _TEMPLATE.format(
            ctype=_CTYPES[dtype],
            name=self.name,
            nargs=len(names),
            bindings="\n".join(bindings),
            operation=self.operation,
        )

    def __call__(self, *args: Any) -> None:
        emulator = self.emulator
        emulator.launches.append((self.name, emulator.current_device))
        if len(args) != len(self.inputs) + len(self.outputs):
            raise TypeError(f"{self.name}: wrong number of arguments ({len(args)})")
        arrays = list(args)
        for a in arrays:
            if not isinstance(a, np.ndarray):
                raise TypeError(f"{self.name}: arguments must be arrays, got {type(a)}")
        dtype = arrays[0].dtype
        for n, a in zip(self.inputs + self.outputs, arrays, strict=True):
            if a.dtype != dtype:
                raise TypeError(f"Type is mismatched. {n} {a.dtype} {dtype} T")
        if dtype not in _CTYPES:
            raise TypeError(f"{self.name}: dtype {dtype} not emulated")
        shape = np.broadcast_shapes(*(a.shape for a in arrays))
        ins, outs = arrays[: len(self.inputs)], arrays[len(self.inputs) :]
        for o in outs:
            if o.shape != shape:
                raise ValueError("Out shape is mismatched")
            if not o.flags.writeable:
                raise ValueError(f"{self.name}: output is read-only")
        for j, a in enumerate(ins):  # CuPy's _copy_in_args_if_needed
            if any(a is not o and np.may_share_memory(a, o) for o in outs):
                ins[j] = a.copy()
        views = [np.broadcast_to(a, shape) for a in ins] + outs
        ndim = max(len(shape), 1)
        full = shape if shape else (1,)
        strides = [s for v in views for s in (v.strides if v.ndim else (0,))]
        fn = emulator.compiled.function(self.source(dtype), self.name)
        n = len(views)
        fn(
            (ctypes.c_void_p * n)(*(v.ctypes.data for v in views)),
            (ctypes.c_int64 * (n * ndim))(*strides),
            (ctypes.c_int64 * ndim)(*full),
            ctypes.c_int(ndim),
            ctypes.c_int64(int(np.prod(full))),
        )


class _Device:
    """``cupy.cuda.Device(id)`` as a context manager: records the current device."""

    def __init__(self, emulator: Emulator, id: Any) -> None:
        self.emulator, self.id = emulator, id

    def __enter__(self) -> _Device:
        self.emulator.stack.append(self.id)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.emulator.stack.pop()


class Emulator(types.SimpleNamespace):
    """A ``cupy`` stand-in: NumPy's ``matmul``/``empty``/``copyto``/… (what :class:`CupyOps`
    calls on ``lib``), :class:`ElementwiseKernel`, and ``cuda.Device``.

    ``launches`` lists ``(kernel name, current device)`` per kernel call; ``current_device`` is
    None outside every ``cuda.Device`` scope (CuPy's default device, 0).
    """

    def __init__(self, build_dir: Path | None = None) -> None:
        super().__init__()
        for name in (
            "array",
            "matmul",
            "empty",
            "empty_like",
            "copyto",
            "add",
            "multiply",
            "zeros",
        ):
            setattr(self, name, getattr(np, name))
        self.build_dir = Path(build_dir or tempfile.mkdtemp(prefix="xrnn-cupy-emulator-"))
        self.compiled = _Compiled(self.build_dir)
        self.stack: list[Any] = []
        self.launches: list[tuple[str, Any]] = []
        self.cuda = types.SimpleNamespace(Device=lambda id=None: _Device(self, id))

    @property
    def current_device(self) -> Any:
        return self.stack[-1] if self.stack else None

    def ElementwiseKernel(self, in_params, out_params, operation, name="kernel", **kw):  # noqa: N802
        return ElementwiseKernel(in_params, out_params, operation, name, emulator=self)


def emulated_ops(build_dir: Path | None = None) -> Any:
    """The real :class:`~xrnn.backends.cupy.CupyOps` over NumPy arrays, on the emulator."""
    import array_api_compat

    from xrnn.backends.cupy import CupyOps

    return CupyOps(array_api_compat.array_namespace(np.empty(0)), lib=Emulator(build_dir))
