"""``torch.nn`` drop-ins: recurrent modules computing with xrnn's kernels.

``xrnn.torch.LSTM(input_size, hidden_size, num_layers=2, batch_first=True, ...)`` is an
``nn.Module`` with ``torch.nn.LSTM``'s constructor arguments, forward signature and outputs
(``PackedSequence`` accepted) and state-dict keys — a trained ``nn.LSTM``'s state dict loads
unchanged — whose every layer and direction runs as one ``torch.ops.xrnn.sequence`` operator
(:mod:`xrnn.torch.autograd`): xrnn's forward and xrnn's own backward. ``cell=`` runs any xrnn
cell instead; one PyTorch lacks keeps its parameters under xrnn's keys
(``Wf_l0``, ``bf_l0``, ...).
"""

from __future__ import annotations

import math
from typing import Any

import array_api_compat.torch as torch_namespace
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from xrnn.api import forward, initialize
from xrnn.cells.base import Cell, get_cell
from xrnn.core.engine import final_states

__all__ = ["GRU", "LSTM", "RNN", "Recurrent"]


def _suffix(layer: int, direction: int) -> str:
    return f"_l{layer}" + ("_reverse" if direction else "")


def _has_torch_layout(cell: Cell) -> bool:
    """Whether PyTorch has ``cell`` (its parameters then take PyTorch's layout)."""
    order = getattr(cell, "torch_order", None)
    if order is None:  # a cell with a layout conversion of its own (the RNN's)
        return True
    try:
        order()
    except ValueError:
        return False
    return True


