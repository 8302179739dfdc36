"""Regenerate the ``peephole_lstm_forward_backward`` case of golden.json.

No published values exist for the peephole LSTM, so this case's values come from an
independent implementation: the math written out step by step in PyTorch and differentiated by
torch.autograd (``tests/peephole_reference.py``), float64, under the golden protocol (the draws
of ``golden.draws``; the peepholes drawn like every other parameter, so they are not zero).
Run ``python -m tests.make_peephole_golden`` (from the repository root) to print the case's JSON.
"""

from __future__ import annotations

import json

import numpy as np

from tests import peephole_reference
from tests.golden import draws

CASE = {
    "name": "peephole_lstm_forward_backward",
    "draws": [
        ["x", [3, 10, 4]],
        ["a0", [5, 10]],
        ["c0", [5, 10]],
        ["Wf", [5, 8]],
        ["bf", [5, 1]],
        ["Wi", [5, 8]],
        ["bi", [5, 1]],
        ["Wc", [5, 8]],
        ["bc", [5, 1]],
        ["Wo", [5, 8]],
        ["bo", [5, 1]],
        ["pf", [5, 1]],
        ["pi", [5, 1]],
        ["po", [5, 1]],
        ["Wy", [2, 5]],
        ["by", [2, 1]],
        ["da", [5, 10, 4]],
    ],
    "outputs": ["a", "y", "c", "caches", "gradients"],
}


def main() -> None:
    d = draws(CASE)
    ref = peephole_reference.run(d, d["x"], d["a0"], d["c0"], d["da"])
    a, g = ref["a"], ref["grads"]
    z = np.einsum("ya,amt->ymt", d["Wy"], a) + d["by"][:, :, None]
    y = np.exp(z - z.max(0)) / np.exp(z - z.max(0)).sum(0)
    expected = [
        {"output": "a", "index": [4, 1], "value": a[4, 1].tolist()},
        {"output": "c", "index": [2, 7], "value": ref["c"][2, 7].tolist()},
        {"output": "y", "index": [1, 3], "value": y[1, 3].tolist()},
        *(
            {
                "output": "gradients",
                "key": key,
                "index": index,
                "value": g[key][tuple(index)].tolist(),
            }
            for key, index in (
                ("dx", [1, 2]),
                ("da0", [2]),
                ("dc0", [3]),
                ("dWf", [3]),
                ("dWo", [0]),
                ("dbi", [1]),
                ("dbc", [4]),
                ("dpf", [0]),
                ("dpi", [2]),
                ("dpo", [4]),
            )
        ),
    ]
    source = "PyTorch autograd through the math written out (tests/make_peephole_golden.py)"
    print(json.dumps({**CASE, "source": source, "expected": expected}))


if __name__ == "__main__":
    main()
