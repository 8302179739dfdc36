"""The kernels are written against the array API: no kernel module imports NumPy itself.

Only ``xrnn/backends/numpy.py`` (the NumPy backend) may; the application layer ``xrnn.charlm``
uses NumPy for host-side work — random draws and ``.npz`` files — by design.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "xrnn"
ALLOWED = {"backends/numpy.py"}
KERNEL_MODULES = sorted(
    p
    for p in PACKAGE.rglob("*.py")
    if "charlm" not in p.parts and str(p.relative_to(PACKAGE)) not in ALLOWED
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
    assert {"lstm.py", "rnn.py", "ops.py", "bptt.py", "backends/__init__.py"} <= names
    assert "numpy" in _imports(PACKAGE / "backends" / "numpy.py")
