"""xrnn inside PyTorch programs: ``torch.nn`` drop-ins (``xrnn.torch.LSTM``, ...,
:mod:`xrnn.torch.nn`) and the autograd operator they run on.

A sequence forward on tensors that autograd records — or that ``torch.compile`` or a
``torch.func`` transform traces — runs as one PyTorch operator, ``torch.ops.xrnn.sequence``,
whose backward is xrnn's own (:mod:`xrnn.torch.autograd`); one on CPU tensors that autograd
does not record runs whole on NumPy views of them (:mod:`xrnn.torch.host`). This module decides
which calls those are without importing torch: a program that never imported torch passes no
tensors.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from functools import cache
from typing import Any

__all__ = ["GRU", "LSTM", "RNN", "Recurrent", "hosted", "records"]

_MODULES = ("GRU", "LSTM", "RNN", "Recurrent")


def __getattr__(name: str) -> Any:
    """``xrnn.torch.LSTM`` and the other ``torch.nn`` drop-ins (:mod:`xrnn.torch.nn`),
    imported with torch when first asked for."""
    if name in _MODULES:
        from xrnn.torch import nn

        return getattr(nn, name)
    raise AttributeError(f"module 'xrnn.torch' has no attribute {name!r}")


def hosted(x: Any) -> bool:
    """Whether a sequence call on ``x`` (a forward, or a backward over its caches) that
    autograd does not record (see :func:`records`) runs whole on the compiled NumPy kernels, on
    the tensors' memory (:mod:`xrnn.torch.host`): a CPU tensor, with the kernels on."""
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(x, torch.Tensor) or not x.is_cpu:
        return False
    return _kernels_on()


@cache
def _kernels_on() -> bool:
    """Whether the compiled NumPy kernels are on: read once, as the NumPy backend reads it
    (:func:`xrnn.backends.jit_enabled`)."""
    from xrnn.backends import jit_enabled

    return jit_enabled()


def records(*arrays: Any, parameters: Any = None) -> bool:
    """Whether a call's arrays are PyTorch tensors that autograd records (grad mode on and
    one of them requires a gradient), that ``torch.compile`` traces, or that a ``torch.func``
    transform (``vmap``, ``grad``) wraps: such a call runs as one operator."""
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    values = [*arrays, *(parameters.values() if isinstance(parameters, Mapping) else ())]
    tensors = [v for v in values if isinstance(v, torch.Tensor)]
    if not tensors:
        return False
    if torch.compiler.is_compiling():
        return True
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return True
    wrapped = torch._C._functorch.is_functorch_wrapped_tensor
    return any(wrapped(t) for t in tensors)
