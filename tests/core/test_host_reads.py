"""No host synchronisation (issue #11, deliverable 3): every public function runs on PyTorch
``meta`` tensors — which have no data, so any read back to the host raises — with the right
shapes, dtypes and device; and on CPU tensors a dispatch-mode counter of
``aten._local_scalar_dense`` (what ``float()``, ``bool()``, ``.item()`` call) shows that a call
reads at most one value back with ``check_finite=True`` and none without, whatever ``T``: none
inside the time loops. On a GPU each read is a round trip that stalls the stream."""

from __future__ import annotations

import pytest

import xrnn
from tests.cell_cases import NAMES, backward, cell_backward, cell_forward, forward, initialize, spec

torch = pytest.importorskip("torch")
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

N_X, N_A, M = 3, 4, 5


class HostReads(TorchDispatchMode):
    """Counts the reads of a tensor's value back to the host."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


def _tensors(cell, T, device):
    gen = torch.Generator().manual_seed(0)

    def make(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).to(device)

    p = {k: torch.as_tensor(v).to(device) for k, v in initialize(cell, N_X, N_A, 2).items()}
    state0 = tuple(make(N_A, M) for _ in spec(cell).states)
    lengths = torch.tensor([T, 1, T - 1, 2, T], device=device)
    return make(N_X, M, T), state0, p, make(N_A, M, T), lengths


def _calls(cell, T, device, check_finite):
    """Every public call of ``cell`` — sequence and step, forward and backward, with lengths
    and reversed — as (name, thunk) pairs, each thunk returning its outputs."""
    x, state0, p, da, lengths = _tensors(cell, T, device)
    kw = {"check_finite": check_finite}
    _, _, caches = forward(cell, x, state0, p, **kw)
    _, _, masked = forward(cell, x, state0, p, lengths=lengths, reverse=True, **kw)
    new, cache = cell_forward(cell, x[:, :, 0], state0, p, **kw)
    layer = xrnn.layers.layer_for(cell, N_X, N_A, num_layers=2, bidirectional=True, like=x)
    return [
        ("forward", lambda: forward(cell, x, state0, p, **kw)),
        ("forward, lengths", lambda: forward(cell, x, state0, p, lengths=lengths, **kw)),
        ("backward", lambda: backward(cell, da, caches, **kw)),
        ("backward, lengths", lambda: backward(cell, da, masked, **kw)),
        ("cell forward", lambda: cell_forward(cell, x[:, :, 0], state0, p, **kw)),
        ("cell backward", lambda: cell_backward(cell, new, cache, **kw)),
        ("layer", lambda: layer(x, lengths=lengths, check_finite=check_finite)),
    ]


def _reads(cell, T, check_finite):
    counts = {}
    for name, call in _calls(cell, T, "cpu", check_finite):
        with HostReads() as reads:
            call()
        counts[name] = reads.count
    return counts


@pytest.mark.parametrize("cell", NAMES)
def test_a_call_reads_at_most_one_value_and_none_without_checks(cell):
    short, long = _reads(cell, 3, True), _reads(cell, 12, True)
    assert short == long  # nothing per step
    functions = {k: v for k, v in short.items() if k != "layer"}
    assert max(functions.values()) <= 1, functions
    # a layer checks its lengths, then each of its 2 layers × 2 directions checks its call
    assert short["layer"] <= 1 + 4, short
    unchecked = _reads(cell, 12, False)
    assert all(v == 0 for v in unchecked.values()), unchecked


def _flat(out):
    if isinstance(out, dict):
        return [t for v in out.values() for t in _flat(v)]
    if isinstance(out, tuple | list):
        return [t for v in out for t in _flat(v)]
    return [out] if isinstance(out, torch.Tensor) else []


@pytest.mark.parametrize("cell", NAMES)
def test_every_public_call_runs_on_meta_tensors(cell):
    """Meta tensors raise on any host read: a call that needed one would fail here."""
    cpu = dict(_calls(cell, 6, "cpu", False))
    for name, call in _calls(cell, 6, "meta", False):
        got, want = _flat(call()), _flat(cpu[name]())
        assert len(got) == len(want) > 0, name
        for g, w in zip(got, want, strict=True):
            assert g.device.type == "meta", name
            assert (g.shape, g.dtype) == (w.shape, w.dtype), name
