"""The examples run: every module's docstring Examples under doctest (NumPy), and the README's
Python blocks."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import xrnn

# Backend modules import their optional library at the top and hold no examples; importing
# xrnn.__main__ runs the CLI.
MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(xrnn.__path__, "xrnn.")
    if not m.name.startswith("xrnn.backends.") and m.name != "xrnn.__main__"  # runs the CLI
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    if name == "xrnn.dask":
        pytest.importorskip("dask.array", reason="xrnn.dask's examples need dask (nox -s dask)")
    for library in ("jax", "torch"):  # modules for one library import it at the top
        if name.startswith(f"xrnn.{library}."):
            pytest.importorskip(library, reason=f"{name} needs {library}")
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


README = Path(__file__).resolve().parents[1] / "README.md"


def readme_blocks(section: str) -> list[str]:
    """The ```python blocks under the README heading ``## <section>``, in order."""
    text = README.read_text("utf-8")
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    body = text[start : end if end >= 0 else len(text)]
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


def _needs_gpu(block: str) -> bool:
    return "cuda" in block or "import cupy" in block


def _gpu_available() -> bool:
    import xrnn

    if "cupy" not in xrnn.available_backends():
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def run_readme(sections: tuple[str, ...], *, gpu: bool = False) -> None:
    """Run the Python blocks of ``sections`` in order, in one namespace (later sections use
    earlier ones' variables); GPU blocks only with ``gpu``."""
    namespace: dict = {}
    for section in sections:
        blocks = readme_blocks(section)
        assert blocks, f"no python blocks under ## {section}"
        for block in blocks:
            if _needs_gpu(block) and not gpu:
                continue
            exec(compile(block, f"README.md ({section})", "exec"), namespace)


LAYERS = "Layers"
TBPTT = "Initial states and truncated backpropagation through time"
EXERCISE = "The exercise's second part (Dinosaur Island)"


@pytest.mark.parametrize(
    "sections, gpu",
    [
        (("Quickstart",), False),
        pytest.param(
            ("Quickstart",),
            True,
            marks=pytest.mark.skipif(not _gpu_available(), reason="needs CuPy and torch CUDA"),
            id="Quickstart-gpu",
        ),
        ((EXERCISE,), False),
        ((LAYERS, TBPTT), False),
    ],
    ids=["Quickstart", "Quickstart-gpu", "exercise", "layers-tbptt"],
)
def test_readme_examples_run(sections, gpu, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the examples save files
    run_readme(sections, gpu=gpu)
    printed = capsys.readouterr().out
    if EXERCISE in sections:  # the values the README quotes
        assert "10.0 0.2971381536101662" in printed
        assert "126.50397572165" in printed and " 93\n" in printed
        assert "True\n" in printed and "Iteration: 2000, Loss:" in printed
    if TBPTT in sections:  # the error falls from the first epoch to the last
        errors = [float(v) for v in re.findall(r"mean squared error ([0-9.]+)", printed)]
        assert len(errors) == 5 and errors[-1] < 0.7 * errors[0], errors


@pytest.mark.backends("torch")
def test_readme_pytorch_example_runs(xp, tmp_path, monkeypatch):
    """The interop example needs torch: it runs in the torch session (any xp would do)."""
    monkeypatch.chdir(tmp_path)
    run_readme((LAYERS, "PyTorch weights"))


@pytest.mark.backends("torch")
def test_readme_autograd_example_runs(xp, capsys):
    run_readme(("Gradients inside PyTorch programs",))
    printed = capsys.readouterr().out
    assert "torch.Size([3, 4, 20]) torch.Size([8, 11])" in printed
    assert "torch.Size([20, 4, 16]) torch.Size([4, 4, 8])\nTrue\n" in printed


@pytest.mark.backends("jax")
def test_readme_jax_example_runs(xp, capsys):
    run_readme(("Gradients inside JAX programs",))
    assert capsys.readouterr().out == "(8, 11)\nTrue\n"
