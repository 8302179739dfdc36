"""Training: mini-batches of names, clipping, SGD/Adam, early stopping on a validation split."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from xrnn.charlm.corpus import bundled_names, holdout_split, prepare_names
from xrnn.charlm.distributed import ShardedSteps
from xrnn.charlm.model import CharModel, _check_cell
from xrnn.charlm.optim import SGD, Adam, clip_by_global_norm
from xrnn.charlm.optim import clip as clip_values
from xrnn.charlm.vocab import Vocabulary
from xrnn.core.params import positive_int

__all__ = ["resolve_device", "train"]

# Default validation interval, in training names seen (see ``eval_every``).
VALIDATE_EVERY_NAMES = 1600


# A loss this many times the first step's (an untrained model's) has diverged: training never
# makes a model that much worse than chance, and a finite but exploding loss (an enormous
# learning rate: 6.6e32 after a few steps) must stop the run as a non-finite one does
EXPLODED = 100


def _positive_int(name: str, value: Any) -> int:
    positive_int(name, value)  # the same check and message as the initialisers'
    return value


def _optional_positive_float(name: str, value: Any) -> float | None:
    return None if value is None else _positive_float(name, value)


def _positive_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


def resolve_device(device: str | None) -> Any:
    """An array whose library and device the model should use, from ``cpu``/``gpu``/``auto``.

    ``cpu`` (and None) is NumPy; ``gpu`` is CuPy and an error where ``cupy.is_available()`` is
    false; ``auto`` takes the GPU when there is one. Returns a tiny float32 array (``like=``).
    """
    import numpy as np

    if device in (None, "cpu"):
        return np.zeros((1,), dtype=np.float32)
    if device not in ("gpu", "auto"):
        raise ValueError(f"device must be 'cpu', 'gpu' or 'auto', got {device!r}")
    try:
        import cupy

        available = bool(cupy.is_available())
    except ImportError:
        available = False
    if available:
        return cupy.zeros((1,), dtype=cupy.float32)
    if device == "gpu":
        raise ValueError(
            "device='gpu' needs CuPy and a CUDA GPU, and cupy.is_available() is false here "
            "(install the 'gpu' extra on a machine with a GPU, or use device='cpu')"
        )
    return np.zeros((1,), dtype=np.float32)


def train(
    names: Sequence[str] | None = None,
    *,
    cell: str = "lstm",
    hidden: int = 128,
    layers: int = 2,
    dropout: float = 0.3,
    steps: int = 3000,
    batch_size: int = 32,
    lr: float = 0.005,
    optimizer: str = "adam",
    clip: float | None = 5.0,
    clip_norm: float | None = None,
    seed: int = 0,
    device: str | None = None,
    like: Any = None,
    validation: float = 0.1,
    alphabet: str = "",
    eval_every: int | None = None,
    patience: int = 8,
    lr_decay: float | None = 0.3,
    decays: int = 2,
    average: float | None = 0.99,
    progress: Callable[[dict[str, Any]], None] | None = None,
    client: Any = None,
) -> tuple[CharModel, dict[str, Any]]:
    """Train a character-level language model on ``names``.

    The defaults — a 2-layer, 128-unit LSTM with dropout 0.3, Adam at 0.005 cut to 0.3× on each
    of two validation plateaus, a moving average of the parameters (0.99) validated and kept —
    gave the best held-out bits/char on the bundled names among the settings tried (docs/charlm.md,
    *Results*).

    Parameters
    ----------
    names : sequence of str, optional
        Training names (lowercased; blank lines and duplicates dropped). Default: the bundled
        dinosaur names less the fixed held-out 10 % of :func:`holdout_split`, so that
        ``model.evaluate(holdout_split(bundled_names())[1])`` is a fair held-out score.
    cell : {"lstm", "gru", "rnn"}
        Any registered cell (:data:`xrnn.CELLS`).
    hidden : int
        Hidden units ``n_a`` of every layer.
    layers : int
        Stacked recurrent layers.
    dropout : float
        Dropout probability on every recurrent layer's output during training (between layers
        and before the softmax layer); the masks are seeded by ``seed``.
    steps : int
        Maximum number of parameter updates (early stopping may end sooner).
    batch_size : int
        Names per update; 1 is the exercise's one-name-per-step mode.
    lr : float
        Learning rate.
    optimizer : {"adam", "sgd"}
    clip : float or None
        Elementwise gradient clipping bound, as the exercise's ``clip`` (None: no clipping).
    clip_norm : float or None
        Global-norm clipping bound, applied after ``clip`` (None: off).
    seed : int
        Seeds the initial weights, the validation split and the batch order.
    device : {"cpu", "gpu", "auto"}, optional
        Where to train (NumPy, or CuPy on a GPU); see :func:`resolve_device`.
    like : array, optional
        Train in this array's library, device and dtype instead (e.g. a ``torch`` tensor or a
        float64 NumPy array); overrides ``device``.
    validation : float
        Fraction of the training names carved out for early stopping (0 turns it off).
    alphabet : str
        Characters the vocabulary must hold besides those of ``names`` — e.g. those of the
        held-out names you will evaluate on.
    eval_every : int, optional
        Validate every ``eval_every`` steps; default: every 1,600 names (50 steps of 32, 1,600
        steps of one name), so validation is as frequent, and as noisy, in every batch mode.
    lr_decay : float or None
        On a plateau (``patience`` validations without a new best) go back to the best
        parameters seen and multiply the learning rate by ``lr_decay``, up to ``decays`` times,
        before stopping (None: stop at the first plateau).
    decays : int
        How many times ``lr_decay`` may apply.
    average : float or None
        Validate, keep and return an exponential moving average of the parameters,
        ``avg ← average · avg + (1 − average) · params`` after every step (None: the
        parameters themselves).
    patience : int
        Stop after ``patience`` validations without a new best, and return the best parameters
        seen.
    progress : callable, optional
        Called after every step with ``{"step", "loss", "names_per_s"}`` and, after each
        validation, ``"val_bpc"``.
    client : distributed.Client, optional
        Train data-parallel on its workers: each step's batch is split into one shard per
        worker thread, the shards' gradients are computed there and summed by Dask, and the client
        makes one update (:mod:`xrnn.charlm.distributed`). Without dropout the same seed gives
        the single-process loss curve to rounding.

    Returns
    -------
    model : CharModel
    history : dict
        ``loss`` (per-step training loss: mean over the batch of each name's summed
        cross-entropy, in nats), ``val_bpc`` (``[step, bits/char]`` pairs), ``best_step``,
        ``steps`` (updates done), ``seconds``, ``train_names``, ``validation_names``.
    """
    cell = _check_cell(cell)
    steps = _positive_int("steps", steps)
    batch_size = _positive_int("batch_size", batch_size)
    hidden = _positive_int("hidden", hidden)
    layers = _positive_int("layers", layers)
    if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
    if eval_every is None:
        eval_every = max(1, -(-VALIDATE_EVERY_NAMES // batch_size))
    eval_every = _positive_int("eval_every", eval_every)
    patience = _positive_int("patience", patience)
    if lr_decay is not None and not (isinstance(lr_decay, int | float) and 0 < lr_decay < 1):
        raise ValueError(f"lr_decay must be a number in (0, 1) or None, got {lr_decay!r}")
    if isinstance(decays, bool) or not isinstance(decays, int) or decays < 0:
        raise ValueError(f"decays must be a non-negative integer, got {decays!r}")
    if average is not None and not (isinstance(average, int | float) and 0 < average < 1):
        raise ValueError(f"average must be a number in (0, 1) or None, got {average!r}")
    lr = _positive_float("lr", lr)
    clip = _optional_positive_float("clip", clip)
    clip_norm = _optional_positive_float("clip_norm", clip_norm)
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    if not 0 <= validation < 1:
        raise ValueError(f"validation must be a fraction in [0, 1), got {validation!r}")
    if names is None:
        names, held_out = holdout_split(bundled_names())
        alphabet += "".join(held_out)
    if isinstance(names, str):
        raise ValueError("names must be a sequence of names, not one string")
    names = prepare_names(names)
    if len(names) < 2:
        raise ValueError(f"training needs at least 2 distinct names, got {len(names)}")
    if like is None:
        like = resolve_device(device)

    val_names: list[str] = []
    if validation > 0 and len(names) >= 10:
        names, val_names = holdout_split(names, validation, seed=seed + 1)
    vocab = Vocabulary.from_names([*names, *val_names, alphabet])
    model = CharModel.initialise(
        cell, vocab, hidden, seed=seed, like=like, layers=layers, dropout=dropout
    )
    opt = Adam(lr) if optimizer == "adam" else SGD(lr)
    sharded = None if client is None else ShardedSteps(client, seed)
    order = random.Random(seed)
    history: dict[str, Any] = {
        "loss": [],
        "val_bpc": [],
        "best_step": 0,
        "lr_decays": [],
        "steps": 0,
        "train_names": len(names),
        "validation_names": len(val_names),
    }
    best = (math.inf, model.params)
    averaged = model.params  # the moving average (the parameters themselves without one)
    stale = 0
    pool: list[str] = []  # the shuffled names still to come, from pool[cursor] on
    cursor = 0
    start = time.perf_counter()
    for step in range(1, steps + 1):
        if len(pool) - cursor < batch_size:  # epochs one after another, each shuffled anew
            pool, cursor = pool[cursor:], 0  # once per epoch, not per step
            while len(pool) < batch_size:  # (extended in place: a batch of many epochs
                epoch = list(names)  # costs its size, not its size squared)
                order.shuffle(epoch)
                pool.extend(epoch)
        batch = pool[cursor : cursor + batch_size]
        cursor += batch_size
        if sharded is None:
            loss, grads = model.loss_and_gradients(batch)
        else:
            loss, grads = sharded(model, batch, step)
        if not math.isfinite(loss) or (step > 1 and loss > EXPLODED * history["loss"][0]):
            raise FloatingPointError(
                f"training diverged at step {step} (loss {loss}): lower the learning rate or "
                "enable clipping"
            )
        if clip is not None:
            grads = clip_values(grads, clip)
        if clip_norm is not None:
            grads = clip_by_global_norm(grads, clip_norm)
        model.params = opt.step(model.params, grads)
        if average is not None:
            averaged = {
                k: average * averaged[k] + (1 - average) * p for k, p in model.params.items()
            }
        else:
            averaged = model.params
        history["loss"].append(loss)
        history["steps"] = step
        report: dict[str, Any] = {
            "step": step,
            "loss": loss,
            "names_per_s": step * batch_size / (time.perf_counter() - start),
        }
        if val_names and (step % eval_every == 0 or step == steps):
            live, model.params = model.params, averaged
            bpc = model.evaluate(val_names)
            model.params = live
            history["val_bpc"].append([step, bpc])
            report["val_bpc"] = bpc
            if bpc < best[0]:
                best, stale = (bpc, averaged), 0
                history["best_step"] = step
            else:
                stale += 1
        if progress is not None:
            progress(report)
        if val_names and stale >= patience:
            if lr_decay is None or len(history["lr_decays"]) >= decays:
                break
            opt.lr *= lr_decay  # a plateau: resume from the best parameters, more slowly
            model.params = averaged = best[1]
            stale = 0
            history["lr_decays"].append(step)
    if val_names:
        model.params = best[1]
    else:
        model.params = averaged
        history["best_step"] = history["steps"]
    history["seconds"] = time.perf_counter() - start
    return model, history
