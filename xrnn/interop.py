"""PyTorch interop: xrnn layers from ``nn.RNN``/``nn.LSTM``/``nn.GRU`` modules, and back.

The weights go through each cell spec's own PyTorch layout (:meth:`xrnn.cells.base.Cell.from_torch`,
:meth:`~xrnn.cells.base.Cell.to_torch`): gate orders mapped, PyTorch's two biases summed where the
math allows (every gate of the RNN and LSTM, the GRU's r and z gates) and kept apart for the
GRU's n gate (``bn``, ``bhn``). A layer made by :func:`from_torch` remembers the module's own
split of each summed bias, so :func:`to_torch` gives back the same state dict exactly as long
as the biases are unchanged; after they change, ``bias_ih`` takes the sum and ``bias_hh`` is
zero there (the same function).

``torch`` is imported only when these functions are called (it is an optional extra).
"""

from __future__ import annotations

from typing import Any

import array_api_compat.numpy as xnp

from xrnn.core.host import cast, to_numpy, zeros
from xrnn.core.params import to_device
from xrnn.layers import GRU, LSTM, RNN, RecurrentLayer

__all__ = ["from_torch", "to_torch"]

_LAYERS = {"RNN": RNN, "LSTM": LSTM, "GRU": GRU}


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - the extra is missing
        raise ImportError(
            "xrnn.interop needs PyTorch: pip install torch (the 'torch' extra)"
        ) from exc
    return torch


def _suffix(layer: int, direction: int) -> str:
    return f"_l{layer}" + ("_reverse" if direction else "")


def _host(t: Any) -> Any:
    """A NumPy copy of a torch tensor (never a view of the module's storage)."""
    return to_numpy(t).copy()


def from_torch(module: Any, *, like: Any = None) -> RecurrentLayer:
    """The xrnn layer computing what ``module`` computes, with its weights.

    Parameters
    ----------
    module : torch.nn.RNN, torch.nn.LSTM or torch.nn.GRU
        Any ``num_layers``, ``bidirectional``, ``bias``, ``dropout`` and (``nn.RNN``)
        ``nonlinearity``. ``batch_first=True`` and ``proj_size > 0`` are refused.
    like : array, optional
        Create the parameters in this array's library, on its device, with its dtype.
        Default: NumPy arrays of the module's dtype.

    Returns
    -------
    xrnn.RNN, xrnn.LSTM or xrnn.GRU
        In the module's training mode. Its ``x`` is ``(n_x, m, T_x)``, the module's input
        ``(T_x, m, n_x)`` transposed.
    """
    torch = _torch()
    kind = next(
        (name for name in _LAYERS if type(module) is getattr(torch.nn, name)),
        None,
    )
    if kind is None:
        raise TypeError(
            "module must be a torch.nn.RNN, torch.nn.LSTM or torch.nn.GRU, got "
            f"{type(module).__module__}.{type(module).__qualname__} (a single cell, "
            "nn.RNNCell/LSTMCell/GRUCell, maps onto xrnn's functional *_cell_forward)"
        )
    if module.batch_first:
        raise ValueError(
            "module has batch_first=True; xrnn layers take x of shape (n_x, m, T_x). Set "
            "module.batch_first = False (the weights are the same) and transpose the inputs"
        )
    if getattr(module, "proj_size", 0):
        raise ValueError(
            f"module has proj_size={module.proj_size}; xrnn's LSTM has no output projection"
        )
    weight = module.weight_ih_l0
    if weight.dtype not in (torch.float32, torch.float64):
        raise TypeError(
            f"module's weights are {weight.dtype}; xrnn computes in float32 or float64 "
            "(convert the module with .float() or .double())"
        )
    kw: dict[str, Any] = {}
    if kind == "RNN":
        kw["nonlinearity"] = module.nonlinearity
    layer = _LAYERS[kind](
        module.input_size,
        module.hidden_size,
        num_layers=module.num_layers,
        bidirectional=module.bidirectional,
        bias=module.bias,
        dropout=float(module.dropout),
        dtype=str(weight.dtype).rsplit(".", 1)[-1],
        **kw,
    )
    cell, n_a = layer.cell, layer.n_a
    for lay in range(layer.num_layers):
        for d in range(layer.num_directions):
            s = _suffix(lay, d)
            b_ih = _host(getattr(module, "bias_ih" + s)) if module.bias else None
            b_hh = _host(getattr(module, "bias_hh" + s)) if module.bias else None
            host = cell.from_torch(
                xnp,
                _host(getattr(module, "weight_ih" + s)),
                _host(getattr(module, "weight_hh" + s)),
                b_ih,
                b_hh,
                n_a,
            )
            if module.bias:  # the module's own split, while the summed biases stay as imported
                summed = {k: host[k].copy() for k in cell.bias_keys}
                layer.torch_biases[lay, d] = (summed, b_ih, b_hh)
            else:
                host = {k: v for k, v in host.items() if k not in cell.bias_keys}
            layer.parameters[lay][d] = host if like is None else to_device(host, like)
    layer.train(module.training)
    return layer


def to_torch(layer: RecurrentLayer, *, device: Any = None) -> Any:
    """A ``torch.nn.RNN``/``LSTM``/``GRU`` computing what ``layer`` computes.

    Parameters
    ----------
    layer : xrnn.RNN, xrnn.LSTM or xrnn.GRU
    device : torch.device or str, optional
        Where the module's parameters live (default: the CPU).

    Returns
    -------
    torch.nn.Module
        ``batch_first=False``, the layer's dtype and training mode; its weights are copies.
    """
    torch = _torch()
    if not isinstance(layer, RecurrentLayer):
        raise TypeError(f"layer must be an xrnn.RNN, LSTM or GRU, got {type(layer).__name__}")
    cell, n_a = layer.cell, layer.n_a
    some = next(iter(layer.parameters[0][0].values()))
    dtype = getattr(torch, str(some.dtype).rsplit(".", 1)[-1])
    kw: dict[str, Any] = {}
    if isinstance(layer, RNN):
        kw["nonlinearity"] = layer.nonlinearity
    module = getattr(torch.nn, type(layer).__name__)(
        layer.n_x,
        n_a,
        num_layers=layer.num_layers,
        bias=layer.bias,
        dropout=layer.dropout,
        bidirectional=layer.bidirectional,
        dtype=dtype,
        device=device,
        **kw,
    )
    imported = layer.torch_biases
    with torch.no_grad():
        for lay in range(layer.num_layers):
            for d in range(layer.num_directions):
                host = {k: to_numpy(v) for k, v in layer.parameters[lay][d].items()}
                if not layer.bias:
                    kind = next(iter(host.values())).dtype
                    host.update({k: cast(zeros((n_a, 1)), kind) for k in cell.bias_keys})
                weights = cell.to_torch(xnp, host, n_a)
                if (lay, d) in imported:
                    summed, b_ih, b_hh = imported[lay, d]
                    if all(bool((host[k] == summed[k]).all()) for k in cell.bias_keys):
                        weights["bias_ih"], weights["bias_hh"] = b_ih, b_hh
                names = ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if layer.bias else ())
                s = _suffix(lay, d)
                for name in names:
                    getattr(module, name + s).copy_(torch.as_tensor(weights[name]))
    module.train(layer.training)
    return module
