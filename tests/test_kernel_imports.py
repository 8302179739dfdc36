"""The kernels are written against the array API: no kernel module imports NumPy itself.

Only the NumPy backend's package ``xrnn/backends/numpy/`` (the backend, pure and compiled, the
compiled loops' second thread, their private BLAS, and the kernels generated from a cell's
elementwise math) and ``xrnn/core/host.py`` (host-side seeded draws and copies, no kernels) may; the
application layers ``xrnn.charlm`` and ``xrnn.exercise`` use NumPy for host-side work — random draws
and ``.npz`` files; the notebook's ``np.random`` protocols — by design, and ``xrnn.benchmark`` times
NumPy code (the exercise's loops).

Imports point down the package's layers, and the backends name no cell.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "xrnn"
ALLOWED = {"core/host.py", "exercise.py"}
KERNEL_MODULES = sorted(
    p
    for p in PACKAGE.rglob("*.py")
    if not {"charlm", "benchmark"} & set(p.parts)
    and p.parent != PACKAGE / "backends" / "numpy"
    and str(p.relative_to(PACKAGE)) not in ALLOWED
)


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", KERNEL_MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_kernel_module_does_not_import_numpy(path):
    assert "numpy" not in _imports(path)


def test_the_check_sees_the_kernel_modules():
    names = {str(p.relative_to(PACKAGE)) for p in KERNEL_MODULES}
    assert {"lstm.py", "cells/lstm.py", "cells/base.py", "core/engine.py", "core/ops.py"} <= names
    assert {"backends/__init__.py", "backends/torch/__init__.py"} <= names
    assert "numpy" in _imports(PACKAGE / "backends" / "numpy" / "__init__.py")


def _xrnn_imports(path: Path) -> set[str]:
    """The ``xrnn.*`` modules ``path`` imports (absolute imports)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("xrnn"):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("xrnn")}
    return names


# Each layer imports only from layers below it (charlm may use everything below it, never the
# top-level package, which lazily imports charlm).
LAYERS = [
    {
        "xrnn.core",
        "xrnn.core.activations",
        "xrnn.core.host",
        "xrnn.core.inputs",
        "xrnn.core.layout",
        "xrnn.core.ops",  # the backend interface: how steps are run and stored
        "xrnn.core.tuning",  # every threshold of the loops
        "xrnn.backends",  # the registry: which backend serves an array
        "xrnn.cells.trace",  # a cell's math traced: no array, no cell
        "xrnn.torch",  # which calls run as one PyTorch operator or on NumPy views: no torch
        "xrnn.jax",
    },
    {"xrnn.core.threads"},
    {"xrnn.core.params"},
    {"xrnn.cells.base"},  # the cell contract and the registry
    {"xrnn.cells.elementwise"},  # the contract of cells written as elementwise math
    # one module per cell
    {
        "xrnn.cells",
        "xrnn.cells.rnn",
        "xrnn.cells.lstm",
        "xrnn.cells.gru",
        "xrnn.cells.peephole_lstm",
    },
    {"xrnn.jax.scan"},  # any cell's loops as lax.scan (the engine's path on JAX arrays)
    # each calls the other (the Dask path runs the engine per chunk; the PyTorch operator and
    # the forward on CPU tensors run the engine's forward and backward)
    {"xrnn.core.engine", "xrnn.dask", "xrnn.torch.autograd", "xrnn.torch.host"},
    {
        "xrnn.rnn",  # the exercise's functions over each built-in cell
        "xrnn.lstm",
        "xrnn.gru",
        "xrnn.api",  # the generic functions over any cell
        "xrnn.backends.numpy",
        "xrnn.backends.numpy.cblas",  # BLAS from compiled code, a private copy: no cell
        "xrnn.backends.numpy.lockstep",  # the helper threads: no cell
        "xrnn.backends.numpy.generated",  # kernels generated from a cell's traced math: no cell
        "xrnn.backends.cupy",
        "xrnn.backends.torch",
        "xrnn.backends.jax",
    },
    {"xrnn.backends.numpy.jit"},  # compiled kernels over the NumPy backend's storage
    {"xrnn.layers"},
    {"xrnn.interop", "xrnn.torch.nn"},  # PyTorch modules ↔ layers; torch.nn drop-ins
]


