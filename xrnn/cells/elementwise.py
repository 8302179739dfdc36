"""A cell written once as elementwise math: :class:`ElementwiseCell`.

A cell's whole definition is its gate layout, its per-unit vectors, its state components, the
values its forward step keeps for the backward step, and two plain functions over a small math
namespace ``m`` (:data:`MATH`: ``m.sigmoid``, ``m.tanh``, ``m.exp``, ``m.log``, ``m.sqrt``,
``m.abs``, ``m.maximum``, ``m.minimum``, ``m.where``) and Python's arithmetic::

    forward(m, *z, *v, *prev)                  -> (new states, saved values)
    backward(m, *saved, *v, *prev, *new, *up)  -> (dz, dv, dprev)     (optional)

``z`` are the gates' pre-activations ``W·[a⟨t-1⟩; x⟨t⟩] + b·`` in the order of
:attr:`ElementwiseCell.gates`, ``v`` the vectors (each ``(n_a, 1)``, broadcast over the
batch), ``prev``/``new`` the state components before and after the step, ``up`` the upstream
gradient of each new state component. The backward returns the gradient of each ``z``, each
vector's per-element gradient (the engine sums it over steps and batch) and the gradient of
each previous state component that does not pass through the recurrent weights (None where
there is none: the hidden state's, for most cells).

Every backend runs these same two functions: the generic array-API path calls them on whole
``(n_a, m)`` blocks with ``m`` bound to the arrays' namespace (:class:`ArrayMath`); the
compiled paths (:mod:`xrnn.cells.trace`) trace them once into straight-line code.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any, ClassVar

from xrnn.cells.base import GatedCell
from xrnn.cells.trace import Program, derive, trace
from xrnn.core.activations import sigmoid

__all__ = ["MATH", "ArrayMath", "ElementwiseCell"]

# the math namespace every cell may use, and nothing else: each backend supplies all of them
MATH = ("sigmoid", "tanh", "exp", "log", "sqrt", "abs", "maximum", "minimum", "where")


class ArrayMath:
    """The math namespace on whole arrays of the array-API namespace ``xp``."""

    def __init__(self, xp: Any) -> None:
        self.xp = xp

    def sigmoid(self, z: Any) -> Any:
        return sigmoid(z)

    def tanh(self, z: Any) -> Any:
        return self.xp.tanh(z)

    def exp(self, z: Any) -> Any:
        return self.xp.exp(z)

    def log(self, z: Any) -> Any:
        return self.xp.log(z)

    def sqrt(self, z: Any) -> Any:
        return self.xp.sqrt(z)

    def abs(self, z: Any) -> Any:
        return self.xp.abs(z)

    def maximum(self, a: Any, b: Any) -> Any:
        a, b = self._arrays(a, b)
        return self.xp.maximum(a, b)

    def minimum(self, a: Any, b: Any) -> Any:
        a, b = self._arrays(a, b)
        return self.xp.minimum(a, b)

    def where(self, condition: Any, a: Any, b: Any) -> Any:
        a, b = self._arrays(a, b)
        return self.xp.where(condition, a, b)

    def _arrays(self, a: Any, b: Any) -> tuple[Any, Any]:
        """Python numbers as 0-d arrays of the other operand's dtype and device (the array
        API's ``where``/``maximum`` take arrays)."""
        xp = self.xp
        like = b if isinstance(a, int | float) else a
        if isinstance(like, int | float):
            raise TypeError("m.where/m.maximum/m.minimum need at least one array operand")
        kw = {"dtype": like.dtype, "device": _device(like)}
        if isinstance(a, int | float):
            a = xp.asarray(a, **kw)
        if isinstance(b, int | float):
            b = xp.asarray(b, **kw)
        return a, b


def _device(a: Any) -> Any:
    from array_api_compat import device

    return device(a)


