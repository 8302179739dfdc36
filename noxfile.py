"""Test matrix, lint and benchmarks. Plain ``nox`` runs the CPU matrix (which includes the CuPy
backend emulated on the CPU), the Dask session, the GPU build (every CUDA kernel compiled, no
GPU needed), the CuPy session (which skips itself without a GPU), lint and the documentation
site, as many sessions at a time as there are CPUs. By name only: the oldest and newest Python
(``tests-python``), the dependency floors (``min-deps``), the package build (``package``) and
the benchmarks (``bench``)."""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil

import nox

nox.options.sessions = ["tests", "dask", "gpu-build", "cupy", "lint", "docs"]
nox.options.error_on_missing_interpreters = True
if hasattr(nox.options, "parallel"):  # nox >= 2026.10: sessions side by side, one per CPU
    nox.options.parallel = "auto"
    nox.options.allow_parallel = True


@contextlib.contextmanager
def _one_at_a_time():
    """Installing the project writes its metadata (``*.egg-info``) into the source tree:
    sessions running side by side take turns (a lock file in nox's envdir). Without
    ``fcntl`` there is no lock: run the sessions one at a time there (``nox -j 1``)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    os.makedirs(".nox", exist_ok=True)
    with open(os.path.join(".nox", "install.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _dependencies(extras: str) -> list[str]:
    """pyproject.toml's dependencies and those of ``extras`` (comma-separated)."""
    try:
        import tomllib
    except ImportError:  # Python 3.10: the project's own install brings them
        return []
    with open("pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    optional = project.get("optional-dependencies", {})
    return [*project["dependencies"], *(r for e in extras.split(",") if e for r in optional[e])]


def install_project(session: nox.Session, extras: str, *requirements: str) -> None:
    """The project, editable with ``extras``, and ``requirements``: the dependencies side by
    side with other sessions, the project's own (metadata-writing) install in turn."""
    session.install(*_dependencies(extras), *requirements)
    with _one_at_a_time():
        session.install("-e", f".[{extras}]" if extras else ".", *requirements)


# The sessions pin the oldest PyTorch the package supports (pyproject: torch>=2.13,<3), whose
# CPU build is what the package index CI uses resolves it to (a newer torch resolves to a
# multi-GB CUDA build there; PyTorch's CPU wheel elsewhere: docs/getting-started.md).
# Every CPU session installs it: PyTorch parity (tests/torch/test_torch_parity.py,
# tests/test_interop.py) runs for that session's backend; tests/test_kernel_imports.py checks
# that xrnn itself imports and runs without it.
TORCH = "torch==2.13.0"
# backend -> what its session installs beyond xrnn[test]; the longest first, as the sessions
# run side by side
BACKENDS = {
    "jax": ["jax[cpu]>=0.4.32", TORCH],  # 64-bit floats are switched on by tests/conftest.py
    "numpy": [TORCH],
    "numpy-nojit": [TORCH],  # the numpy backend's tests, compiled kernels off (XRNN_JIT=0)
    "array_api_strict": ["array-api-strict>=2.2", TORCH],
    "torch": [TORCH],
}
# Sessions run side by side: torch's OpenMP threads wait for work without spinning, which would
# take the cores the other session needs
SIDE_BY_SIDE = {"OMP_WAIT_POLICY": "PASSIVE"}


@nox.session
@nox.parametrize("backend", list(BACKENDS))
def tests(session: nox.Session, backend: str) -> None:
    """pytest over one backend (the numpy session also runs the backend-free tests;
    numpy-nojit runs the backend's tests with NumPy's compiled step kernels switched off)."""
    install_project(session, "test", *BACKENDS[backend])
    name, _, variant = backend.partition("-")
    env = dict(SIDE_BY_SIDE)
    options = ["--backend", name]
    if variant == "nojit":
        env["XRNN_JIT"] = "0"
        options.append("--no-backend-free")  # they ran in the numpy session
    session.run("pytest", *options, *session.posargs, env=env)


@nox.session
def dask(session: nox.Session) -> None:
    """The Dask path (xrnn/dask.py) on a dask.distributed LocalCluster: every cell's outputs
    and gradients against NumPy's, laziness, graph size, errors, data-parallel training; the
    docs' Dask page."""
    install_project(session, "test,dask")
    page = "tests/test_docs.py::test_page_runs[dask]"  # the docs' Dask page, run as a script
    session.run(
        "pytest",
        "--backend",
        "numpy",
        "tests/test_dask.py",
        page,
        *session.posargs,
        env=SIDE_BY_SIDE,
    )


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
    double-precision instruction fails (tests/backends/cupy/test_cuda_build.py). CuPy's kernel
    cache stays in the session's temporary directory."""
    install_project(session, "test", *GPU_BUILD)
    cache = os.path.join(session.create_tmp(), "cupy-kernel-cache")
    env = {"XRNN_GPU_BUILD": "1", "CUPY_CACHE_DIR": cache}
    test = "tests/backends/cupy/test_cuda_build.py"
    session.run("pytest", "--backend", "numpy", test, *session.posargs, env=env)


def _nvidia_gpu_visible() -> bool:
    return shutil.which("nvidia-smi") is not None or os.path.exists("/dev/nvidiactl")


@nox.session
def cupy(session: nox.Session) -> None:
    """The CuPy backend; skips itself (before installing CuPy) on a machine without a GPU."""
    if not _nvidia_gpu_visible():
        session.skip("no NVIDIA GPU or driver on this machine (no nvidia-smi, no /dev/nvidiactl)")
    install_project(session, "test,gpu")
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
# are found where they are not on PATH, or only as pyenv's shims (which run the version that
# pyenv selects, not necessarily this one)
PYTHONS = ["3.10", "3.13"]
_pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
for _version in PYTHONS:
    _found = shutil.which(f"python{_version}")
    if _found is None or os.path.dirname(_found) == os.path.join(_pyenv, "shims"):
        for _bin in sorted(glob.glob(os.path.join(_pyenv, "versions", f"{_version}.*", "bin"))):
            os.environ["PATH"] = _bin + os.pathsep + os.environ.get("PATH", "")


@nox.session(name="tests-python", python=PYTHONS)
def tests_python(session: nox.Session) -> None:
    """The numpy suite (compiled kernels; the backend-free tests) on the oldest and newest
    Python claimed, with the newest dependencies each allows; no PyTorch (its CPU build is on
    this index for one Python only). Not in plain ``nox``."""
    install_project(session, "test")
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
    install_project(session, "test", *_floors(), TORCH)
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


DOCS = ["mkdocs>=1.6,<2", "mkdocs-material>=9.5,<10", "mkdocstrings[python]>=0.26,<2"]


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site (MkDocs, Material theme, the API reference by mkdocstrings from
    the numpydoc docstrings) built into ``site/``, any warning an error (``strict`` in
    mkdocs.yml). Its examples run in the test suite (tests/test_docs.py)."""
    install_project(session, "", *DOCS)
    session.run(
        "mkdocs", "build", "--strict", "--site-dir", "site", env={"NO_MKDOCS_2_WARNING": "1"}
    )


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmark suite: xrnn vs the exercise's loop vs torch.nn, table + JSON (+ PNG)."""
    install_project(session, "", TORCH, "matplotlib>=3.7")
    session.run("python", "benchmarks/bench.py", *session.posargs)
