"""Test matrix, lint and benchmarks. Plain ``nox`` runs the CPU matrix (which includes the CuPy
backend emulated on the CPU), the Dask session, the GPU build (every CUDA kernel compiled, no
GPU needed), the CuPy session (which skips itself without a GPU) and lint. By name only: the
oldest and newest Python (``tests-python``), the dependency floors (``min-deps``), the package
build (``package``) and the benchmarks (``bench``)."""

from __future__ import annotations

import glob
import os
import re
import shutil

import nox

nox.options.sessions = ["tests", "dask", "gpu-build", "cupy", "lint"]
nox.options.error_on_missing_interpreters = True

# The sessions pin the oldest PyTorch the package supports (pyproject: torch>=2.13,<3), whose
# CPU build is what the package index CI uses resolves it to (a newer torch resolves to a
# multi-GB CUDA build there; installing PyTorch's CPU wheel elsewhere: README, *Install*).
# Every CPU session installs it: PyTorch parity (tests/test_torch_parity.py,
# tests/test_interop.py) runs for that session's backend; tests/test_kernel_imports.py checks
# that xrnn itself imports and runs without it.
TORCH = "torch==2.13.0"
# backend -> what its session installs beyond xrnn[test]
BACKENDS = {
    "numpy": [TORCH],
    "numpy-nojit": [TORCH],  # the numpy suite with the compiled kernels off (XRNN_JIT=0)
    "array_api_strict": ["array-api-strict>=2.2", TORCH],
    "torch": [TORCH],
    "jax": ["jax[cpu]>=0.4.32", TORCH],  # 64-bit floats are switched on by tests/conftest.py
}


@nox.session
@nox.parametrize("backend", list(BACKENDS))
def tests(session: nox.Session, backend: str) -> None:
    """pytest over one backend (the numpy sessions also run the backend-free tests;
    numpy-nojit with NumPy's compiled step kernels switched off)."""
    session.install("-e", ".[test]", *BACKENDS[backend])
    name, _, variant = backend.partition("-")
    env = {"XRNN_JIT": "0"} if variant == "nojit" else {}
    session.run("pytest", "--backend", name, *session.posargs, env=env)


@nox.session
def dask(session: nox.Session) -> None:
    """The Dask path (xrnn/dask.py) on a dask.distributed LocalCluster: every cell's outputs
    and gradients against NumPy's, laziness, graph size, errors, data-parallel training."""
    session.install("-e", ".[test,dask]")
    session.run("pytest", "--backend", "numpy", "tests/test_dask.py", *session.posargs)


# tests/cuda_build.py drives CuPy's private code generator: CuPy pinned exactly (it checks the
# version and fails when it moves); NVRTC and the CUDA headers from NVIDIA's wheels
GPU_BUILD = [
    "cupy-cuda12x==14.2.0",
    "nvidia-cuda-nvrtc-cu12==12.9.86",
    "nvidia-cuda-runtime-cu12==12.9.79",
]


@nox.session(name="gpu-build")
def gpu_build(session: nox.Session) -> None:
    """Every fused CuPy kernel, both dtypes, CuPy's argument layouts and index widths, compiled
    by NVRTC for sm_80 and sm_90 — on any machine, GPU or not; a float32 kernel with a
    double-precision instruction fails (tests/test_cuda_build.py). CuPy's kernel cache stays
    in the session's temporary directory."""
    session.install("-e", ".[test]", *GPU_BUILD)
    cache = os.path.join(session.create_tmp(), "cupy-kernel-cache")
    env = {"XRNN_GPU_BUILD": "1", "CUPY_CACHE_DIR": cache}
    session.run(
        "pytest", "--backend", "numpy", "tests/test_cuda_build.py", *session.posargs, env=env
    )


def _nvidia_gpu_visible() -> bool:
    return shutil.which("nvidia-smi") is not None or os.path.exists("/dev/nvidiactl")


@nox.session
def cupy(session: nox.Session) -> None:
    """The CuPy backend; skips itself (before installing CuPy) on a machine without a GPU."""
    if not _nvidia_gpu_visible():
        session.skip("no NVIDIA GPU or driver on this machine (no nvidia-smi, no /dev/nvidiactl)")
    session.install("-e", ".[test,gpu]")
    probe = "import cupy; print(cupy.is_available())"
    if "True" not in str(session.run("python", "-c", probe, silent=True)):
        session.skip("cupy.is_available() is false")
    session.run("pytest", "--backend", "cupy", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint and format) on everything, mypy on the package."""
    session.install("ruff>=0.6", "mypy>=1.10", "numpy", "array-api-compat")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy", "xrnn", "_xrnn_entry.py")


# The oldest and newest Python the package claims (requires-python); pyenv's builds of them
# are found where they are not on PATH
PYTHONS = ["3.10", "3.13"]
_pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
for _version in PYTHONS:
    if shutil.which(f"python{_version}") is None:
        for _bin in sorted(glob.glob(os.path.join(_pyenv, "versions", f"{_version}.*", "bin"))):
            os.environ["PATH"] = _bin + os.pathsep + os.environ.get("PATH", "")


@nox.session(name="tests-python", python=PYTHONS)
def tests_python(session: nox.Session) -> None:
    """The numpy suite (compiled kernels; the backend-free tests) on the oldest and newest
    Python claimed, with the newest dependencies each allows; no PyTorch (its CPU build is on
    this index for one Python only). Not in plain ``nox``."""
    session.install("-e", ".[test]")
    session.run("pytest", "--backend", "numpy", *session.posargs)


def _floors() -> list[str]:
    """The core dependencies at the lowest versions pyproject.toml allows (its
    ``dependencies = [...]`` list, each ``"name>=floor"``)."""
    with open("pyproject.toml", encoding="utf-8") as f:
        block = re.search(r"^dependencies = \[(.*?)^\]", f.read(), re.M | re.S)
    assert block is not None, "pyproject.toml has no dependencies list"
    return [f"{name}=={floor}" for name, floor in re.findall(r'"([\w.-]+)>=([\w.]+)"', block[1])]


@nox.session(name="min-deps")
def min_deps(session: nox.Session) -> None:
    """The numpy suite with numpy, array-api-compat, threadpoolctl and numba at their declared
    floors (and PyTorch, for the parity tests). Not in plain ``nox``."""
    session.install("-e", ".[test]", *_floors(), TORCH)
    session.run("pip", "check")
    session.run("pytest", "--backend", "numpy", *session.posargs)


@nox.session
def package(session: nox.Session) -> None:
    """The sdist and wheel built (python -m build) and checked (twine check); not in plain
    ``nox``."""
    session.install("build>=1", "twine>=5")
    out = os.path.join(session.create_tmp(), "dist")
    shutil.rmtree(out, ignore_errors=True)  # this build's files only
    session.run("python", "-m", "build", "--outdir", out, ".")
    session.run("twine", "check", *(os.path.join(out, f) for f in sorted(os.listdir(out))))


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmark suite: xrnn vs the exercise's loop vs torch.nn, table + JSON (+ PNG)."""
    session.install("-e", ".", TORCH, "matplotlib>=3.7")
    session.run("python", "benchmarks/bench.py", *session.posargs)
