"""The examples run: every module's docstring Examples under doctest (NumPy), every page of the
docs as a script (its Python blocks in order), and each of the README's Python blocks alone."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
import subprocess
import sys
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


ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
# the libraries a block's imports need, beyond xrnn's own
NEEDS = {
    "torch": r"^\s*(import|from) (torch|xrnn\.torch)\b",
    "jax": r"^\s*(import|from) jax\b",
    "dask": r"^\s*(import|from) (dask|distributed)\b",
}
# what each script must print (beyond running without an error)
PRINTS = {
    "index": ["(5, 10, 7) (5, 8)\n"],
    "getting-started": [
        "(5, 10, 7) (2, 10, 7) (5, 8)\n",
        "['gru', 'lstm', 'peephole_lstm', 'rnn', 'rnn_relu']\n",
        " float32\n",
        "True\n",
    ],
    "exercise": [
        "10.0 0.2971381536101662\n",
        "126.50397572165",
        " 93\n",
        "True\n",
        "Iteration: 2000, Loss:",
    ],
    "layers": [],  # the falling error is checked below
    "pytorch": [
        "torch.Size([3, 4, 20]) torch.Size([8, 11])\n",
        "torch.Size([20, 4, 16]) torch.Size([4, 4, 8])\nTrue\n",
        "True\nTrue\n",
    ],
    "jax": ["(8, 11)\nTrue\n(4,)\n"],
    "dask": ["(32, 48) (16, 4000, 20)\n20\n"],
    "charlm": ["150 3\n", "True\n"],
    "backends": ["True\n"],
}


def python_blocks(path: Path) -> list[str]:
    """The ```python blocks of a Markdown file, in order."""
    return re.findall(r"```python\n(.*?)```", path.read_text("utf-8"), flags=re.S)


# every page with Python blocks but docs/cells.md, whose first block is a module the second
# imports: tests/cells/test_cells.py runs it that way
PAGES = sorted(p.stem for p in DOCS.glob("*.md") if p.stem != "cells" and python_blocks(p))


def needs(code: str) -> set[str]:
    return {library for library, pattern in NEEDS.items() if re.search(pattern, code, re.M)}


# the pages whose examples need JAX: they run in the JAX session
JAX_PAGES = [p for p in PAGES if "jax" in needs("\n".join(python_blocks(DOCS / f"{p}.md")))]


def run_script(code: str, where: Path) -> str:
    """Run ``code`` as a script file in ``where`` (its own process, ``__name__ == "__main__"``);
    its standard output."""
    for library in sorted(needs(code)):
        pytest.importorskip(library, reason=f"the example imports {library}")
    script = where / "example.py"
    script.write_text(code, "utf-8")
    done = subprocess.run(
        [sys.executable, script.name], cwd=where, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def check_page(page: str, tmp_path: Path) -> None:
    printed = run_script("\n".join(python_blocks(DOCS / f"{page}.md")), tmp_path)
    for expected in PRINTS[page]:
        assert expected in printed, (expected, printed)
    if page == "layers":  # the truncated-BPTT example: the error falls from epoch 0 to 4
        errors = [float(v) for v in re.findall(r"mean squared error ([0-9.]+)", printed)]
        assert len(errors) == 5 and errors[-1] < 0.7 * errors[0], errors


def test_every_page_is_checked():
    assert set(PAGES) == set(PRINTS)


@pytest.mark.parametrize("page", [p for p in PAGES if p not in JAX_PAGES])
def test_page_runs(page, tmp_path):
    check_page(page, tmp_path)


@pytest.mark.backends("jax")
@pytest.mark.parametrize("page", JAX_PAGES)
def test_jax_page_runs(xp, page, tmp_path):
    """Pages whose examples need JAX run in the JAX session (any xp would do)."""
    check_page(page, tmp_path)


README_BLOCKS = python_blocks(README)
README_PRINTS = [
    "(5, 10, 7) (2, 10, 7) (5, 8)\n",
    " float32\n",
    "float32 (16, 19) (32, 4, 50)\n",
]


def test_readme_has_its_examples():
    assert len(README_BLOCKS) == len(README_PRINTS)


@pytest.mark.parametrize("index", range(len(README_BLOCKS)))
def test_readme_block_runs_alone(index, tmp_path):
    printed = run_script(README_BLOCKS[index], tmp_path)
    assert README_PRINTS[index] in printed, printed


def test_the_api_reference_documents_every_public_name():
    """Every name in the public modules' ``__all__`` has a ``::: name`` entry in
    docs/reference/ (a whole module's entry covers its names), so mkdocstrings renders its
    docstring — shapes included — into the site."""
    entries = set()
    for page in (DOCS / "reference").glob("*.md"):
        entries |= set(re.findall(r"^::: ([\w.]+)", page.read_text("utf-8"), flags=re.M))
    modules = {"xrnn.charlm", "xrnn.dask", "xrnn.exercise", "xrnn.interop", "xrnn.torch"}
    public = {f"xrnn.{n}" for n in xrnn.__all__ if f"xrnn.{n}" not in modules}
    for name in sorted(modules):
        public |= {f"{name}.{n}" for n in importlib.import_module(name).__all__}
    lazy = {"xrnn.torch.GRU", "xrnn.torch.LSTM", "xrnn.torch.RNN", "xrnn.torch.Recurrent"}
    missing = [
        name
        for name in sorted(public)
        if name not in entries
        and name.rsplit(".", 1)[0] not in entries  # documented with its whole module
        and not (name in lazy and name.replace("xrnn.torch.", "xrnn.torch.nn.") in entries)
    ]
    assert not missing, f"not in docs/reference/: {missing}"


def test_the_cells_page_shows_the_shipped_peephole_cell():
    """docs/cells.md quotes the peephole LSTM's definition (not run: it is the shipped cell):
    every line of the quote is a line of xrnn/cells/peephole_lstm.py (comments aside)."""
    from xrnn.cells import peephole_lstm

    quote = re.search(
        r"```\n(class PeepholeLSTMCell.*?)```", (DOCS / "cells.md").read_text("utf-8"), re.S
    )
    assert quote is not None

    def code(line: str) -> str:
        return line.split("  #", 1)[0].strip()

    source = {code(line) for line in Path(peephole_lstm.__file__).read_text("utf-8").splitlines()}
    missing = [line for line in quote[1].splitlines() if code(line) not in source]
    assert not missing, missing


def test_the_performance_page_shows_the_benchmark_run_beside_it():
    """docs/performance.md's tables are what ``xrnn bench`` wrote (``bench.md``) for the run
    whose ``bench.json`` the docs ship."""
    import json

    from xrnn.benchmark.table import markdown

    run = json.loads((DOCS / "bench.json").read_text("utf-8"))
    page = (DOCS / "performance.md").read_text("utf-8")
    shown = page.split("<!-- bench.md: generated by xrnn bench from bench.json -->\n", 1)[1]
    shown = shown.split("<!-- end of bench.md -->", 1)[0]
    assert shown == markdown(run["rows"], run["machine"])
