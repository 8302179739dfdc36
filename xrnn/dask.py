"""Dask arrays: the sequence functions batch-sharded, lazily, one task per batch chunk.

A sequence function given Dask arrays chunked along the batch axis ``m`` (and only along it)
returns lazy Dask arrays: each batch chunk runs the ordinary in-memory engine (NumPy, or CuPy
for CuPy-backed chunks) as one task, so the time loop runs at NumPy speed inside a chunk and
the graph holds a few tasks per chunk whatever ``T_x`` is. The backward pass is one task per
chunk too; the parameter gradients are the sum of the chunks' (one more task, on a worker).
Nothing is computed until the caller asks (``dask.compute``, ``.compute()``, a distributed
``Client``), and the finiteness checks run inside the tasks.

Parameters may be NumPy/CuPy arrays or single-chunk Dask arrays; they enter the graph once
(one key that every chunk's task reads), not once per task.

>>> import numpy as np, dask.array as da, xrnn
>>> x = da.from_array(np.ones((3, 8, 5)), chunks=(3, 2, 5))  # 4 batch chunks
>>> p = xrnn.initialize_lstm(3, 4, seed=0)
>>> a, y, c, caches = xrnn.lstm_forward(x, da.zeros((4, 8), chunks=(4, 2)), p)
>>> a.chunks[1]  # lazy, sharded like x
(2, 2, 2, 2)
>>> in_memory = xrnn.lstm_forward(np.ones((3, 8, 5)), np.zeros((4, 8)), p)[0]
>>> bool(np.allclose(a.compute(), in_memory))
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import array_api_compat

from xrnn.backends import resolve
from xrnn.cells.base import Cell

__all__ = ["DaskCaches", "backward", "forward", "is_dask_call", "shard"]


# Whether arrays of a type are Dask arrays, by type: every public call asks for a dozen arrays
_DASK_TYPES: dict[type, bool] = {}


def _is_dask(a: Any) -> bool:
    if a is None:
        return False
    dask = _DASK_TYPES.get(type(a))
    if dask is None:
        dask = _DASK_TYPES.setdefault(type(a), array_api_compat.is_dask_array(a))
    return dask


def is_dask_call(*arrays: Any, parameters: Any = None) -> bool:
    """Whether a call's data arrays (or its parameters) are Dask arrays: this module runs it."""
    values = [*arrays, *(parameters.values() if isinstance(parameters, Mapping) else ())]
    return any(_is_dask(v) for v in values)


def _meta(a: Any) -> Any:
    """What a Dask array's chunks are (an empty array of their library and dtype)."""
    return a._meta if _is_dask(a) else a


def _batch_chunks(name: str, a: Any, batch_axis: int) -> tuple[int, ...]:
    """The chunks of ``a`` along its batch axis, after refusing chunks along any other."""
    for axis, chunks in enumerate(a.chunks):
        if axis != batch_axis and len(chunks) > 1:
            layout = ", ".join("-1" if i != batch_axis else "m_chunk" for i in range(a.ndim))
            raise ValueError(
                f"{name} is chunked along axis {axis} ({chunks}); xrnn shards only the batch "
                f"axis m (axis {batch_axis}): rechunk it, e.g. {name}.rechunk(({layout}))"
            )
    return tuple(a.chunks[batch_axis])


def _aligned(name: str, a: Any, chunks: tuple[int, ...], batch_axis: int) -> Any:
    """A Dask array ``a`` with its batch axis in ``chunks`` (states are small: realigned
    rather than refused); a non-Dask array is refused (mixing would copy it silently)."""
    if a is None:
        return None
    if not _is_dask(a):
        raise TypeError(
            f"{name} is a {type(a).__module__}.{type(a).__qualname__} but x is a Dask array; "
            f"pass every data array as a Dask array chunked along m (xrnn.dask.shard does it)"
        )
    _batch_chunks(name, a, batch_axis)
    return a if tuple(a.chunks[batch_axis]) == chunks else a.rechunk({batch_axis: chunks})


def _blocks(a: Any) -> list[Any]:
    """One delayed object per batch chunk of ``a`` (chunked along its batch axis alone, so the
    flattened grid of its blocks runs along that axis)."""
    return list(a.to_delayed(optimize_graph=False).ravel())


def _parameters(parameters: Any) -> Any:
    """The parameter dict as one delayed value: one key in the graph, read by every chunk."""
    import dask

    if not isinstance(parameters, Mapping):
        return parameters  # the engine's own check names the problem inside the task
    for key, value in parameters.items():
        if _is_dask(value) and any(len(c) > 1 for c in value.chunks):
            raise ValueError(
                f"parameters[{key!r}] is chunked {value.chunks}; parameters must be NumPy or "
                f"CuPy arrays or single-chunk Dask arrays: parameters[{key!r}].rechunk(-1)"
            )
    return dask.delayed(dict(parameters), pure=True, traverse=True)


