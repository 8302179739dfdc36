"""An independent peephole LSTM for the tests: its math written out step by step in PyTorch,
differentiated by torch.autograd (float64), with per-sequence lengths and reverse time as
xrnn defines them (a sequence's state is carried unchanged past its length, its outputs are
zero there; ``reverse`` runs each sequence backwards over its own length)."""

from __future__ import annotations

import numpy as np

KEYS = ("Wf", "bf", "Wi", "bi", "Wc", "bc", "Wo", "bo", "pf", "pi", "po")


def run(p, x, a0, c0, da, *, lengths=None, reverse=False, dfinal=None):
    """Outputs, final states and the gradients of ``Σ a ∗ da (+ Σ final ∗ dfinal)``."""
    import torch

    def t(a):
        return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)

    tp = {k: t(p[k]) for k in KEYS}
    tx, ta0, tc0 = t(x), t(a0), t(c0)
    n_x, m, T = x.shape
    L = [T] * m if lengths is None else list(lengths)
    # step t of sequence j reads position order[j][t]
    order = [
        [(L[j] - 1 - s if s < L[j] else s) if reverse else s for s in range(T)] for j in range(m)
    ]
    a, c = ta0, tc0
    out_a = [[None] * T for _ in range(m)]
    out_c = [[None] * T for _ in range(m)]
    for s in range(T):
        xs = torch.stack([tx[:, j, order[j][s]] for j in range(m)], dim=1)
        z = torch.cat([a, xs], dim=0)
        f = torch.sigmoid(tp["Wf"] @ z + tp["bf"] + tp["pf"] * c)
        i = torch.sigmoid(tp["Wi"] @ z + tp["bi"] + tp["pi"] * c)
        cc = torch.tanh(tp["Wc"] @ z + tp["bc"])
        c_new = f * c + i * cc
        o = torch.sigmoid(tp["Wo"] @ z + tp["bo"] + tp["po"] * c_new)
        a_new = o * torch.tanh(c_new)
        live = torch.tensor([float(s < L[j]) for j in range(m)], dtype=torch.float64)
        for j in range(m):
            out_a[j][order[j][s]] = a_new[:, j] * live[j]
            out_c[j][order[j][s]] = c_new[:, j] * live[j]
        a = live * a_new + (1 - live) * a
        c = live * c_new + (1 - live) * c
    A = torch.stack([torch.stack(col, dim=1) for col in out_a], dim=1)  # (n_a, m, T)
    C = torch.stack([torch.stack(col, dim=1) for col in out_c], dim=1)
    loss = (A * torch.tensor(da)).sum()
    if dfinal is not None:
        loss = loss + (a * torch.tensor(dfinal[0])).sum() + (c * torch.tensor(dfinal[1])).sum()
    loss.backward()
    grads = {"d" + k: v.grad.numpy() for k, v in tp.items()}
    grads.update(dx=tx.grad.numpy(), da0=ta0.grad.numpy(), dc0=tc0.grad.numpy())
    return {
        "a": A.detach().numpy(),
        "c": C.detach().numpy(),
        "final": (a.detach().numpy(), c.detach().numpy()),
        "grads": grads,
    }
