"""Regenerate the ``gru_forward_backward`` case of golden.json from PyTorch's ``nn.GRU``.

The exercise publishes no GRU values, so this case's values come from an independent implementation,
computed once with torch 2.13 in float64 under the golden protocol (the draws of ``golden.draws``).
Run ``python -m tests.make_gru_golden`` (from the repository root) to print the case's JSON.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from tests.golden import draws

CASE = {
    "name": "gru_forward_backward",
    "draws": [
        ["x", [3, 10, 4]],
        ["a0", [5, 10]],
        ["Wr", [5, 8]],
        ["br", [5, 1]],
        ["Wz", [5, 8]],
        ["bz", [5, 1]],
        ["Wn", [5, 8]],
        ["bn", [5, 1]],
        ["bhn", [5, 1]],
        ["Wy", [2, 5]],
        ["by", [2, 1]],
        ["da", [5, 10, 4]],
    ],
    "outputs": ["a", "y", "caches", "gradients"],
}


def main() -> None:
    d = draws(CASE)
    n_a = 5
    gru = torch.nn.GRU(3, n_a, dtype=torch.float64)
    with torch.no_grad():
        gru.weight_ih_l0.copy_(
            torch.tensor(np.concatenate([d[w][:, n_a:] for w in "Wr Wz Wn".split()]))
        )
        gru.weight_hh_l0.copy_(
            torch.tensor(np.concatenate([d[w][:, :n_a] for w in "Wr Wz Wn".split()]))
        )
        gru.bias_ih_l0.copy_(torch.tensor(np.concatenate([d[b][:, 0] for b in "br bz bn".split()])))
        gru.bias_hh_l0.copy_(torch.tensor(np.concatenate([np.zeros(2 * n_a), d["bhn"][:, 0]])))
    x = torch.tensor(d["x"].transpose(2, 1, 0), requires_grad=True)
    h0 = torch.tensor(d["a0"].T[None], requires_grad=True)
    out, _ = gru(x, h0)
    (out * torch.tensor(d["da"].transpose(2, 1, 0))).sum().backward()
    a = out.detach().numpy().transpose(2, 1, 0)
    z = np.einsum("ya,amt->ymt", d["Wy"], a) + d["by"][:, :, None]
    y = np.exp(z - z.max(0)) / np.exp(z - z.max(0)).sum(0)
    dWn = np.concatenate(
        [gru.weight_hh_l0.grad.numpy()[2 * n_a :], gru.weight_ih_l0.grad.numpy()[2 * n_a :]], 1
    )
    expected = [
        {"output": "a", "index": [4, 1], "value": a[4, 1].tolist()},
        {"output": "y", "index": [1, 3], "value": y[1, 3].tolist()},
        {
            "output": "gradients",
            "key": "dx",
            "index": [1, 2],
            "value": x.grad.numpy().transpose(2, 1, 0)[1, 2].tolist(),
        },
        {
            "output": "gradients",
            "key": "da0",
            "index": [2],
            "value": h0.grad.numpy()[0].T[2].tolist(),
        },
        {"output": "gradients", "key": "dWn", "index": [3], "value": dWn[3].tolist()},
        {
            "output": "gradients",
            "key": "dbhn",
            "index": [1],
            "value": gru.bias_hh_l0.grad.numpy()[2 * n_a + 1 : 2 * n_a + 2].tolist(),
        },
        {
            "output": "gradients",
            "key": "dbr",
            "index": [0],
            "value": gru.bias_ih_l0.grad.numpy()[0:1].tolist(),
        },
    ]
    print(
        json.dumps(
            {
                **CASE,
                "source": "torch 2.13 nn.GRU, float64 (tests/make_gru_golden.py)",
                "expected": expected,
            }
        )
    )


if __name__ == "__main__":
    main()
