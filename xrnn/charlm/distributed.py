"""Data-parallel training steps on a ``dask.distributed`` client.

Each step scatters the parameters to every worker once (``broadcast=True``), splits the batch
into one contiguous shard per worker thread (Dask pins each worker's BLAS to one thread, so the
threads are what runs side by side), computes each shard's summed loss and gradients on the
workers, sums the shards' on a worker, and brings back only that sum: one parameter update per
step, on the client, by the ordinary optimiser. The loss and gradients are the batch means the
single-process step computes (each shard's sums, added, divided by the batch size), so without
dropout the same seed gives the same loss curve to rounding. With dropout each shard draws its
own masks (from a generator seeded by the seed, the step and the shard), so runs agree in
distribution but not mask for mask with a single process.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["ShardedSteps"]


def _shard_sums(
    cell: str,
    chars: list[str],
    params: dict[str, Any],
    layers: int,
    dropout: float,
    seed: int,
    names: Sequence[str],
) -> tuple[float, dict[str, Any]]:
    """On a worker: the shard's summed loss and summed gradients (its mean times its size)."""
    from xrnn.charlm.model import CharModel
    from xrnn.charlm.vocab import Vocabulary

    model = CharModel(cell, Vocabulary(chars), params, layers=layers, dropout=dropout, seed=seed)
    loss, grads = model.loss_and_gradients(names)
    m = len(names)
    return loss * m, {k: g * m for k, g in grads.items()}


def _add(parts: list[tuple[float, dict[str, Any]]]) -> tuple[float, dict[str, Any]]:
    loss, grads = parts[0][0], dict(parts[0][1])
    for part_loss, part in parts[1:]:
        loss += part_loss
        for k, g in part.items():
            grads[k] = grads[k] + g
    return loss, grads


class ShardedSteps:
    """``loss_and_gradients`` of a model, computed shard by shard on ``client``'s workers.

    Parameters
    ----------
    client : distributed.Client
    seed : int
        Seeds each shard's dropout masks, with the step and the shard's index.
    """

    def __init__(self, client: Any, seed: int) -> None:
        self.client, self.seed = client, seed
        workers = client.scheduler_info()["workers"].values()
        self.threads = max(1, sum(int(w.get("nthreads", 1)) for w in workers))

    def __call__(self, model: Any, names: Sequence[str], step: int) -> tuple[float, dict]:
        client, m = self.client, len(names)
        shards = min(self.threads, m)
        bounds = [m * i // shards for i in range(shards + 1)]
        # once per step, to every worker, as one object (scattering the dict itself would
        # make its keys "Wf", … the data's keys, the same every step)
        (params,) = client.scatter([model.params], broadcast=True)
        parts = [
            client.submit(
                _shard_sums,
                model.cell,
                model.vocab.chars,
                params,
                model.layers,
                model.dropout,
                (self.seed * 1_000_003 + step) * 1024 + i,
                list(names[bounds[i] : bounds[i + 1]]),
                pure=False,
            )  # fmt: skip
            for i in range(shards)
        ]
        loss, grads = client.submit(_add, parts).result()  # summed on a worker; one transfer
        return loss / m, {k: g / m for k, g in grads.items()}