def _from_blocks(blocks: list[Any], shapes: list[tuple[int, ...]], meta: Any) -> Any:
    """One lazy array from delayed blocks, joined along axis 1 — the batch axis of every
    sharded result (``(n, m, T)`` sequences and ``(n_a, m)`` states)."""
    import dask.array as da

    parts = [
        da.from_delayed(b, shape=s, dtype=meta.dtype, meta=meta)
        for b, s in zip(blocks, shapes, strict=True)
    ]
    return parts[0] if len(parts) == 1 else da.concatenate(parts, axis=1)


def _lengths_blocks(lengths: Any, chunks: tuple[int, ...]) -> list[Any]:
    """``lengths`` split along the batch like ``x``: None, host sequences or Dask arrays."""
    if lengths is None:
        return [None] * len(chunks)
    if _is_dask(lengths):
        return _blocks(_aligned("lengths", lengths, chunks, 0))
    if array_api_compat.is_array_api_obj(lengths) or isinstance(lengths, Sequence):
        host = list(lengths.tolist() if hasattr(lengths, "tolist") else lengths)
        if len(host) != sum(chunks):
            raise ValueError(
                f"lengths has {len(host)} entries; expected ({sum(chunks)},), one per sequence"
            )
        bounds = [sum(chunks[:i]) for i in range(len(chunks) + 1)]
        return [host[bounds[i] : bounds[i + 1]] for i in range(len(chunks))]
    raise TypeError("lengths must be an integer array of shape (m,) or a list of ints")


class DaskCaches:
    """``caches[0]`` of a Dask forward call: one delayed ``(step_caches, x)`` per batch chunk.

    Attributes
    ----------
    cell : Cell
    chunks : tuple of int
        The batch chunks.
    blocks : list of dask.delayed
        Each chunk's in-memory caches, computed (with the forward pass) when a result that
        needs them is.
    meta : array
        An empty array of the chunks' library and dtype.
    n_x, n_a, T : int
        The forward pass's sizes.
    """

    def __init__(
        self, cell: Cell, chunks: tuple[int, ...], blocks: list, meta: Any, shape: tuple
    ) -> None:
        self.cell, self.chunks, self.blocks, self.meta = cell, chunks, blocks, meta
        self.n_x, self.n_a, self.T = shape

    def __len__(self) -> int:
        return self.T

    def final_states(self) -> tuple:
        """Each state component after each sequence's last step, lazy ``(n_a, m)`` arrays
        chunked like the batch."""
        import dask

        finals = [dask.delayed(_final_states)(b) for b in self.blocks]
        return tuple(
            _from_blocks([f[i] for f in finals], [(self.n_a, mj) for mj in self.chunks], self.meta)
            for i in range(len(self.cell.states))
        )


def _final_states(caches: Any) -> tuple:
    return caches[0].final_states()


def _chunk_forward(
    cell: Cell,
    x: Any,
    initial: tuple,
    parameters: Any,
    lengths: Any,
    reverse: bool,
    check_finite: bool,
) -> tuple:
    from xrnn.core.engine import run_forward

    return run_forward(
        cell, x, initial, parameters, lengths=lengths, reverse=reverse,
        check_finite=check_finite, private=False,
    )  # fmt: skip


def forward(
    cell: Cell,
    x: Any,
    initial: tuple,
    parameters: Any,
    *,
    lengths: Any = None,
    reverse: bool = False,
    check_finite: bool = True,
) -> tuple[tuple, Any, tuple]:
    """:func:`xrnn.core.engine.run_forward` for Dask arrays: the same ``(outputs, y, caches)``,
    lazy, chunked along ``m`` like ``x``."""
    import dask

    if not _is_dask(x):
        raise TypeError(
            "x must be a Dask array when another argument is one (xrnn.dask.shard prepares "
            "x, the states and the parameters together)"
        )
    if x.ndim != 3:
        raise ValueError(f"x must be 3-D with shape (n_x, m, T_x); got shape {x.shape}")
    chunks = _batch_chunks("x", x, 1)
    names = [f"{s}0" for s in cell.states]
    states = [_aligned(n, s, chunks, 1) for n, s in zip(names, initial, strict=True)]
    n_x, _, T = map(int, x.shape)
    if states[0] is None or states[0].ndim != 2:
        raise ValueError(f"{names[0]} must be a 2-D Dask array of shape (n_a, m)")
    n_a = int(states[0].shape[0])
    for s in states:
        if s is not None and s.dtype != x.dtype:
            raise TypeError(f"the states have dtype {s.dtype} but x has dtype {x.dtype}")
    n_y = cell.validate(parameters, n_x, n_a)  # keys and shapes, from the metadata alone
    # library and dtype of the parameters against the chunks' (an empty array of their kind)
    resolve([("x", x._meta), *((f"parameters[{k!r}]", _meta(v)) for k, v in parameters.items())])
    params = _parameters(parameters)
    xs = _blocks(x)
    state_blocks = [[None] * len(chunks) if s is None else _blocks(s) for s in states]
    runs = [
        dask.delayed(_chunk_forward, pure=True)(
            cell,
            xs[j],
            tuple(b[j] for b in state_blocks),
            params,
            lens,
            reverse,
            check_finite,
        )  # fmt: skip
        for j, lens in enumerate(_lengths_blocks(lengths, chunks))
    ]
    meta = x._meta
    outputs = tuple(
        _from_blocks([r[0][i] for r in runs], [(n_a, mj, T) for mj in chunks], meta)
        for i in range(len(cell.states))
    )
    y = None
    if n_y is not None:
        y = _from_blocks([r[1] for r in runs], [(n_y, mj, T) for mj in chunks], meta)
    blocks = [r[2] for r in runs]
    return outputs, y, (DaskCaches(cell, chunks, blocks, meta, (n_x, n_a, T)), x)