class ElementwiseCell(GatedCell):
    """A cell defined by its elementwise math (see the module notes).

    Subclasses set the class attributes below and the static methods :meth:`forward` and
    :meth:`backward`; everything the engine, the backends, the layers and the exercise-style
    caches need follows from them.

    Class attributes
    ----------------
    name : str
        The registry key (``xrnn.register(MyCell())``).
    gates : tuple of (weight key, bias key)
        One gate block each: ``W (n_a, n_a + n_x)`` acting on ``[a⟨t-1⟩; x⟨t⟩]`` and
        ``b (n_a, 1)``; their pre-activations reach :meth:`forward` in this order.
    vectors : tuple of str
        Per-unit parameters of shape ``(n_a, 1)`` used elementwise (peephole weights, a
        recurrent-side bias), initialised to zero.
    apart : tuple of str
        Weight keys of gates whose input side ``Wˣ x⟨t⟩ + b`` and recurrent side
        ``Wᵃ a⟨t-1⟩`` reach :meth:`forward` as two values, in that order, where the others
        reach it summed (the GRU's candidate, whose recurrent side the reset gate scales);
        :meth:`backward` returns a gradient for each of the two.
    states : tuple of str
        State components, the hidden state first: ``("a",)``, ``("a", "c")``, or more (each
        ``(n_a, m)``; ``xrnn.forward`` takes ``<state>0=`` for each after the first).
    saves : tuple of str
        Names of the values :meth:`forward` returns for :meth:`backward` (each ``(n_a, m)``).
    bias_init : dict of str to float
        Initial values of some bias keys (default zero), e.g. ``{"bf": 1.0}``.
    torch_gates : tuple of (weight key, bias key), or None
        The gates in the order of the PyTorch module with the same math (``torch.nn.LSTM``'s
        ``(i, f, g, o)``); None where PyTorch has no such cell.
    output_keys : (str, str)
        The optional output layer's keys, ``("Wy", "by")``.
    functions : str or None
        The prefix of the cell's own public functions (``"lstm"`` for ``xrnn.lstm_forward``),
        named in messages; None (the default): the cell is run by ``xrnn.forward``.

    A cell may also set ``keys`` (its parameter keys in the order of its gradient dicts;
    default: each gate's weight and bias, then the vectors) and ``cache_layout`` (the names of
    its cache tuple's items, where it overrides :meth:`cache_tuple`).
    """

    vectors: tuple[str, ...] = ()
    apart: tuple[str, ...] = ()
    saves: tuple[str, ...] = ()
    bias_init: ClassVar[dict[str, float]] = {}
    torch_gates: tuple[tuple[str, str], ...] | None = None  # type: ignore[assignment]
    output_keys = ("Wy", "by")
    functions: ClassVar[str | None] = None
    _given: ClassVar[frozenset[str]] = frozenset()  # the attributes a class set itself
    # each pre-activation the math takes, (gate block, "both" | "input" | "recurrent"): set
    # from gates and apart
    pre_activations: ClassVar[tuple[tuple[int, str], ...]] = ()
    # the pointwise functions (see the module notes)
    forward: ClassVar[Callable[..., tuple]]
    backward: ClassVar[Callable[..., tuple] | None] = None
    derived: ClassVar[bool] = False  # set for a cell without a backward

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if not hasattr(cls, "gates"):
            return  # an intermediate base class
        if not isinstance(getattr(cls, "name", None), str):
            raise TypeError(f"{cls.__name__} must set name, the cell's registry key")
        # keys and cache_layout follow from the rest unless the class or a base sets them
        given: frozenset[str] = getattr(cls, "_given", frozenset())
        cls._given = given | {a for a in ("keys", "cache_layout") if a in cls.__dict__}
        if "keys" not in cls._given:
            cls.keys = tuple(k for gate in cls.gates for k in gate) + tuple(cls.vectors)
        cls.blocks = len(cls.gates)
        weights = [w for w, _ in cls.gates]
        unknown = [w for w in cls.apart if w not in weights]
        if unknown:
            raise TypeError(f"{cls.__name__}.apart names no gate's weight: {unknown}")
        # each pre-activation the math takes: (gate block, "both" | "input" | "recurrent")
        cls.pre_activations = tuple(
            side
            for q, w in enumerate(weights)
            for side in (((q, "input"), (q, "recurrent")) if w in cls.apart else ((q, "both"),))
        )
        cls.split_recurrent = bool(cls.apart)
        cls.derived = cls.backward is None
        if cls.derived:
            pre_activations = tuple(
                f"z_{weights[q]}" + {"both": "", "input": "_x", "recurrent": "_a"}[side]
                for q, side in cls.pre_activations
            )
            if cls.saves and cls.saves != pre_activations:
                raise TypeError(
                    f"{cls.__name__} saves {cls.saves} but has no backward: a derived backward "
                    f"keeps the gates' pre-activations itself (leave saves empty)"
                )
            cls.saves = pre_activations
        cls.saved_blocks = len(cls.saves)
        names = (
            *(f"{s}_next" for s in cls.states),
            *(f"{s}_prev" for s in cls.states),
            *cls.saves,
            "xt",
            "parameters",
        )
        cls.cache_size = len(names)
        if "cache_layout" not in cls._given:
            cls.cache_layout = "(" + ", ".join(names) + ")"

    @property
    def family(self) -> str:
        return self.functions or self.name

    @property
    def forward_name(self) -> str:
        return f"{self.functions}_forward" if self.functions else "xrnn.forward"

    @property
    def backward_name(self) -> str:
        return f"{self.functions}_backward" if self.functions else "xrnn.backward"

    # --- parameters ---------------------------------------------------------------------

    def shapes(self, n_x, n_a):
        out = super().shapes(n_x, n_a)
        out.update({v: ((n_a, 1), f"n_a={n_a}") for v in self.vectors})
        return out

    def draw(self, uniform, zeros, n_x, n_a):
        out = {}
        for w, b in self.gates:
            out[w] = uniform((n_a, n_a + n_x))
            out[b] = zeros((n_a, 1)) + self.bias_init.get(b, 0.0)
        out.update({v: zeros((n_a, 1)) for v in self.vectors})
        return out

    def stack(self, xp, parameters, n_a, *, apart=False):
        W = super().stack(xp, parameters, n_a, apart=apart)
        if not self.vectors:
            return W
        return W.with_vectors(xp.concat([parameters[v] for v in self.vectors], axis=0))

    # --- PyTorch's layout -----------------------------------------------------------------

    def torch_order(self) -> tuple[tuple[str, str], ...]:
        if self.torch_gates is None or self.vectors:
            raise ValueError(f"PyTorch has no module with the {self.name!r} cell's math")
        return self.torch_gates

    # --- the pointwise math on whole blocks -----------------------------------------------

    def forward_pointwise(self, xp, gx, ra, state, W):
        n_a = int(state[0].shape[0])
        if self.apart:
            sides = {"input": gx, "recurrent": ra}
            z = [
                gx[q * n_a : (q + 1) * n_a, :] + ra[q * n_a : (q + 1) * n_a, :]
                if side == "both"
                else sides[side][q * n_a : (q + 1) * n_a, :]
                for q, side in self.pre_activations
            ]
            p = xp.concat(z, axis=0) if self.derived else None
        else:
            p = gx + ra
            z = [p[k * n_a : (k + 1) * n_a, :] for k in range(self.blocks)]
        new, saved = type(self).forward(ArrayMath(xp), *z, *self._vectors(W, n_a), *state)
        if self.derived:  # what the forward saves is not needed: the backward recomputes
            if len(new) != len(self.states):
                raise ValueError(f"{self.name}.forward must return {len(self.states)} states")
            return tuple(new), p
        if len(new) != len(self.states) or len(saved) != self.saved_blocks:
            raise ValueError(
                f"{self.name}.forward must return ({len(self.states)} states, "
                f"{self.saved_blocks} saved values); got ({len(new)}, {len(saved)})"
            )
        return tuple(new), xp.concat(list(saved), axis=0) if saved else None

    def backward_pointwise(self, xp, saved, prev, new, up, W=None):
        n_a = int(prev[0].shape[0])
        kept = [saved[k * n_a : (k + 1) * n_a, :] for k in range(self.saved_blocks)]
        vectors = self._vectors(W, n_a)
        if self.derived:
            names = self.signature["backward"]
            values = dict(zip(names, (*kept, *vectors, *prev, *new, *up), strict=True))
            dz, dv, dprev = self.programs[1].evaluate(ArrayMath(xp), values)
        else:
            backward = type(self).backward
            assert backward is not None
            dz, dv, dprev = backward(ArrayMath(xp), *kept, *vectors, *prev, *new, *up)
        zeros = xp.zeros_like(prev[0])

        def full(d: Any) -> Any:  # a gradient the math left out (None) or made constant
            return zeros if d is None else zeros + d if isinstance(d, int | float) else d

        gates: list[Any] = [None] * self.blocks  # the input side's gradient by gate block
        recurrent: list[Any] = [None] * self.blocks
        for (q, side), d in zip(self.pre_activations, dz, strict=True):
            if side != "recurrent":
                gates[q] = full(d)
            if side != "input":
                recurrent[q] = gates[q] if side == "both" else full(d)
        dgx = xp.concat([*gates, *(full(d) for d in dv)], axis=0)
        dra = xp.concat(recurrent, axis=0) if self.apart else dgx
        first = dprev[0] if dprev[0] is None else full(dprev[0])
        return dgx, dra, (first, *(full(d) for d in dprev[1:]))

    # --- the traced programs (the compiled paths' source) -----------------------------------

    @cached_property
    def signature(self) -> dict[str, tuple[str, ...]]:
        """The input names of the traced forward and backward programs, in argument order:
        ``z<k>`` pre-activations (``pre_activations``: one per gate, two for a gate in
        ``apart``), ``v<i>`` vectors, ``p<s>``/``n<s>`` previous and new state components,
        ``s<i>`` saved values, ``u<s>`` upstream gradients."""
        k, v, s, n = (
            len(self.pre_activations),
            len(self.vectors),
            self.saved_blocks,
            len(self.states),
        )
        z = tuple(f"z{i}" for i in range(k))
        vec = tuple(f"v{i}" for i in range(v))
        prev = tuple(f"p{i}" for i in range(n))
        new = tuple(f"n{i}" for i in range(n))
        up = tuple(f"u{i}" for i in range(n))
        saved = z if self.derived else tuple(f"s{i}" for i in range(s))
        return {"forward": (*z, *vec, *prev), "backward": (*saved, *vec, *prev, *new, *up)}

    @cached_property
    def programs(self) -> tuple[Program, Program]:
        """The forward and backward math traced (:mod:`xrnn.cells.trace`): the forward's
        outputs are ``(new states, saved values)``, the backward's ``(dz, dv, dprev)``; a
        derived backward comes from the forward by :func:`~xrnn.cells.trace.derive`."""
        n, k, v = len(self.states), len(self.pre_activations), len(self.vectors)
        fwd_names, bwd_names = self.signature["forward"], self.signature["backward"]
        what = f"the {self.name!r} cell's forward"
        expected = None if self.derived else self.saved_blocks
        forward = trace(type(self).forward, fwd_names, (n, expected), what)
        if self.derived:
            saved = tuple(forward.nodes[i] for i in range(k))  # the z inputs, traced first
            forward = Program(forward.inputs, forward.nodes, (forward.outputs[0], saved))
            up = bwd_names[len(bwd_names) - n :]
            new = bwd_names[len(bwd_names) - 2 * n : len(bwd_names) - n]
            grads = derive(forward, fwd_names, up, extra=new)
            (flat,) = grads.outputs
            groups = (flat[:k], flat[k : k + v], flat[k + v :])
            return forward, Program(grads.inputs, grads.nodes, groups)
        backward = type(self).backward
        assert backward is not None
        what = f"the {self.name!r} cell's backward"
        return forward, trace(backward, bwd_names, (k, v, n), what)

    def _vectors(self, W: Any, n_a: int) -> list[Any]:
        if not self.vectors:
            return []
        if W is None or W.V is None:
            raise ValueError(f"the {self.name!r} cell's math needs its stacked vectors")
        return [W.V[i * n_a : (i + 1) * n_a, :] for i in range(len(self.vectors))]

    # --- the exercise-style cache tuple -----------------------------------------------------

    def cache_tuple(self, prev, new, saved, xt, parameters):
        n_a = int(prev[0].shape[0])
        kept = tuple(saved[k * n_a : (k + 1) * n_a, :] for k in range(self.saved_blocks))
        return (*new, *prev, *kept, xt, parameters)

    def cache_parts(self, cache):
        from array_api_compat import array_namespace

        n = len(self.states)
        new, prev = tuple(cache[:n]), tuple(cache[n : 2 * n])
        kept = cache[2 * n : 2 * n + self.saved_blocks]
        saved = array_namespace(*kept).concat(list(kept), axis=0) if kept else None
        return prev, new, saved, cache[-2], cache[-1]
