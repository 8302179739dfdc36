"""Recurrent layers: stacked and bidirectional RNN, LSTM and GRU over padded batches.

A layer is the functional engine plus bookkeeping: it holds one parameter dict per layer and
direction in the functional API's own format (``layer.parameters[l][d]`` is what
:func:`xrnn.lstm_forward` takes), runs :func:`xrnn.core.engine.run_forward` for each of them —
the backward direction with ``reverse=True`` —, joins the directions' outputs along the
feature axis and feeds them (through dropout, between layers) to the next layer, exactly as
PyTorch's ``nn.RNN``/``nn.LSTM``/``nn.GRU`` do; :meth:`RecurrentLayer.backward` runs
:func:`xrnn.core.engine.run_backward` on the caches it kept, top layer first.
"""

from __future__ import annotations

import numbers
from typing import Any

import array_api_compat

from xrnn.backends import check_values, get_ops, resolve
from xrnn.cells.base import Cell, get_cell
from xrnn.cells.gru import GRU_CELL
from xrnn.cells.lstm import LSTM_CELL
from xrnn.cells.rnn import NONLINEARITIES
from xrnn.core.engine import check_lengths, final_states, run_backward, run_forward
from xrnn.core.host import host_generator, is_generator, uniform_sampler
from xrnn.core.inputs import sequence_shape, shape_of
from xrnn.core.layout import public
from xrnn.core.params import initialize, positive_int
from xrnn.rnn import rnn_cell_of

__all__ = ["GRU", "LSTM", "RNN", "RecurrentLayer", "dropout_mask", "layer_for"]