class Recurrent(nn.Module):
    """A multi-layer recurrent module of any xrnn cell, with ``torch.nn.RNN``'s interface.

    Parameters
    ----------
    cell : str or Cell
        A registered cell's name or a cell object.
    input_size, hidden_size : int
    num_layers : int, default 1
    bias : bool, default True
        False: no biases (PyTorch's ``bias=False``).
    batch_first : bool, default False
        Input and output ``(N, T, features)`` instead of ``(T, N, features)``.
    dropout : float, default 0.0
        Dropout on the outputs of every layer but the last, in training mode.
    bidirectional : bool, default False
    device, dtype : optional
        Where and of what type the parameters are created.

    Notes
    -----
    Parameters follow PyTorch's layout where PyTorch has the cell (``weight_ih_l{k}``,
    ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}``, ``_reverse`` for the backward
    direction; initialised uniform in ``±1/sqrt(hidden_size)`` as PyTorch does), else the
    cell's own keys with the same suffixes, initialised by the cell's own rule.
    """

    def __init__(
        self,
        cell: Any,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"num_layers must be a positive integer, got {num_layers!r}")
        if not (isinstance(dropout, int | float) and 0 <= dropout <= 1):
            raise ValueError(f"dropout must be a number in [0, 1], got {dropout!r}")
        self.cell: Cell = get_cell(cell)
        self.input_size, self.hidden_size = input_size, hidden_size
        self.num_layers, self.bias = num_layers, bool(bias)
        self.batch_first, self.dropout = bool(batch_first), float(dropout)
        self.bidirectional = bool(bidirectional)
        self.torch_layout = _has_torch_layout(self.cell)
        D = 2 if bidirectional else 1
        factory = {"device": device, "dtype": dtype}
        for layer in range(num_layers):
            n_in = input_size if layer == 0 else D * hidden_size
            for d in range(D):
                for key, shape in self._shapes(n_in).items():
                    param = nn.Parameter(torch.empty(shape, **factory))
                    self.register_parameter(key + _suffix(layer, d), param)
        self.reset_parameters()

    # --- parameters --------------------------------------------------------------------------

    def _shapes(self, n_in: int) -> dict[str, tuple[int, ...]]:
        H, k = self.hidden_size, self.cell.blocks
        shapes: dict[str, tuple[int, ...]]
        if self.torch_layout:
            shapes = {"weight_ih": (k * H, n_in), "weight_hh": (k * H, H)}
            if self.bias:
                shapes.update({"bias_ih": (k * H,), "bias_hh": (k * H,)})
            return shapes
        shapes = {key: shape for key, (shape, _) in self.cell.shapes(n_in, H).items()}
        if not self.bias:
            for _, b in getattr(self.cell, "gates", ()):
                shapes.pop(b, None)
        return shapes

    def reset_parameters(self) -> None:
        """PyTorch's initialisation (uniform in ``±1/sqrt(hidden_size)``) in PyTorch's layout;
        the cell's own rule in its own."""
        if self.torch_layout:
            bound = 1.0 / math.sqrt(self.hidden_size)
            for p in self.parameters():
                nn.init.uniform_(p, -bound, bound)
            return
        D = 2 if self.bidirectional else 1
        for layer in range(self.num_layers):
            n_in = self.input_size if layer == 0 else D * self.hidden_size
            for d in range(D):
                drawn = initialize(self.cell, n_in, self.hidden_size, seed=layer * D + d)
                with torch.no_grad():
                    for key in self._shapes(n_in):
                        p = getattr(self, key + _suffix(layer, d))
                        p.copy_(torch.as_tensor(drawn[key], dtype=p.dtype))

    def _parameters_of(self, layer: int, d: int, xp: Any) -> dict[str, Tensor]:
        """The xrnn parameters of one layer and direction, from the module's (differentiable:
        slices, concatenations and sums of them)."""
        s = _suffix(layer, d)
        if self.torch_layout:
            bias_ih = getattr(self, "bias_ih" + s) if self.bias else None
            bias_hh = getattr(self, "bias_hh" + s) if self.bias else None
            return self.cell.from_torch(
                xp,
                getattr(self, "weight_ih" + s),
                getattr(self, "weight_hh" + s),
                bias_ih,
                bias_hh,
                self.hidden_size,
            )
        n_in = int(getattr(self, self.cell.keys[0] + s).shape[1]) - self.hidden_size
        params = {}
        for key, (shape, _) in self.cell.shapes(n_in, self.hidden_size).items():
            p = getattr(self, key + s, None)
            params[key] = (
                p
                if p is not None
                else torch.zeros(shape, dtype=self._dtype(), device=self._device())
            )
        return params

    def _dtype(self) -> Any:
        return next(self.parameters()).dtype

    def _device(self) -> Any:
        return next(self.parameters()).device

    # --- forward -------------------------------------------------------------------------------

    def _initial(self, hx: Any, batch: int, unbatched: bool) -> list[tuple]:
        """Per layer and direction, each state component's initial value ``(H, N)`` (None:
        zeros)."""
        S, LD = len(self.cell.states), self.num_layers * (2 if self.bidirectional else 1)
        if hx is None:
            return [(None,) * S for _ in range(LD)]
        parts = (hx,) if isinstance(hx, Tensor) else tuple(hx)
        if len(parts) != S:
            raise ValueError(
                f"hx must hold {S} tensor(s) for the {self.cell.name!r} cell "
                f"({', '.join(self.cell.states)}); got {len(parts)}"
            )
        want = (LD, self.hidden_size) if unbatched else (LD, batch, self.hidden_size)
        out = []
        for name, part in zip(self.cell.states, parts, strict=True):
            if not isinstance(part, Tensor) or tuple(part.shape) != want:
                shape = getattr(part, "shape", None)
                raise ValueError(f"hx ({name}) must have shape {want}; got {shape}")
            out.append(part.unsqueeze(1) if unbatched else part)
        return [tuple(p[i].T for p in out) for i in range(LD)]

    def forward(self, input: Any, hx: Any = None) -> tuple[Any, Any]:  # noqa: A002 (torch's name)
        """``output, h_n`` as ``torch.nn.RNN``/``GRU`` return them (``h_n`` a tuple of every
        state component's for a cell with more than one, ``(h_n, c_n)`` for the LSTM)."""
        packed = isinstance(input, PackedSequence)
        lengths = None
        if packed:
            sorted_indices, unsorted_indices = input.sorted_indices, input.unsorted_indices
            input, lengths = pad_packed_sequence(input, batch_first=False)
            lengths = lengths.to(input.device)
            batch_first = False
        else:
            if not isinstance(input, Tensor):
                raise TypeError(f"input must be a Tensor or a PackedSequence, got {type(input)}")
            batch_first = self.batch_first
        if input.dim() not in (2, 3) or (packed and input.dim() != 3):
            raise ValueError(f"input must be 2-D or 3-D, got shape {tuple(input.shape)}")
        unbatched = input.dim() == 2
        if unbatched:
            input = input.unsqueeze(1)
        elif batch_first:
            input = input.transpose(0, 1)
        T, N, n_in = input.shape
        if n_in != self.input_size:
            raise ValueError(f"input has {n_in} features; this module takes {self.input_size}")
        initial = self._initial(hx, N, unbatched)
        xp = torch_namespace  # (array_namespace's cache would be a graph break to Dynamo)
        D = 2 if self.bidirectional else 1
        x = input.permute(2, 1, 0)  # xrnn's (n_x, m, T_x)
        finals: list[list[Tensor]] = [[] for _ in self.cell.states]
        for layer in range(self.num_layers):
            outs = []
            for d in range(D):
                init = initial[layer * D + d]
                further = {f"{s}0": v for s, v in zip(self.cell.states[1:], init[1:], strict=True)}
                a0 = init[0]
                if a0 is None:
                    a0 = torch.zeros(self.hidden_size, N, dtype=x.dtype, device=x.device)
                got = forward(
                    self.cell, x, a0, self._parameters_of(layer, d, xp), lengths=lengths,
                    reverse=d == 1, return_caches=False, **further,
                )  # fmt: skip
                states = (got[0], *got[2:-1])
                outs.append(states[0])
                for i, s in enumerate(final_states(xp, states, lengths, d == 1)):
                    finals[i].append(s.T)
            x = outs[0] if D == 1 else torch.cat(outs, dim=0)
            if self.training and self.dropout > 0 and layer < self.num_layers - 1:
                x = nn.functional.dropout(x, self.dropout, training=True)
        output = x.permute(2, 1, 0)  # (T, N, D·H)
        h_n = tuple(torch.stack(f, dim=0) for f in finals)  # (L·D, N, H) each
        if unbatched:
            output, h_n = output.squeeze(1), tuple(h.squeeze(1) for h in h_n)
        if packed:  # in the input's order of sequences (None: already sorted by length)
            assert lengths is not None  # set by pad_packed_sequence above
            order = sorted_indices
            if order is None:
                order = torch.arange(N, device=output.device)
            data = pack_padded_sequence(output.index_select(1, order), lengths[order].cpu())
            output = PackedSequence(data.data, data.batch_sizes, sorted_indices, unsorted_indices)
        elif batch_first and not unbatched:
            output = output.transpose(0, 1)
        return output, h_n[0] if len(h_n) == 1 else h_n

    def extra_repr(self) -> str:
        text = f"{self.cell.name!r}, {self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            text += f", num_layers={self.num_layers}"
        for name, default in (("bias", True), ("batch_first", False), ("bidirectional", False)):
            if getattr(self, name) != default:
                text += f", {name}={getattr(self, name)}"
        if self.dropout:
            text += f", dropout={self.dropout}"
        return text


class RNN(Recurrent):
    """``torch.nn.RNN`` on xrnn's kernels (``nonlinearity`` ``"tanh"`` or ``"relu"``)."""

    def __init__(self, input_size: int, hidden_size: int, *args: Any, **kwargs: Any) -> None:
        nonlinearity = kwargs.pop("nonlinearity", "tanh")
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        cell = kwargs.pop("cell", "rnn" if nonlinearity == "tanh" else "rnn_relu")
        super().__init__(cell, input_size, hidden_size, *args, **kwargs)
        self.nonlinearity = nonlinearity


class LSTM(Recurrent):
    """``torch.nn.LSTM`` on xrnn's kernels (``proj_size`` is not supported)."""

    def __init__(self, input_size: int, hidden_size: int, *args: Any, **kwargs: Any) -> None:
        if kwargs.pop("proj_size", 0):
            raise ValueError("proj_size is not supported")
        super().__init__(kwargs.pop("cell", "lstm"), input_size, hidden_size, *args, **kwargs)


class GRU(Recurrent):
    """``torch.nn.GRU`` on xrnn's kernels."""

    def __init__(self, input_size: int, hidden_size: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(kwargs.pop("cell", "gru"), input_size, hidden_size, *args, **kwargs)
