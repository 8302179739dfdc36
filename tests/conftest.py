"""The backend matrix: an ``xp`` fixture parametrised over every available array backend.

``--backend NAME`` (repeatable; nox passes one per session) restricts the matrix. Backends:
``numpy``, ``array_api_strict`` (its default device), ``array_api_strict-device1`` (its second
device: the CPU stand-in that proves no silent device copies), ``torch`` (CPU tensors, and CUDA
tensors when CUDA is available), ``jax`` (its default device, with 64-bit floats enabled so the
float64 suites mean float64) and ``cupy`` (only where ``cupy.is_available()``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import settings

import xrnn


@dataclass(frozen=True)
class Backend:
    """One cell of the matrix: a namespace, a device, and host conversions for the tests."""

    name: str
    xp: Any
    device: Any

    def asarray(self, a: Any, dtype: str = "float64") -> Any:
        host = np.asarray(a, dtype=dtype)
        if self.name.startswith("torch"):
            import torch

            return torch.asarray(host, device=self.device)
        if self.name == "jax":  # the same array; jnp.asarray(device=) takes 4x as long
            import jax

            return jax.device_put(host, self.device)
        return self.xp.asarray(host, device=self.device)

    def params(self, host: dict[str, Any], dtype: str = "float64") -> dict[str, Any]:
        return {k: self.asarray(v, dtype) for k, v in host.items()}

    def to_numpy(self, a: Any) -> np.ndarray:
        from xrnn.core.host import to_numpy

        return np.asarray(to_numpy(a))

    def dtype(self, name: str) -> Any:
        return getattr(self.xp, name)


def _strict_setup():
    xs = importlib.import_module("array_api_strict")
    # The strictest flags: no boolean indexing, no data-dependent output shapes.
    xs.set_array_api_strict_flags(boolean_indexing=False, data_dependent_shapes=False)
    return xs


def all_backends() -> list[Backend]:
    import array_api_compat

    out = [Backend("numpy", array_api_compat.array_namespace(np.empty(0)), "cpu")]
    available = xrnn.available_backends()
    if "array_api_strict" in available:
        xs = _strict_setup()
        out.append(Backend("array_api_strict", xs, xs.Device("CPU_DEVICE")))
        out.append(Backend("array_api_strict-device1", xs, xs.Device("device1")))
    if "torch" in available:
        import torch

        xt = array_api_compat.array_namespace(torch.empty(0))
        out.append(Backend("torch", xt, torch.device("cpu")))
        if torch.cuda.is_available():
            out.append(Backend("torch-cuda", xt, torch.device("cuda")))
    if "jax" in available:
        import jax

        jax.config.update("jax_enable_x64", True)  # float64 tests must not silently run float32
        xj = array_api_compat.array_namespace(jax.numpy.zeros(1))
        out.append(Backend("jax", xj, jax.devices()[0]))
    if "cupy" in available:
        import cupy

        xc = array_api_compat.array_namespace(cupy.empty(0))
        out.append(Backend("cupy", xc, cupy.cuda.Device(0)))
    return out


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "backends(*names): run the xp-parametrised test only on these backends"
    )
    # Property tests draw 20 examples; a session of JAX alone draws 8, as every example is a
    # new shape that JAX compiles anew
    settings.register_profile("default", max_examples=20)
    settings.register_profile("jax", max_examples=8)
    wanted = config.getoption("--backend")
    settings.load_profile("jax" if wanted and all(w == "jax" for w in wanted) else "default")


def pytest_addoption(parser):
    parser.addoption(
        "--backend",
        action="append",
        default=[],
        help="run the backend matrix only for these backends (prefix match: 'torch', "
        "'array_api_strict' selects both of its devices)",
    )
    parser.addoption(
        "--no-backend-free",
        action="store_true",
        help="run only the backend-parametrised tests, also with --backend numpy (the "
        "numpy-nojit session: the backend-free tests ran in the numpy session)",
    )


_BACKENDS = all_backends()


def pytest_collection_modifyitems(config, items):
    """With ``--backend`` naming no ``numpy`` (or with ``--no-backend-free``), run only the
    backend-parametrised tests: the backend-free ones run once, in the numpy session."""
    wanted = config.getoption("--backend")
    if (not wanted or "numpy" in wanted) and not config.getoption("--no-backend-free"):
        return
    keep = [i for i in items if "xp" in getattr(i, "fixturenames", ())]
    config.hook.pytest_deselected(items=[i for i in items if i not in keep])
    items[:] = keep


def pytest_generate_tests(metafunc):
    if "xp" in metafunc.fixturenames:
        wanted = metafunc.config.getoption("--backend")
        chosen = [b for b in _BACKENDS if not wanted or any(b.name.startswith(w) for w in wanted)]
        only = metafunc.definition.get_closest_marker("backends")
        if only is not None:  # @pytest.mark.backends("jax", ...): the test is for these alone
            chosen = [b for b in chosen if any(b.name.startswith(n) for n in only.args)]
            if not chosen:  # an empty parameter set: pytest reports the test as skipped
                metafunc.parametrize("xp", [], ids=[])
                return
        if wanted and not chosen:
            raise pytest.UsageError(
                f"--backend {wanted}: none of these is available here "
                f"(available: {[b.name for b in _BACKENDS]})"
            )
        metafunc.parametrize("xp", chosen, ids=[b.name for b in chosen])


class WholeSmallCalls:
    """The NumPy backend's whole calls of small steps (``JitOps.forward_small``,
    ``backward_small``) recorded as they run (``ran``: "forward", "backward", or "declined"),
    or, after :meth:`decline`, declined every time (the engine's own loops run instead)."""

    def __init__(self, monkeypatch: Any) -> None:
        from xrnn.backends.numpy import jit

        self._patch, self._ops, self.ran = monkeypatch, jit.JitOps, []
        for name in ("forward", "backward"):
            monkeypatch.setattr(jit.JitOps, f"{name}_small", self._recorded(name))

    def _recorded(self, name: str) -> Any:
        real = getattr(self._ops, f"{name}_small")

        def run(*args: Any) -> Any:
            made = real(*args)
            self.ran.append(name if made is not None else "declined")
            return made

        return run

    def decline(self) -> None:
        for name in ("forward", "backward"):
            self._patch.setattr(self._ops, f"{name}_small", lambda *args: None)


@pytest.fixture
def whole_small_calls(monkeypatch):
    """:class:`WholeSmallCalls` (skipped where the compiled kernels are off)."""
    if not xrnn.backends.jit_enabled():
        pytest.skip("compiled kernels off (XRNN_JIT=0)")
    return WholeSmallCalls(monkeypatch)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def assert_close(actual: Any, expected: Any, backend: Backend, *, rtol=1e-7, atol=1e-9, dtype=None):
    """Values close to ``expected`` (NumPy), and ``actual`` of the backend's library, device
    and the expected dtype (``dtype`` name, default float64)."""
    import array_api_compat

    assert array_api_compat.array_namespace(actual) is backend.xp, (
        f"result is from {array_api_compat.array_namespace(actual).__name__}, "
        f"expected {backend.xp.__name__}"
    )
    assert array_api_compat.device(actual) == backend.device
    assert actual.dtype == backend.dtype(dtype or "float64")
    np.testing.assert_allclose(backend.to_numpy(actual), expected, rtol=rtol, atol=atol)