class RecurrentLayer:
    """A stack of ``num_layers`` recurrent layers of one cell, each one- or bidirectional.

    Parameters
    ----------
    n_x : int
        Input features.
    n_a : int
        Hidden units per direction.
    num_layers : int, default 1
    bidirectional : bool, default False
        Each layer also runs every sequence backwards over its own length; the two directions'
        outputs are stacked along the feature axis (forward first), ``2 n_a`` features.
    bias : bool, default True
        False: no bias parameters (the functional calls get zeros).
    dropout : float, default 0.0
        Probability of zeroing each output of every layer but the last (inverted dropout: the
        kept ones are scaled by ``1 / (1 − dropout)``), in training mode only, as PyTorch.
    dtype : dtype, optional
        Floating dtype of the parameters (``like``'s dtype by default, else NumPy float64).
    like : array, optional
        Create the parameters in this array's library, on its device.
    seed : int, default 0
        Seeds the initialisation (``U(±1/sqrt(n_a))`` weights drawn layer by layer and
        direction by direction from one NumPy generator, biases zero) and, unless ``generator``
        is given, the dropout masks.
    generator : numpy.random.Generator, optional
        Where the dropout masks are drawn.
    parameters : list of list of dict, optional
        Start from these parameters (the structure of the :attr:`parameters` attribute)
        instead of drawing them; ``dtype``, ``like`` and ``seed``'s initialisation are then
        unused.
    cell : str or Cell, optional
        The cell of a ``RecurrentLayer`` made directly (any registered cell, e.g.
        ``RecurrentLayer(3, 5, cell="peephole_lstm")``); :class:`RNN`, :class:`LSTM` and
        :class:`GRU` set their own.

    Attributes
    ----------
    cell : Cell
        The cell spec (:mod:`xrnn.cells.base`).
    parameters : list of list of dict
        ``parameters[l][d]`` are layer ``l``'s parameters for direction ``d`` (0 forward,
        1 backward) in the functional API's format: layer 0 takes ``n_x`` inputs, later layers
        ``num_directions · n_a``. Replace the dicts (or their arrays) to set new values.
    training : bool
        Dropout applies only in training mode (:meth:`train`, :meth:`eval`); default True.
    generator : numpy.random.Generator
        The dropout masks' source: each forward call in training mode with ``dropout > 0``
        draws one mask per layer but the last on the host and copies it, once, to ``x``'s
        device (the array API has no random generator).

    Notes
    -----
    ``out, state = layer(x, lengths=None, state=None)`` and
    ``grads = layer.backward(dout, dstate=None)``. The state of an RNN or GRU is the final
    hidden state of every layer and direction, one array ``(num_layers · num_directions, n_a,
    m)`` (PyTorch's ``h_n`` order: layer-major, forward direction first, batch last like the
    rest of xrnn); an LSTM's is the pair ``(a_n, c_n)``.
    """

    cell: Cell
    n_x: int
    n_a: int
    num_layers: int
    bidirectional: bool
    bias: bool
    dropout: float
    training: bool
    generator: Any

    def __init__(
        self,
        n_x: int,
        n_a: int,
        *,
        num_layers: int = 1,
        bidirectional: bool = False,
        bias: bool = True,
        dropout: float = 0.0,
        dtype: Any = None,
        like: Any = None,
        seed: int = 0,
        generator: Any = None,
        parameters: Any = None,
        cell: Any = None,
    ) -> None:
        if cell is not None:
            self.cell = get_cell(cell)
        elif not hasattr(self, "cell"):
            raise TypeError("RecurrentLayer needs cell= (a registered cell's name or a cell)")
        positive_int("n_x", n_x)
        positive_int("n_a", n_a)
        positive_int("num_layers", num_layers)
        for name, flag in (("bidirectional", bidirectional), ("bias", bias)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False, got {flag!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real):
            raise TypeError(f"dropout must be a number in [0, 1), got {dropout!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        if generator is not None and not is_generator(generator):
            raise TypeError(
                f"generator must be a numpy.random.Generator, got {type(generator).__name__}"
            )
        self.n_x, self.n_a, self.num_layers = n_x, n_a, num_layers
        self.bidirectional, self.bias, self.dropout = bidirectional, bias, float(dropout)
        self.training = True
        self.generator = host_generator(seed) if generator is None else generator
        self.parameters: list[list[dict[str, Any]]] = []
        if parameters is not None:
            self.parameters = self._given(parameters)
        uniform = uniform_sampler(seed, n_a)
        for layer in range(0 if parameters is not None else num_layers):
            n_in = n_x if layer == 0 else self.num_directions * n_a
            self.parameters.append(
                [
                    self._without_bias(
                        initialize(
                            self.cell.draw,
                            self.cell.output_keys,
                            n_in,
                            n_a,
                            None,
                            seed=seed,
                            dtype=dtype,
                            like=like,
                            uniform=uniform,
                        )
                    )
                    for _ in range(self.num_directions)
                ]
            )
        # (layer, direction) -> PyTorch's own split of the summed biases, kept by
        # xrnn.interop.from_torch so that to_torch can give back the module's state dict
        self.torch_biases: dict[tuple[int, int], tuple[dict[str, Any], Any, Any]] = {}
        self._tape: list[tuple[list[Any], Any]] | None = None
        self._shape: tuple[int, int, int] | None = None

    def _given(self, parameters: Any) -> list[list[dict[str, Any]]]:
        """``parameters=`` as the attribute's structure, after checking that structure (the
        arrays' shapes are checked by every call, as the functional API's)."""
        D = self.num_directions
        keys = set(self.cell.keys) - (set() if self.bias else set(self.cell.bias_keys))
        ok = isinstance(parameters, list | tuple) and len(parameters) == self.num_layers
        ok = ok and all(isinstance(per, list | tuple) and len(per) == D for per in parameters)
        if not ok:
            raise ValueError(
                f"parameters must hold {self.num_layers} layer(s) of {D} direction(s), each a "
                f"dict of {sorted(keys)}"
            )
        for layer, per in enumerate(parameters):
            for d, p in enumerate(per):
                if not isinstance(p, dict) or not keys <= set(p):
                    raise ValueError(
                        f"parameters[{layer}][{d}] must be a dict holding {sorted(keys)}"
                    )
        return [[dict(p) for p in per] for per in parameters]

    # --- description -------------------------------------------------------------------

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def _state_count(self) -> int:
        return len(self.cell.states)

    def _settings(self) -> str:
        out = f"{self.n_x}, {self.n_a}, num_layers={self.num_layers}"
        if self.bidirectional:
            out += ", bidirectional=True"
        if not self.bias:
            out += ", bias=False"
        if self.dropout:
            out += f", dropout={self.dropout}"
        if type(self) is RecurrentLayer:
            out += f", cell={self.cell.name!r}"
        return out

    def __repr__(self) -> str:
        return f"xrnn.{type(self).__name__}({self._settings()})"

    def train(self, mode: bool = True) -> RecurrentLayer:
        """Training mode (dropout on) or, with ``mode=False``, evaluation mode."""
        self.training = bool(mode)
        return self

    def eval(self) -> RecurrentLayer:
        """Evaluation mode: no dropout."""
        return self.train(False)

    # --- parameters --------------------------------------------------------------------

    def _without_bias(self, p: dict[str, Any]) -> dict[str, Any]:
        if self.bias:
            return p
        return {k: v for k, v in p.items() if k not in self.cell.bias_keys}

    def _functional(self, layer: int, direction: int, xp: Any) -> dict[str, Any]:
        """The dict the functional engine takes: the parameters, plus zero biases when the
        layer has none."""
        p = self.parameters[layer][direction]
        if self.bias:
            return p
        some = next(iter(p.values()))
        kw = {"dtype": some.dtype, "device": array_api_compat.device(some)}
        return {**p, **{k: xp.zeros((self.n_a, 1), **kw) for k in self.cell.bias_keys}}

    # --- states ------------------------------------------------------------------------

    def _split_state(self, state: Any, name: str, m: int) -> list[tuple]:
        """The user's stacked state as one tuple of (n_a, m) components per layer·direction."""
        count = self.num_layers * self.num_directions
        if state is None:
            return [(None,) * self._state_count] * count
        parts = (state,) if self._state_count == 1 else state
        if not isinstance(parts, tuple) or len(parts) != self._state_count:
            want = "an array" if self._state_count == 1 else f"a tuple of {self._state_count}"
            raise TypeError(f"{name} must be {want} of shape ({count}, n_a={self.n_a}, m={m})")
        for i, s in enumerate(parts):
            label = name if self._state_count == 1 else f"{name}[{i}]"
            shape = shape_of(label, s, ("num_layers·num_directions", "n_a", "m"))
            if shape != (count, self.n_a, m):
                raise ValueError(
                    f"{label} has shape {shape}; expected {(count, self.n_a, m)} "
                    f"(num_layers·num_directions, n_a, m)"
                )
        return [tuple(s[i, ...] for s in parts) for i in range(count)]

    def _join_state(self, xp: Any, per_run: list[tuple]) -> Any:
        stacked = tuple(
            xp.stack([run[i] for run in per_run], axis=0) for i in range(self._state_count)
        )
        return stacked[0] if self._state_count == 1 else stacked

    # --- forward and backward ----------------------------------------------------------

    def __call__(
        self, x: Any, lengths: Any = None, state: Any = None, *, check_finite: bool = True
    ) -> tuple[Any, Any]:
        """Run the layers over ``x``.

        Parameters
        ----------
        x : array of shape (n_x, m, T_x)
        lengths : integer array of shape (m,) or list of int, optional
            Each sequence's length (as in :func:`xrnn.lstm_forward`): outputs are zero past it
            and the final state is taken at it.
        state : array of shape (num_layers·num_directions, n_a, m), optional
            The initial state (an LSTM: the pair ``(a0, c0)``); default zeros.
        check_finite : bool, default True
            Refuse NaN/inf and lengths out of range (host reads; pass False in GPU hot loops).

        Returns
        -------
        out : array of shape (num_directions · n_a, m, T_x)
            The last layer's hidden states, directions stacked (forward first).
        state : array of shape (num_layers·num_directions, n_a, m), or a pair of them
            Every layer's and direction's state at each sequence's end.
        """
        # the last call's caches go first: their memory is reused rather than faulted in anew
        # (config A, 2 × bidirectional LSTM forward: 67 → 47 ms)
        self._tape = self._shape = None
        ctx = resolve([("x", x)])
        xp = ctx.xp
        n_x, m, T = sequence_shape(x)
        if n_x != self.n_x:
            raise ValueError(f"x has n_x={n_x} features; this layer takes n_x={self.n_x}")
        lengths, in_range = check_lengths(ctx, lengths, m, T)
        if check_finite:
            check_values(ctx, (), [in_range])
        zeros = xp.zeros((self.n_a, m), dtype=ctx.dtype, device=ctx.device)
        # the engine takes a0 (the other components default to zeros themselves)
        initial = [
            (zeros, *run[1:]) if run[0] is None else run
            for run in self._split_state(state, "state", m)
        ]
        D, cell = self.num_directions, self.cell
        tape: list[tuple[list[Any], Any]] = []
        finals: list[tuple] = []
        inp = x
        for layer in range(self.num_layers):
            outs, caches = [], []
            for d in range(D):
                outputs, _, caches_d = run_forward(
                    cell,
                    inp,
                    initial[layer * D + d],
                    self._functional(layer, d, xp),
                    lengths=lengths,
                    reverse=d == 1,
                    check_finite=check_finite,
                    # evaluation mode keeps no caches: no backward follows
                    return_caches=self.training,
                    # only the top layer's single direction is returned as it is
                    private=layer == self.num_layers - 1 and D == 1,
                )
                outs.append(outputs[0])
                caches.append(caches_d)
                finals.append(
                    final_states(xp, outputs, lengths, d == 1)
                    if caches_d is None
                    else caches_d[0].final_states()
                )
            out = outs[0] if D == 1 else _stack_features(xp, outs)
            mask = None
            if layer < self.num_layers - 1 and self.training and self.dropout > 0:
                # drawn time-major (T, D·n_a, m), like the engine's outputs it multiplies
                shape = (T, D * self.n_a, m)
                drawn = dropout_mask(self.generator, self.dropout, shape, xp, ctx.dtype, ctx.device)
                mask = public(xp, drawn)
                inp = out * mask
            else:
                inp = out
            tape.append((caches, mask))
        self._tape, self._shape = tape, (D * self.n_a, m, T)
        return out, self._join_state(xp, finals)

    def backward(self, dout: Any, dstate: Any = None, *, check_finite: bool = True) -> dict:
        """Backpropagation through the last forward call.

        Each forward call serves one backward call, which releases the call's caches layer by
        layer as the gradient passes (PyTorch frees its graph the same way): their memory is
        reused by the backward pass itself.

        Parameters
        ----------
        dout : array of shape (num_directions · n_a, m, T_x)
            Gradient of the loss with respect to ``out``.
        dstate : like the returned ``state``, optional
            Gradient with respect to the final states (e.g. from the next chunk of a long
            sequence); default none.

        Returns
        -------
        dict
            ``dx (n_x, m, T_x)``; ``dstate``, the gradient of the initial state, shaped like
            ``state``; ``parameters``, one dict of ``"d" + key`` gradients per layer and
            direction, in the structure of :attr:`parameters`.
        """
        if self._tape is None or self._shape is None:
            raise ValueError(
                "backward() needs a forward pass first: call the layer on x, then backward "
                "(once per forward call)"
            )
        if any(c is None for caches, _ in self._tape for c in caches):
            raise ValueError(
                "backward() needs a forward pass in training mode: in evaluation mode "
                "(layer.eval()) the forward keeps no caches; call layer.train() (with "
                "dropout=0 it computes the same outputs)"
            )
        shape = shape_of("dout", dout, ("num_directions·n_a", "m", "T_x"))
        if shape != self._shape:
            raise ValueError(
                f"dout has shape {shape}; expected {self._shape}, the shape of the last "
                f"forward call's out (num_directions·n_a, m, T_x)"
            )
        xp = resolve([("dout", dout)]).xp
        D, cell, n_a = self.num_directions, self.cell, self.n_a
        upstream = self._split_state(dstate, "dstate", shape[1])
        caches_of = [c for c, _ in self._tape]
        masks = [mask for _, mask in self._tape]
        self._tape = self._shape = None
        grads: list[list[dict[str, Any]]] = [[{} for _ in range(D)] for _ in masks]
        dinitial: list[tuple] = [()] * (self.num_layers * D)
        g = dout
        for layer in reversed(range(self.num_layers)):
            caches, caches_of[layer] = caches_of[layer], []
            dx = None
            for d in range(D):
                dfinal = upstream[layer * D + d]
                r = run_backward(
                    cell,
                    g if D == 1 else g[d * n_a : (d + 1) * n_a, ...],
                    caches[d],
                    cell.forward_name,
                    dfinal=None if dfinal[0] is None else dfinal,
                    check_finite=check_finite,
                )
                dx = r["dx"] if dx is None else _sum_steps(xp, dx, r["dx"])
                keys = self.parameters[layer][d]
                grads[layer][d] = {"d" + k: r["d" + k] for k in keys}
                dinitial[layer * D + d] = tuple(r[f"d{s}0"] for s in cell.states)
                caches[d] = None  # released: later allocations reuse its memory
            # into the layer below's out, through the dropout applied between them
            below = masks[layer - 1] if layer > 0 else None
            g = dx if below is None else dx * below
        return {"dx": g, "dstate": self._join_state(xp, dinitial), "parameters": grads}


def dropout_mask(
    generator: Any, p: float, shape: tuple[int, ...], xp: Any, dtype: Any, device: Any
) -> Any:
    """Inverted dropout's mask of ``shape``: ``0`` with probability ``p``, else ``1 / (1 − p)``
    — drawn on the host from ``generator`` (the array API has no random generator) and copied
    once to ``device``."""
    keep = generator.random(shape) >= p
    return xp.asarray(keep / (1.0 - p), dtype=dtype, device=device)


def _stack_features(xp: Any, outs: list[Any]) -> Any:
    """The directions' outputs (n_a, m, T) stacked along the features, built time-major: the
    engine's outputs are views of ``(T, n_a, m)`` buffers, so the copy moves whole ``(n_a,
    m)`` blocks, and the next layer's time-major input is then this very buffer (no
    transposing copy)."""
    out = public(xp, xp.concat([xp.permute_dims(o, (2, 0, 1)) for o in outs], axis=1))
    if array_api_compat.is_dask_array(out):  # the next layer's x: sharded along m alone
        out = out.rechunk({0: -1})
    return out


def _sum_steps(xp: Any, a: Any, b: Any) -> Any:
    """``a + b`` for the two directions' ``dx`` (n, m, T), into ``a`` where the backend
    allows (both are the engine's fresh results). The engine returns them as views of
    ``(n, T, m)`` blocks (one flipped in time), so the sum runs in that order — contiguous
    ``m`` rows — and is viewed back."""
    swap = (0, 2, 1)
    total = get_ops(xp).accumulate(xp.permute_dims(a, swap), xp.permute_dims(b, swap))
    return xp.permute_dims(total, swap)


class RNN(RecurrentLayer):
    """Stacked (bi)directional vanilla RNN layers, PyTorch's ``nn.RNN``; ``nonlinearity``
    ``"tanh"`` (default) or ``"relu"``. See :class:`RecurrentLayer`.

    Examples
    --------
    >>> import numpy as np, xrnn
    >>> layer = xrnn.RNN(3, 5, num_layers=2, bidirectional=True)
    >>> x = np.random.default_rng(0).normal(size=(3, 4, 6))     # (n_x, m, T_x)
    >>> out, a_n = layer(x, lengths=[6, 2, 5, 1])
    >>> out.shape, a_n.shape          # (2·n_a, m, T_x), (num_layers·2, n_a, m)
    ((10, 4, 6), (4, 5, 4))
    >>> grads = layer.backward(np.ones_like(out))
    >>> grads["dx"].shape, grads["parameters"][1][0]["dWax"].shape
    ((3, 4, 6), (5, 10))
    """

    def __init__(self, n_x: int, n_a: int, *, nonlinearity: str = "tanh", **kw: Any) -> None:
        self.cell = rnn_cell_of(nonlinearity)
        self.nonlinearity = nonlinearity
        super().__init__(n_x, n_a, **kw)

    def _settings(self) -> str:
        extra = "" if self.nonlinearity == "tanh" else f", nonlinearity={self.nonlinearity!r}"
        return super()._settings() + extra


class LSTM(RecurrentLayer):
    """Stacked (bi)directional LSTM layers, PyTorch's ``nn.LSTM``; the state is the pair
    ``(a_n, c_n)``. See :class:`RecurrentLayer`."""

    cell = LSTM_CELL


class GRU(RecurrentLayer):
    """Stacked (bi)directional GRU layers, PyTorch's ``nn.GRU``. See :class:`RecurrentLayer`."""

    cell = GRU_CELL


def layer_for(cell: Any, n_x: int, n_a: int, **kw: Any) -> RecurrentLayer:
    """The layer class of a registered cell (or its name), e.g. for ``xrnn.charlm``."""
    spec = get_cell(cell)
    nonlinearity = next((k for k, c in NONLINEARITIES.items() if c is spec), None)
    if nonlinearity is not None:
        return RNN(n_x, n_a, nonlinearity=nonlinearity, **kw)
    for layer in (LSTM, GRU):
        if layer.cell is spec:
            return layer(n_x, n_a, **kw)
    return RecurrentLayer(n_x, n_a, cell=spec, **kw)
