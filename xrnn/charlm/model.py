"""The character-level language model: any registered cell (RNN, LSTM, GRU) and a softmax
output layer.

A name ``"abc"`` is read as inputs ``[∅, a, b, c]`` (``∅`` the all-zero vector, as in the
exercise) with targets ``[a, b, c, ⏎]``; a batch of names of different lengths is right-padded,
and the padded steps carry zero loss and zero gradient (a left-to-right RNN's earlier steps never
see them, so no kernel-level mask is needed).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xrnn.backends import resolve
from xrnn.cells.base import Cell, get_cell
from xrnn.charlm.checkpoint import layer_key
from xrnn.charlm.vocab import Vocabulary
from xrnn.core.activations import softmax
from xrnn.core.engine import run_cell_forward
from xrnn.core.host import to_numpy
from xrnn.core.layout import output_layer_backward
from xrnn.core.params import initialize, positive_int
from xrnn.layers import dropout_mask, layer_for

__all__ = ["CharModel"]


def _check_cell(cell: Any) -> str:
    return get_cell(cell).name


def _init(
    cell: Cell, V: int, hidden: int, layers: int, seed: int = 0, like: Any = None
) -> dict[str, Any]:
    """Every layer's parameters, then the output layer, from one seeded sampler (a one-layer
    model draws what ``initialize_<cell>(V, hidden, V, seed=seed)`` draws)."""
    from xrnn.core.host import uniform_sampler

    uniform = uniform_sampler(seed, hidden)
    params: dict[str, Any] = {}
    for layer in range(layers):
        n_in = V if layer == 0 else hidden
        n_y = V if layer == layers - 1 else None
        drawn = initialize(
            cell.draw, cell.output_keys, n_in, hidden, n_y, seed=seed, dtype=None, like=like,
            uniform=uniform,
        )  # fmt: skip
        for k, v in drawn.items():
            params[k if k in cell.output_keys else layer_key(layer, k)] = v
    return params


def _uniforms(key: Any, n: int, step: int) -> np.ndarray:
    """(n,) uniform numbers in [0, 1) for step ``step`` of names ``0 … n-1``, each a function
    of ``(key, name, step)`` only: SplitMix64's output function applied to the counter
    ``key + φ·(name·2³² + step + 1)`` (mod 2⁶⁴), its top 53 bits as a fraction. Name ``j``'s
    draws are the same whatever ``n`` is, and cost O(n) a step."""
    golden, m1, m2 = (
        np.uint64(0x9E3779B97F4A7C15),
        np.uint64(0xBF58476D1CE4E5B9),
        np.uint64(0x94D049BB133111EB),
    )
    counter = np.arange(n, dtype=np.uint64) << np.uint64(32)
    counter += np.uint64(step + 1)
    z = np.uint64(key) + golden * counter  # uint64 arithmetic wraps, as the mix intends
    z = (z ^ (z >> np.uint64(30))) * m1
    z = (z ^ (z >> np.uint64(27))) * m2
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


class CharModel:
    """A trained (or freshly initialised) character model.

    Attributes
    ----------
    cell : str
        A registered cell's name (``"rnn"``, ``"lstm"``, ``"gru"``, ``"rnn_relu"``).
    vocab : Vocabulary
    hidden : int
        ``n_a`` of every layer.
    layers : int
        Stacked recurrent layers (:class:`xrnn.layers.RecurrentLayer`).
    dropout : float
        Training-time dropout on each recurrent layer's output: between layers (as PyTorch's
        ``dropout=``) and on the top layer's output before the softmax layer (as PyTorch's
        word-language-model example). Masks come from ``numpy.random.default_rng(seed)``.
    params : dict of arrays
        Layer 0's parameters under the cell's keys, deeper layers' under ``l1.Wf``, …, and
        the output layer (``Wya``/``by`` or ``Wy``/``by``), all of one array library, device
        and floating dtype.
    """

    def __init__(
        self,
        cell: str,
        vocab: Vocabulary,
        params: Mapping[str, Any],
        *,
        layers: int = 1,
        dropout: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.spec = get_cell(cell)
        self.cell = self.spec.name
        self.vocab = vocab
        positive_int("layers", layers)  # dropout is checked by the layer below
        self.layers, self.dropout = layers, float(dropout)
        head_keys = self.spec.output_keys
        wanted = [layer_key(n, k) for n in range(layers) for k in self.spec.keys]
        missing = [k for k in (*wanted, *head_keys) if k not in params]
        if missing:
            raise ValueError(f"{cell} model parameters are missing {missing}")
        self.params = dict(params)
        ctx = resolve([(f"params[{k!r}]", v) for k, v in self.params.items()], check_finite=False)
        self.xp, self.device, self.dtype = ctx.xp, ctx.device, ctx.dtype
        self.hidden = int(self.params[head_keys[0]].shape[1])
        # the functional engine plus bookkeeping; its parameters are set from params per call
        self._stack = layer_for(
            self.cell,
            len(vocab),
            self.hidden,
            num_layers=layers,
            dropout=dropout,
            seed=seed,
            parameters=self._per_layer(),
        )

    @classmethod
    def initialise(
        cls,
        cell: str,
        vocab: Vocabulary,
        hidden: int,
        *,
        seed: int = 0,
        like: Any = None,
        layers: int = 1,
        dropout: float = 0.0,
    ) -> CharModel:
        spec = get_cell(cell)
        params = _init(spec, len(vocab), hidden, layers, seed, like)
        return cls(cell, vocab, params, layers=layers, dropout=dropout, seed=seed)

    def _layer(self, training: bool) -> Any:
        """The stacked layer, holding this model's current parameters."""
        stack = self._stack
        stack.parameters = self._per_layer()
        return stack.train(training)

    def _per_layer(self) -> list[list[dict[str, Any]]]:
        """``params`` in the layer's structure: one direction's dict per layer."""
        return [
            [{k: self.params[layer_key(n, k)] for k in self.spec.keys}] for n in range(self.layers)
        ]

    # --- batches ---------------------------------------------------------------------------

    def _encode(self, names: Sequence[str]) -> tuple[Any, Any, Any, int]:
        """One-hot inputs ``X (V, m, T)``, one-hot targets ``Y (V, m, T)`` and the padding
        mask ``(m, T)`` (1 on real steps), built on the model's device; and the character
        count (end-of-name newlines included)."""
        xp, V = self.xp, len(self.vocab)
        codes = [self.vocab.encode(n) for n in names]
        T = max(len(c) for c in codes) + 1
        # -1 matches no class: the all-zero input of step 0 and of padding, the target of padding
        inputs = [[-1, *c] + [-1] * (T - len(c) - 1) for c in codes]
        targets = [[*c, 0] + [-1] * (T - len(c) - 1) for c in codes]
        classes = xp.reshape(xp.arange(V, device=self.device), (V, 1, 1))
        X = xp.astype(xp.asarray(inputs, device=self.device)[None, :, :] == classes, self.dtype)
        tgt = xp.asarray(targets, device=self.device)
        Y = xp.astype(tgt[None, :, :] == classes, self.dtype)
        mask = xp.astype(tgt >= 0, self.dtype)
        return X, Y, mask, sum(len(c) + 1 for c in codes)

    def _forward(self, X: Any, training: bool = False) -> tuple[Any, Any, Any]:
        """The top layer's hidden states ``a (n_a, m, T)`` (after dropout when training),
        log-probabilities ``(V, m, T)`` and the dropout mask on ``a`` (None: no dropout)."""
        xp = self.xp
        W, b = self.spec.output_keys
        stack = self._layer(training)
        a, _ = stack(X, check_finite=False)
        mask = None
        if training and self.dropout > 0:
            shape = tuple(map(int, a.shape))
            mask = dropout_mask(stack.generator, self.dropout, shape, xp, self.dtype, self.device)
            a = a * mask
        n_a, m, T = map(int, a.shape)
        z = xp.matmul(self.params[W], xp.reshape(a, (n_a, m * T))) + self.params[b]
        zmax = xp.max(z, axis=0, keepdims=True)
        logp = z - zmax - xp.log(xp.sum(xp.exp(z - zmax), axis=0, keepdims=True))
        return a, xp.reshape(logp, (int(z.shape[0]), m, T)), mask

    def loss_and_gradients(self, names: Sequence[str]) -> tuple[float, dict[str, Any]]:
        """Mean over the batch's names of each name's summed cross-entropy (nats), and its
        gradient with respect to every parameter (keys ``"d" + name``).

        With one name per batch this is the exercise's loss: the summed cross-entropy of the
        name's characters, end-of-name included.
        """
        xp = self.xp
        X, Y, mask, _ = self._encode(names)
        m = len(names)
        a, logp, dropped = self._forward(X, training=True)
        loss = -xp.sum(Y * logp) / m
        dz = (xp.exp(logp) - Y) * (mask[None, :, :] / m)  # d loss / d logits, zero on padding
        W, b = self.spec.output_keys
        dW, db, da = output_layer_backward(xp, self.params[W], a, dz)
        grads = {"d" + W: dW, "d" + b: db}
        if dropped is not None:
            da = da * dropped
        g = self._stack.backward(da, check_finite=False)["parameters"]
        for n in range(self.layers):
            grads.update({"d" + layer_key(n, k): g[n][0]["d" + k] for k in self.spec.keys})
        return float(loss), grads

    # --- evaluation and sampling -------------------------------------------------------------

    def evaluate(self, names: Sequence[str], *, batch_size: int = 256) -> float:
        """Bits per character over ``names``, each end-of-name newline counted as a character.

        A character outside the vocabulary is a ``ValueError`` naming it.
        """
        names = list(names)
        if not names:
            raise ValueError("evaluate needs at least one name")
        for n in names:
            self.vocab.encode(n)  # fail before any work, naming the character
        nats, chars = 0.0, 0
        for i in range(0, len(names), batch_size):
            X, Y, _, count = self._encode(names[i : i + batch_size])
            _, logp, _ = self._forward(X)
            nats -= float(self.xp.sum(Y * logp))
            chars += count
        return nats / chars / math.log(2)

    def sample(
        self, n: int, *, seed: int = 0, temperature: float = 1.0, max_length: int = 40
    ) -> list[str]:
        """Invent ``n`` names, one character at a time, all ``n`` in parallel on the device.

        Each step's probabilities ``softmax(logits / temperature)`` are copied to the host (V×n
        numbers) and the characters are drawn there — the array API has no random generator
        —, name ``j``'s at step ``t`` with a uniform number that depends on ``(seed, j, t)``
        alone (:func:`_uniforms`): a seed gives the same names on every backend, and the first
        names of ``n = 8`` are those of ``n = 3``. A name ends at the newline or after
        ``max_length`` characters, and
        has at least one (the first character is never the newline). Weights whose
        probabilities are not finite are a ``ValueError``.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        if not temperature > 0 or not math.isfinite(temperature):
            raise ValueError(f"temperature must be a positive number, got {temperature!r}")
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
            raise ValueError(f"max_length must be a positive integer, got {max_length!r}")
        if n == 0:
            return []
        xp, V = self.xp, len(self.vocab)
        key = np.random.SeedSequence(seed).generate_state(1, np.uint64)[0]
        cell = self.spec
        W, b = cell.output_keys
        kernels = [{k: self.params[layer_key(d, k)] for k in cell.keys} for d in range(self.layers)]
        states = [
            tuple(
                xp.zeros((self.hidden, n), dtype=self.dtype, device=self.device)
                for _ in cell.states
            )
            for _ in kernels
        ]
        x = xp.zeros((V, n), dtype=self.dtype, device=self.device)
        classes = xp.reshape(xp.arange(V, device=self.device), (V, 1))
        out: list[list[int]] = [[] for _ in range(n)]
        done = np.zeros(n, dtype=bool)
        for step in range(max_length):
            inp = x
            for d, kernel in enumerate(kernels):
                states[d], _, _ = run_cell_forward(cell, inp, states[d], kernel, check_finite=False)
                inp = states[d][0]
            z = xp.matmul(self.params[W], inp) + self.params[b]
            # the maximum subtracted first and the scale bounded: a tiny temperature cannot
            # overflow (below 1e-30 every temperature is the greedy pick of the likeliest)
            logits = (z - xp.max(z, axis=0, keepdims=True)) * min(1.0 / temperature, 1e30)
            p = to_numpy(softmax(logits)).astype(np.float64)
            if not np.isfinite(p).all():  # else every draw reads as "end of name"
                raise ValueError(
                    "the model's next-character probabilities are not finite (its weights "
                    "overflow); it cannot sample names"
                )
            if step == 0:  # no empty name: the first character is any but the newline
                likeliest = 1 + np.argmax(p[1:], axis=0)
                p[0] = 0.0
                none_left = ~(p.sum(axis=0) > 0)  # (every other character underflowed)
                p[likeliest[none_left], np.flatnonzero(none_left)] = 1.0
            cdf = np.cumsum(p, axis=0)
            draws = (cdf < _uniforms(key, n, step) * cdf[-1]).sum(axis=0).clip(0, V - 1)
            for j in np.flatnonzero(~done):
                if draws[j] == 0:
                    done[j] = True
                else:
                    out[j].append(int(draws[j]))
            if done.all():
                break
            x = xp.astype(
                xp.asarray(draws.tolist(), device=self.device)[None, :] == classes, self.dtype
            )
        return [self.vocab.decode(o) for o in out]

    # --- checkpoints -------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """Write an ``.npz`` checkpoint: the parameters (as NumPy) plus JSON metadata
        (format version, cell, sizes, vocabulary), read back by :func:`load`. Written to a
        temporary file in the same folder and renamed, so an interrupted save never leaves a
        half-written checkpoint; the file gets the user's usual permissions (umask). A
        ``ValueError`` names the target when it cannot be written."""
        from xrnn.charlm.checkpoint import save

        return save(self, path)