def _layer(module: str) -> int:
    for i, layer in enumerate(LAYERS):
        if module in layer:
            return i
    raise KeyError(module)


@pytest.mark.parametrize("module", sorted(set().union(*LAYERS)))
def test_imports_point_down_the_layers(module):
    path = PACKAGE.parent / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = PACKAGE.parent / module.replace(".", "/") / "__init__.py"
    for imported in _xrnn_imports(path):
        if module == "xrnn.backends" and imported in {
            "xrnn.core.ops",
            "xrnn.backends.numpy",
            "xrnn.backends.numpy.jit",
            "xrnn.backends.torch",
            "xrnn.backends.cupy",
            "xrnn.backends.jax",
        }:
            continue  # get_ops: the registry's lazy import of a backend when first asked for
        assert _layer(imported) <= _layer(module), f"{module} imports {imported} from above"
        assert imported != "xrnn", f"{module} imports the top-level package"


def _module_level_imports(path: Path) -> set[str]:
    """The ``xrnn`` modules ``path`` imports when it is imported: its top-level statements
    (an import inside a function runs only when called)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("xrnn"):
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}  # from pkg import module
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("xrnn")}
    return names


def test_no_import_cycles():
    """Importing any module of the package never comes back to itself through the
    module-level imports of others (a cycle would leave one of them half-initialised)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    # (a package's __init__ importing its own submodules is no cycle: Python registers the
    # package before running it, and a submodule that needs it finds it there)
    graph = {
        m: {i for i in _module_level_imports(p) if i in modules and i != m}
        for m, p in modules.items()
    }
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for nxt in sorted(graph[module]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt) :] + [nxt] if nxt in path else [module, nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_charlm_does_not_import_the_top_level_package():
    for path in (PACKAGE / "charlm").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                assert "xrnn" not in {a.name for a in node.names}, path


def test_xrnn_imports_and_runs_without_torch():
    """torch is an optional extra: with it unimportable, xrnn, its layers and the interop
    module import, a layer runs, and from_torch says what is missing."""
    import subprocess
    import sys

    code = """
import sys
sys.modules["torch"] = None  # import torch now raises ImportError
import numpy as np, xrnn, xrnn.interop, xrnn.exercise
from xrnn import charlm
out, a_n = xrnn.GRU(3, 4, num_layers=2)(np.zeros((3, 2, 5)))
assert out.shape == (4, 2, 5)
try:
    xrnn.interop.from_torch(object())
except ImportError as exc:
    assert "pip install torch" in str(exc), exc
else:
    raise AssertionError("from_torch without torch did not raise")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# Backends serve every cell from its definition (the kernels generated from its elementwise
# math) and name none: no identifier holding a cell's name, no string that is one.
CELL_WORDS = ("rnn", "lstm", "gru")


def _cell_names(path: Path) -> set[str]:
    """The identifiers (names, definitions, attributes) containing a built-in cell's name, and
    the strings that are one, in ``path``'s code (comments and docstrings aside)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value.lower() in (*CELL_WORDS, "rnn_relu"):
                found.add(repr(node.value))
            continue
        name = {
            ast.Name: "id",
            ast.Attribute: "attr",
            ast.FunctionDef: "name",
            ast.ClassDef: "name",
        }
        key = next((k for t, k in name.items() if isinstance(node, t)), None)
        if key is not None:
            word = getattr(node, key).lower().replace("xrnn", "")
            if any(w in word for w in CELL_WORDS):
                found.add(getattr(node, key))
    return found


BACKENDS = PACKAGE / "backends"


@pytest.mark.parametrize(
    "path", sorted(BACKENDS.rglob("*.py")), ids=lambda p: str(p.relative_to(BACKENDS))
)
def test_backends_name_no_cell(path):
    found = _cell_names(path)
    assert not found, f"{path.relative_to(PACKAGE.parent)} names cells: {sorted(found)}"
