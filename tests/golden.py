"""The one golden protocol shared by every backend: draw, call, index (see golden.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

import xrnn

CASES = json.loads((Path(__file__).with_name("golden.json")).read_text())["cases"]
PARAMETER_KEYS = {
    "Wr",
    "br",
    "Wz",
    "bz",
    "Wn",
    "bn",
    "bhn",
    "Wax",
    "Waa",
    "ba",
    "Wya",
    "by",
    "Wf",
    "bf",
    "Wi",
    "bi",
    "Wo",
    "bo",
    "Wc",
    "bc",
    "Wy",
    "pf",
    "pi",
    "po",
}


def draws(case: dict) -> dict[str, np.ndarray]:
    """The case's inputs, drawn from NumPy's legacy seeded stream in the listed order."""
    np.random.seed(1)
    return {name: np.random.randn(*shape) for name, shape in case["draws"]}


def run(case: dict, backend: Any, dtype: str = "float64") -> dict[str, Any]:
    """Call the case's functions on ``backend``; return its named outputs."""
    host = draws(case)
    parameters = backend.params({k: v for k, v in host.items() if k in PARAMETER_KEYS}, dtype)
    d = {k: backend.asarray(v, dtype) for k, v in host.items() if k not in PARAMETER_KEYS}
    name = case["name"]
    if name == "rnn_cell_forward":
        out = xrnn.rnn_cell_forward(d["xt"], d["a_prev"], parameters)
    elif name == "rnn_forward":
        out = xrnn.rnn_forward(d["x"], d["a0"], parameters)
    elif name == "lstm_forward":
        out = xrnn.lstm_forward(d["x"], d["a0"], parameters)
    elif name == "lstm_cell_forward_backward":
        out = xrnn.lstm_cell_forward(d["xt"], d["a_prev"], d["c_prev"], parameters)
        out = (*out, xrnn.lstm_cell_backward(d["da_next"], d["dc_next"], out[3]))
    elif name == "rnn_backward":
        out = xrnn.rnn_forward(d["x"], d["a0"], parameters)
        out = (*out, xrnn.rnn_backward(d["da"], out[2]))
    elif name == "gru_forward_backward":
        out = xrnn.gru_forward(d["x"], d["a0"], parameters)
        out = (*out, xrnn.gru_backward(d["da"], out[2]))
    elif name == "peephole_lstm_forward_backward":
        out = xrnn.forward("peephole_lstm", d["x"], d["a0"], parameters, c0=d["c0"])
        out = (*out, xrnn.backward(d["da"], out[3]))
    else:
        raise KeyError(f"golden.json names an unknown case {name!r}")
    return dict(zip(case["outputs"], out, strict=True))


def pick(outputs: dict[str, Any], expected: dict) -> Any:
    """The indexed value one ``expected`` entry names (before conversion to NumPy)."""
    value = outputs[expected["output"]]
    if "key" in expected:
        value = value[expected["key"]]
    for i in expected["index"]:
        # tuples index plainly; arrays with every axis (array-api-strict refuses flat indexing)
        value = value[i] if isinstance(value, tuple | list) else value[i, ...]
    return value