def _chunk_backward(
    cell: Cell, da: Any, caches: Any, dfinal: tuple | None, forward_name: str, check_finite: bool
) -> dict[str, Any]:
    from xrnn.core.engine import run_backward

    return run_backward(cell, da, caches, forward_name, dfinal=dfinal, check_finite=check_finite)


def _sum_gradients(parts: list[dict[str, Any]], keys: list[str]) -> dict[str, Any]:
    out = {k: parts[0][k] for k in keys}
    for p in parts[1:]:
        for k in keys:
            out[k] = out[k] + p[k]
    return out


def backward(
    cell: Cell,
    da: Any,
    steps: DaskCaches,
    forward_name: str,
    *,
    dfinal: tuple | None = None,
    check_finite: bool = True,
) -> dict[str, Any]:
    """:func:`xrnn.core.engine.run_backward` for the caches of a Dask forward call: ``dx`` and the
    initial-state gradients chunked like the batch, the parameter gradients summed over the
    chunks; all lazy."""
    import dask

    chunks, n_a, T = steps.chunks, steps.n_a, steps.T
    if not _is_dask(da):
        raise TypeError("da must be a Dask array for the caches of a Dask forward call")
    if tuple(map(int, da.shape)) != (n_a, sum(chunks), T):
        raise ValueError(
            f"da has shape {tuple(da.shape)}; expected {(n_a, sum(chunks), T)} "
            f"(n_a, m, T_x) of the forward pass"
        )
    das = _blocks(_aligned("da", da, chunks, 1))
    finals: list[Any] = [None] * len(chunks)
    if dfinal is not None:
        names = [f"{s}_final" for s in cell.states]
        per = [_blocks(_aligned(n, d, chunks, 1)) for n, d in zip(names, dfinal, strict=True)]
        finals = [tuple(p[j] for p in per) for j in range(len(chunks))]
    runs = [
        dask.delayed(_chunk_backward, pure=True)(
            cell, das[j], steps.blocks[j], finals[j], forward_name, check_finite
        )
        for j in range(len(chunks))
    ]
    meta = steps.meta
    grads: dict[str, Any] = {
        "dx": _from_blocks([r["dx"] for r in runs], [(steps.n_x, mj, T) for mj in chunks], meta)
    }
    for s in cell.states:
        grads[f"d{s}0"] = _from_blocks(
            [r[f"d{s}0"] for r in runs], [(n_a, mj) for mj in chunks], meta
        )
    # the parameter gradients: one task sums the chunks' on a worker
    keys = ["d" + k for k in cell.keys]
    total = dask.delayed(_sum_gradients, pure=True)(runs, keys)
    for key, (shape, _) in cell.shapes(steps.n_x, n_a).items():
        grads["d" + key] = _from_blocks([total["d" + key]], [shape], meta)
    return grads


def shard(
    x: Any, parameters: Mapping[str, Any], *, chunks: int | tuple[int, ...], **states: Any
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Prepare a batch-sharded call: ``(x, parameters, states)`` as Dask arrays.

    ``x`` (n_x, m, T_x) becomes a Dask array chunked along ``m`` only, every state given as a
    keyword (``a0=…``, ``c0=…``, each (n_a, m)) is chunked the same way, and each parameter
    becomes a single-chunk Dask array. NumPy or CuPy inputs are wrapped (no copy); Dask inputs
    are rechunked. ``chunks`` is the batch chunk size, or a tuple of sizes summing to ``m``.

    Examples
    --------
    >>> import numpy as np, xrnn
    >>> p = xrnn.initialize_gru(3, 4, seed=0)
    >>> x, p, s = xrnn.dask.shard(np.ones((3, 10, 6)), p, chunks=5, a0=np.zeros((4, 10)))
    >>> a, _, caches = xrnn.gru_forward(x, s["a0"], p)
    >>> x.chunks, a.chunks
    (((3,), (5, 5), (6,)), ((4,), (5, 5), (6,)))
    """
    import dask.array as da

    def wrap(a: Any, batch_axis: int) -> Any:
        spec = tuple(chunks if i == batch_axis else -1 for i in range(a.ndim))
        return a.rechunk(spec) if _is_dask(a) else da.from_array(a, chunks=spec)

    return (
        wrap(x, 1),
        {k: v.rechunk(-1) if _is_dask(v) else da.from_array(v, chunks=-1)
         for k, v in parameters.items()},
        {k: wrap(v, 1) for k, v in states.items()},
    )  # fmt: skip
