"""``xrnn.torch.RNN/LSTM/GRU`` against ``torch.nn``: state dicts that load both ways, the same
outputs, final states and gradients (float64) for every constructor option, packed and
unbatched input, initial states; any xrnn cell through ``cell=``."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import xrnn.torch as xt  # noqa: E402

OPTIONS = [
    {},
    {"num_layers": 2, "bidirectional": True},
    {"num_layers": 3, "batch_first": True},
    {"bias": False, "bidirectional": True},
]
KINDS = [("RNN", {}), ("RNN", {"nonlinearity": "relu"}), ("LSTM", {}), ("GRU", {})]


def _pair(kind, extra, **kw):
    torch.manual_seed(0)
    ref = getattr(torch.nn, kind)(5, 7, dtype=torch.float64, **extra, **kw)
    mine = getattr(xt, kind)(5, 7, dtype=torch.float64, **extra, **kw)
    mine.load_state_dict(ref.state_dict())  # a trained module's state dict, unchanged
    return ref, mine


def _tuple(h):
    return h if isinstance(h, tuple) else (h,)


def _compare(ref, mine, inputs, hx=None):
    """Outputs, final states and every gradient of one loss on them, equal to 1e-10."""
    got = []
    for module in (ref, mine):
        out, h = module(inputs, hx)
        data = out.data if isinstance(out, torch.nn.utils.rnn.PackedSequence) else out
        loss = data.sin().sum() + sum((s * s).sum() for s in _tuple(h))
        leaves = [p for p in module.parameters()]
        grads = torch.autograd.grad(loss, leaves + [t for t in _leaves(inputs, hx)])
        got.append((data, _tuple(h), grads))
    (d1, h1, g1), (d2, h2, g2) = got
    torch.testing.assert_close(d2, d1, rtol=1e-10, atol=1e-12)
    for a, b in zip(h2, h1, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    for a, b in zip(g2, g1, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def _leaves(inputs, hx):
    data = inputs.data if isinstance(inputs, torch.nn.utils.rnn.PackedSequence) else inputs
    leaves = [data] if data.requires_grad else []
    if hx is None:
        return leaves
    return leaves + [h for h in _tuple(hx) if h.requires_grad]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(map(str, o.values())) or "1")
@pytest.mark.parametrize("kind, extra", KINDS, ids=[k + "".join(e.values()) for k, e in KINDS])
def test_matches_torch_nn(kind, extra, options):
    ref, mine = _pair(kind, extra, **options)
    assert list(mine.state_dict()) == list(ref.state_dict())
    shape = (6, 4, 5) if options.get("batch_first") else (4, 6, 5)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    _compare(ref, mine, x)
    # packed input of mixed lengths, and initial states
    lengths = torch.tensor([4, 2, 3, 1, 4, 2])
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        x, lengths, batch_first=options.get("batch_first", False), enforce_sorted=False
    )
    L = ref.num_layers * (2 if ref.bidirectional else 1)
    hx = tuple(
        torch.randn(L, 6, 7, dtype=torch.float64, requires_grad=True)
        for _ in range(2 if kind == "LSTM" else 1)
    )
    _compare(ref, mine, packed, hx if kind == "LSTM" else hx[0])


def test_packed_sorted_input():
    ref, mine = _pair("GRU", {}, bidirectional=True)
    x = torch.randn(4, 3, 5, dtype=torch.float64, requires_grad=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor([4, 3, 1]))
    assert packed.sorted_indices is None
    _compare(ref, mine, packed)


def test_unbatched_input_and_state_dict_back():
    ref, mine = _pair("LSTM", {}, num_layers=2)
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    _compare(ref, mine, x)
    with torch.no_grad():
        for p in mine.parameters():
            p.mul_(0.5)
    back = torch.nn.LSTM(5, 7, num_layers=2, dtype=torch.float64)
    back.load_state_dict(mine.state_dict())
    _compare(back, mine, x)


def test_dropout_only_in_training():
    ref, mine = _pair("GRU", {}, num_layers=2, dropout=0.5)
    x = torch.randn(4, 6, 5, dtype=torch.float64)
    ref.eval(), mine.eval()
    torch.testing.assert_close(mine(x)[0], ref(x)[0], rtol=1e-10, atol=1e-12)
    mine.train()
    torch.manual_seed(1)
    dropped = mine(x)[0]
    assert not torch.allclose(dropped, ref(x)[0])


def test_one_operator_per_layer_and_direction():
    _, mine = _pair("LSTM", {}, num_layers=2, bidirectional=True)
    out, _ = mine(torch.randn(30, 3, 5, dtype=torch.float64))
    seen, todo, ops = set(), [out.grad_fn], 0
    while todo:
        node = todo.pop()
        if node is not None and node not in seen:
            seen.add(node)
            ops += "xrnn" in type(node).__name__.lower()
            todo.extend(f for f, _ in node.next_functions)
    assert ops == 4


def test_any_cell():
    """A cell PyTorch lacks keeps xrnn's keys; gradients by finite differences."""
    torch.manual_seed(0)
    module = xt.LSTM(3, 4, num_layers=2, cell="peephole_lstm", dtype=torch.float64)
    assert "pf_l1" in module.state_dict() and "Wf_l0" in module.state_dict()
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    params = list(module.parameters())

    def loss(x, *ps):
        with torch.nn.utils.stateless._reparametrize_module(
            module, dict(zip((n for n, _ in module.named_parameters()), ps, strict=True))
        ):
            out, (h, c) = module(x)
        return out.sin().sum() + (c * c).sum()

    assert torch.autograd.gradcheck(loss, (x, *params))


def test_bad_arguments():
    with pytest.raises(ValueError, match="hidden_size"):
        xt.GRU(3, 0)
    with pytest.raises(ValueError, match="proj_size"):
        xt.LSTM(3, 4, proj_size=2)
    module = xt.GRU(3, 4)
    with pytest.raises(ValueError, match="features"):
        module(torch.randn(5, 2, 4))
    with pytest.raises(ValueError, match="hx"):
        module(torch.randn(5, 2, 3), torch.zeros(2, 2, 4))


def test_compile_fullgraph():
    ref, mine = _pair("LSTM", {}, num_layers=2, bidirectional=True)
    x = torch.randn(6, 3, 5, dtype=torch.float64, requires_grad=True)

    def loss(module, x):
        out, (h, c) = module(x)
        return out.sin().sum() + (h * c).sum()

    torch._dynamo.reset()
    compiled = torch.compile(lambda x: loss(mine, x), fullgraph=True, backend="aot_eager")
    leaves = [x, *mine.parameters()]
    got = torch.autograd.grad(compiled(x), leaves)
    want = torch.autograd.grad(loss(ref, x), [x, *ref.parameters()])
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
