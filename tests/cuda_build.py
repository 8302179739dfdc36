"""CuPy's own CUDA source for xrnn's fused kernels, compiled by NVRTC without a GPU.

``cupy.ElementwiseKernel.__call__`` turns a kernel into CUDA source with
``cupy._core._kernel._get_elementwise_kernel_code`` from the arguments' layout (``_ArgInfo``:
array, dtype, ndim after CuPy merges contiguous axes, C-contiguity, 32- or 64-bit indexing)
and the ``T`` typedef (``_TypeMap``), prepends CuPy's headers and compiles with NVRTC using
``assemble_cupy_compiler_options`` plus ``-ftz=true``, ``-arch=…`` and
``--device-as-default-execution-space``. :func:`kernel_code` and :func:`compile_kernel` do the
same, step by step, with an architecture given instead of asked of a device (CuPy's public
``compile_using_nvrtc`` queries the device first). These are CuPy's private functions, so the
CuPy version is pinned (:data:`CUPY_VERSION`, ``noxfile.py``) and checked: when it moves this
fails loudly, and the functions below must be re-read against the new ``_kernel.pyx``.

Double precision in a float32 kernel (an unsuffixed ``0.5``, ``exp((double)x)``) computes the
right values slowly — 1/64 of the float32 rate on consumer GPUs — and no CPU test can see it;
:func:`double_precision` finds it in the PTX.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

CUPY_VERSION = "14.2.0"  # the pin in noxfile.py's gpu-build session
ARCHS = ("80", "90")  # Ampere (A100) and Hopper (H100/H200)
# argument layouts as CuPy sees them after merging axes (reduce_dims): every array
# C-contiguous (one axis), every array strided (two axes: column blocks, a broadcast bias),
# or some of each
LAYOUTS = {"contiguous": (1, (True,)), "strided": (2, (False,)), "mixed": (2, (True, False))}
# _ArgKind in cupy/_core/_kernel.pxd (cdef enum, not visible from Python)
_ARG_KIND_NDARRAY, _ARG_KIND_INDEXER = 1, 2


def cupy_internals() -> tuple[Any, Any, Any, Any, Any]:
    """``(cupy, _kernel, _carray, core, compiler)`` after checking the pinned version."""
    import cupy
    import cupy.cuda.compiler as compiler
    from cupy._core import _carray, _kernel, core

    if cupy.__version__ != CUPY_VERSION:
        raise RuntimeError(
            f"CuPy {cupy.__version__} is installed but tests/cuda_build.py reads CuPy "
            f"{CUPY_VERSION}'s private code generator: pin the new version in noxfile.py and "
            f"check _get_elementwise_kernel_code, _ArgInfo and _TypeMap against it"
        )
    return cupy, _kernel, _carray, core, compiler


def kernel_code(source: Any, dtype: str, layout: str, index_32_bits: bool) -> str:
    """The CUDA source CuPy generates for ``source`` (a :class:`xrnn.backends.cupy.
    KernelSource`) called with ``dtype`` arrays in ``layout``, headers included."""
    cupy, _kernel, _carray, core, _ = cupy_internals()
    in_params = _kernel._get_param_info(source.in_params, True)
    out_params = _kernel._get_param_info(source.out_params, False)
    params = in_params + out_params + _kernel._get_param_info("CIndexer _ind", False)
    ndim, contiguity = LAYOUTS[layout]
    n = len(in_params) + len(out_params)
    infos = tuple(
        _kernel._ArgInfo(
            _ARG_KIND_NDARRAY,
            cupy.ndarray,
            np.dtype(dtype),
            ndim,
            contiguity[i % len(contiguity)],
            index_32_bits,
        )
        for i in range(n)
    ) + (_kernel._ArgInfo(_ARG_KIND_INDEXER, _carray.Indexer, None, ndim, True, index_32_bits),)
    type_map = _kernel._TypeMap((("T", np.dtype(dtype)),))
    code = _kernel._get_elementwise_kernel_code(
        infos, type_map, params, source.operation, source.name, ""
    )
    headers = "".join(f"#include <{h}>\n" for h in core._cupy_header_list)
    return headers + code


def compile_kernel(code: str, arch: str, target: str) -> bytes:
    """NVRTC output for ``code``: ``target`` "ptx" (``-arch=compute_XX``, the virtual ISA) or
    "cubin" (``-arch=sm_XX``, what CuPy builds for a device it knows). Raises CuPy's
    ``CompileException`` (with NVRTC's log) on an error."""
    _, _, _, core, compiler = cupy_internals()
    arch_option = f"-arch={'compute' if target == 'ptx' else 'sm'}_{arch}"
    options = core.assemble_cupy_compiler_options(()) + (
        "-ftz=true",
        arch_option,
        "--device-as-default-execution-space",
    )
    program = compiler._NVRTCProgram(code, "kern.cu", method=target)
    out, _ = program.compile(options)
    return out if isinstance(out, bytes) else out.encode()


_F64 = re.compile(r"\.f64\b")


def double_precision(ptx: bytes) -> list[str]:
    """The PTX lines that declare or use 64-bit floating point (``.f64``)."""
    return [line.strip() for line in ptx.decode().splitlines() if _F64.search(line)]
