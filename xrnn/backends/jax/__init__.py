"""JAX's overrides of the reference (:class:`xrnn.core.ops.Ops`): the work outside the time loop in
as few compiled programs as possible.

Outside ``jax.jit`` every ``jax.numpy`` call on arrays of a new shape compiles a program of its
own, some 10–30 ms each: a call's finiteness check (a sum per array, then one over them all)
and its output layer (matmul, bias, softmax) were a dozen such programs for every new
``(n_x, m, T)``, more than the time loop's own (:mod:`xrnn.jax.scan`). Here each is one
jitted function, compiled once per shape.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from xrnn.core.layout import output_layer_forward
from xrnn.core.ops import Ops

__all__ = ["JaxOps"]


@jax.jit
def _failures(values: tuple, conditions: tuple) -> Any:
    """``Σ sum·0`` over ``values`` plus the number of false ``conditions``: 0 when every value
    is finite and every condition holds (see :meth:`xrnn.core.ops.Ops.all_finite`)."""
    total = jnp.zeros((), dtype=jnp.float32)
    for value in values:
        total = total + (jnp.sum(value) * 0).astype(jnp.float32)
    for ok in conditions:
        total = total + jnp.logical_not(ok).astype(jnp.float32)
    return total


@jax.jit
def _output_layer(W: Any, b: Any, H: Any) -> Any:
    return output_layer_forward(jnp, W, b, H)


class JaxOps(Ops):
    """The reference's step work (JAX arrays are immutable), with the checks and the output
    layer compiled whole."""

    def all_finite(self, values: list, conditions: list) -> bool:
        return float(_failures(tuple(values), tuple(conditions))) == 0

    def output_layer(self, W: Any, b: Any, H: Any) -> Any:
        return _output_layer(W, b, H)
