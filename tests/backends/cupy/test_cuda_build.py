"""Every fused CuPy kernel compiled for the GPU without a GPU (``nox -s gpu-build``).

For every kernel generated from a registered cell's elementwise math
(:func:`xrnn.backends.cupy.all_sources`), both dtypes,
CuPy's three argument layouts and 32-/64-bit indexing, CuPy's own generated source is compiled
by NVRTC for sm_80 and sm_90, to PTX and to a cubin; a float32 kernel whose PTX holds a
double-precision instruction fails. Planted bugs (an unsuffixed literal, a syntax error) show
that both checks bite.

The session sets ``XRNN_GPU_BUILD=1`` and installs the pinned CuPy and NVRTC wheels; there a
missing or moved CuPy is a failure, never a skip. Elsewhere (the CPU matrix) the module skips.
"""

from __future__ import annotations

import os

import pytest

import xrnn.backends.cupy as cupy_backend
from tests.cuda_build import ARCHS, LAYOUTS, compile_kernel, double_precision, kernel_code

IN_SESSION = os.environ.get("XRNN_GPU_BUILD") == "1"
pytestmark = pytest.mark.skipif(
    not IN_SESSION,
    reason="runs in `nox -s gpu-build` (pinned cupy-cuda12x and the NVRTC wheels)",
)


SOURCES = cupy_backend.all_sources()


def _cases():
    for key in SOURCES:
        for dtype in ("float32", "float64"):
            for layout in LAYOUTS:
                for bits in (32, 64):
                    yield pytest.param(
                        key, dtype, layout, bits, id=f"{key}-{dtype}-{layout}-{bits}"
                    )


@pytest.mark.parametrize(("key", "dtype", "layout", "bits"), list(_cases()))
def test_kernel_compiles_for_every_architecture(key, dtype, layout, bits):
    code = kernel_code(SOURCES[key], dtype, layout, bits == 32)
    assert f'extern "C" __global__ void {SOURCES[key].name}(' in code
    for arch in ARCHS:
        ptx = compile_kernel(code, arch, "ptx")
        assert f".target sm_{arch}" in ptx.decode()
        if dtype == "float32":
            assert double_precision(ptx) == [], f"{key} float32 uses double precision on sm_{arch}"
        assert compile_kernel(code, arch, "cubin")[:4] == b"\x7fELF"


def test_an_unsuffixed_literal_in_a_float32_kernel_is_caught():
    """``0.5`` instead of ``(T)0.5``: right values, double-precision instructions."""
    source = SOURCES["lstm_fwd"]
    assert "(T)0.5 * tanh" in source.operation
    broken = source._replace(operation=source.operation.replace("(T)0.5 * tanh", "0.5 * tanh", 1))
    ptx = compile_kernel(kernel_code(broken, "float32", "contiguous", True), "80", "ptx")
    assert double_precision(ptx) != []
    good = compile_kernel(kernel_code(source, "float32", "contiguous", True), "80", "ptx")
    assert double_precision(good) == []


def test_a_kernel_that_does_not_compile_fails():
    from cupy.cuda.compiler import CompileException

    source = SOURCES["gru_bwd"]
    broken = source._replace(operation=source.operation.replace("w0 = ", "w0 = = ", 1))
    with pytest.raises(CompileException, match="expected"):
        compile_kernel(kernel_code(broken, "float64", "strided", False), "90", "cubin")
