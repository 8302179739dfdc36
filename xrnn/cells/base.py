"""What a recurrent cell is to the engine: the ``Cell`` spec every cell module fills in.

A cell module (:mod:`xrnn.rnn`, :mod:`xrnn.lstm`, :mod:`xrnn.gru`) defines one ``Cell``
subclass holding everything that makes the cell that cell — parameter keys and shapes, the gate
order of its stacked weights (and PyTorch's), the initialisation rule, the pointwise forward
and backward math and the exercise's cache tuple — and registers one instance. The engine
(:mod:`xrnn.core.engine`) and the backends read the spec and never name a cell's keys.

Stacked layout
--------------
Every cell's weights are stacked by gate into ``Wa (k n_a, n_a)`` (acting on ``a⟨t-1⟩``),
``Wx (k n_a, n_x)`` (acting on ``x⟨t⟩``) and a bias ``b (k n_a, 1)`` added to the input side;
``k`` is the number of gate blocks. A step receives ``gx = Wx x⟨t⟩ + b`` and
``ra = Wa a⟨t-1⟩`` (each ``(k n_a, m)``), and keeps a ``saved`` block for the backward pass.
Its backward returns the gradients ``dgx`` of ``gx`` and ``dra`` of ``ra`` (the same array
unless the recurrent side enters the math differently, as in the GRU's n gate), from which the
engine forms ``dWx = Σ dgx xᵀ``, ``db = Σ dgx``, ``dWa = Σ dra aᵀ`` and ``da⟨t-1⟩ = Waᵀ dra``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from array_api_compat import array_namespace, device

from xrnn.core.params import check_parameter, output_layer

__all__ = ["CELLS", "Cell", "GatedCell", "Stacked", "get_cell", "register", "torch_bias"]


class Stacked:
    """A cell's weights stacked by gate (see the module notes).

    Attributes
    ----------
    Wa : array of shape (k n_a, n_a)
    Wx : array of shape (k n_a, n_x)
    b : array of shape (k n_a, 1)
        Added to the input side ``gx`` once for all steps.
    V : array of shape (v n_a, 1), or None
        The cell's per-unit vectors (:attr:`Cell.vectors`, e.g. peephole weights) stacked in
        order, used inside its pointwise math; None for a cell without any.
    gates : tuple of k arrays of shape (n_a, n_a + n_x), or None
        Each gate block's weight on ``[a⟨t-1⟩; x⟨t⟩]`` as the parameters hold it, where the
        weights were stacked :meth:`apart`: ``Wa`` and ``Wx`` are then stacked from them when
        first read, and a backend that reads each gate's rows where they are (the compiled
        NumPy loops) never makes them — a forward without caches then keeps no copy of the
        weights.
    """

    def __init__(self, Wa: Any, Wx: Any, b: Any, V: Any = None) -> None:
        self._Wa, self._Wx, self.b, self.V = Wa, Wx, b, V
        self.gates: tuple | None = None
        self._xp: Any = None

    @classmethod
    def apart(cls, xp: Any, gates: tuple, b: Any, V: Any = None) -> Stacked:
        """Weights whose ``Wa``/``Wx`` are stacked from ``gates`` only when read."""
        stacked = cls(None, None, b, V)
        stacked.gates, stacked._xp = tuple(gates), xp
        return stacked

    @property
    def Wa(self) -> Any:
        if self._Wa is None:
            self._Wa = self._stack(recurrent=True)
        return self._Wa

    @property
    def Wx(self) -> Any:
        if self._Wx is None:
            self._Wx = self._stack(recurrent=False)
        return self._Wx

    @property
    def is_stacked(self) -> bool:
        """Whether ``Wa`` and ``Wx`` exist (weights stacked :meth:`apart` are stacked when first
        read)."""
        return self._Wa is not None and self._Wx is not None

    def stacked_as(self, Wa: Any, Wx: Any) -> None:
        """Take ``Wa`` and ``Wx`` as stacked from :attr:`gates` elsewhere (a backend's own
        copy, made in one pass), so that reading them stacks nothing again."""
        self._Wa, self._Wx = Wa, Wx

    def _stack(self, recurrent: bool) -> Any:
        gates = self.gates or ()
        n_a = int(gates[0].shape[0])
        part = slice(None, n_a) if recurrent else slice(n_a, None)
        return self._xp.concat([w[:, part] for w in gates], axis=0)

    def arrays(self) -> tuple:
        """Every array held, without stacking: the gates (or ``Wa``, ``Wx``), ``b`` and ``V``
        (None where there is none)."""
        weights = self.gates if self._Wa is None or self._Wx is None else (self._Wa, self._Wx)
        return (*(weights or ()), self.b, self.V)

    def map(self, fn: Callable[[Any], Any]) -> Stacked:
        """The same weights with ``fn`` applied to every array held (None stays None; weights
        stacked apart stay apart)."""

        def f(a: Any) -> Any:
            return None if a is None else fn(a)

        if self.gates is not None and self._Wa is None and self._Wx is None:
            return Stacked.apart(self._xp, tuple(map(fn, self.gates)), f(self.b), f(self.V))
        return Stacked(fn(self.Wa), fn(self.Wx), f(self.b), f(self.V))

    def with_vectors(self, V: Any) -> Stacked:
        """These weights with the vectors ``V``."""
        stacked = self.map(lambda a: a)
        stacked.V = V
        return stacked


@lru_cache(maxsize=64)
def _expected_shapes(cell: Cell, n_x: int, n_a: int) -> tuple:
    """``cell.shapes(n_x, n_a)``'s items, made once per cell and size: every call checks its
    parameters against them (their messages' reasons are formatted strings)."""
    return tuple(cell.shapes(n_x, n_a).items())


class Cell(ABC):
    """The spec of one recurrent cell (see the module notes for the stacked layout).

    Class attributes
    ----------------
    name : str
        ``"rnn"``, ``"lstm"``, ``"gru"`` — the registry key (``cell=`` in ``xrnn.charlm``).
    keys : tuple of str
        Parameter keys of the cell, output layer excluded.
    output_keys : (str, str)
        The optional output layer's ``(W, b)`` keys.
    states : tuple of str
        Recurrent state components, hidden state first: ``("a",)`` or ``("a", "c")``.
    blocks : int
        ``k``, the gate blocks of ``Wa``/``Wx``/``b``.
    saved_blocks : int
        ``n_a``-row blocks of the per-step ``saved`` array (0: the cell saves nothing).
    split_recurrent : bool
        The step's ``dra`` differs from its ``dgx`` (the GRU's candidate, whose input and
        recurrent sides reach the math apart); the engine then keeps ``dra``'s gate rows in
        their own buffer for ``Waᵀ dra`` and ``dWa``.
    vectors : tuple of str
        Keys of per-unit parameters of shape (n_a, 1) that act elementwise inside the
        pointwise math, outside the stacked GEMMs (peephole weights, diagonal recurrent
        weights). The backward step appends each one's per-element gradient as ``n_a`` more
        rows of ``dgx``; the engine sums them over steps and batch (:meth:`unstack_vectors`).
    cache_size : int
        Length of the exercise's per-step cache tuple; ``cache_layout`` names its items.
    family : str
        The prefix of the cell's public functions (``rnn`` for both RNN nonlinearities).
    """

    name: str
    keys: tuple[str, ...]
    output_keys: tuple[str, str]
    states: tuple[str, ...] = ("a",)
    blocks: int
    saved_blocks: int = 0
    split_recurrent: bool = False
    vectors: tuple[str, ...] = ()
    cache_size: int
    cache_layout: str

    @property
    def family(self) -> str:
        return self.name.split("_")[0]

    @property
    def forward_name(self) -> str:
        """The public function that runs the cell over a sequence, for messages."""
        return f"{self.family}_forward"

    @property
    def backward_name(self) -> str:
        """The public function that runs the cell's backward pass, for messages."""
        return f"{self.family}_backward"

    @property
    def bias_keys(self) -> tuple[str, ...]:
        """The bias keys among :attr:`keys` (xrnn names weights ``W…`` and biases ``b…``)."""
        return tuple(k for k in self.keys if k.startswith("b"))

    # --- parameters ---------------------------------------------------------------------

    @abstractmethod
    def shapes(self, n_x: int, n_a: int) -> dict[str, tuple[tuple[int, ...], str]]:
        """Every key's expected shape and a short reason for the error message."""

    def validate(self, parameters: Mapping[str, Any], n_x: int, n_a: int) -> int | None:
        """Check every key and shape against ``n_x``/``n_a``; return ``n_y`` or None."""
        try:
            expected = _expected_shapes(self, n_x, n_a)
        except TypeError:  # a cell that is not hashable (a dataclass comparing by value)
            expected = tuple(self.shapes(n_x, n_a).items())
        for key, (shape, why) in expected:
            check_parameter(parameters, key, shape, why)
        return output_layer(parameters, self.output_keys, n_a)

    @abstractmethod
    def draw(self, uniform: Any, zeros: Any, n_x: int, n_a: int) -> dict[str, Any]:
        """The initialisation rule: host arrays of every key
        (:func:`xrnn.core.params.initialize`)."""

    @abstractmethod
    def stack(
        self, xp: Any, parameters: Mapping[str, Any], n_a: int, *, apart: bool = False
    ) -> Stacked:
        """The stacked weights, each a contiguous array (GEMMs on column slices of one big
        matrix fall off NumPy's fast path). ``apart=True``: where the cell holds a weight per
        gate, :meth:`Stacked.apart` (stacked only when read) — for an eager caller only, as a
        traced one (JAX) would stack inside whatever it traces first."""

    @abstractmethod
    def unstack(self, dWa: Any, dWx: Any, db: Any, n_a: int) -> dict[str, Any]:
        """Stacked gradients back to the cell's keys, ``"d" + key``."""

    def gradient_rows(self, n_a: int) -> int:
        """Rows of a backward step's ``dgx``: the gate blocks, then one block per vector."""
        return (self.blocks + len(self.vectors)) * n_a

    def recurrent_rows(self, n_a: int) -> int:
        """Rows of a backward step's ``dra`` where it is kept apart from ``dgx``
        (:attr:`split_recurrent`: the gate blocks), else 0."""
        return self.blocks * n_a if self.split_recurrent else 0

    def unstack_vectors(self, dV: Any, n_a: int) -> dict[str, Any]:
        """The vectors' gradients, ``"d" + key``, from their stacked sum ``dV`` (v n_a, 1)."""
        return {"d" + key: dV[i * n_a : (i + 1) * n_a, :] for i, key in enumerate(self.vectors)}

    # --- PyTorch's layout -----------------------------------------------------------------

    @abstractmethod
    def to_torch(self, xp: Any, parameters: Mapping[str, Any], n_a: int) -> dict[str, Any]:
        """``weight_ih (k n_a, n_x)``, ``weight_hh (k n_a, n_a)``, ``bias_ih``, ``bias_hh``
        ``(k n_a,)`` in PyTorch's gate order (``bias_hh`` zero where xrnn has one bias)."""

    @abstractmethod
    def from_torch(
        self, xp: Any, weight_ih: Any, weight_hh: Any, bias_ih: Any, bias_hh: Any, n_a: int
    ) -> dict[str, Any]:
        """The inverse of :meth:`to_torch` (the biases may be None: ``bias=False``)."""

    # --- pointwise math -------------------------------------------------------------------

    @abstractmethod
    def forward_pointwise(
        self, xp: Any, gx: Any, ra: Any, state: tuple, W: Stacked
    ) -> tuple[tuple, Any]:
        """One step from ``gx``, ``ra`` (k n_a, m) and the previous state.

        Returns the new state tuple and the step's ``saved`` array (``saved_blocks·n_a``, m),
        or None when the cell saves nothing.
        """

    @abstractmethod
    def backward_pointwise(
        self, xp: Any, saved: Any, prev: tuple, new: tuple, up: tuple, W: Stacked | None = None
    ) -> tuple[Any, Any, tuple]:
        """Gradients of one step from the upstream gradients ``up`` of the new state (``W``:
        the step's weights, for a cell whose math reads its vectors).

        Returns ``(dgx, dra, direct)``: ``dgx``/``dra`` (k n_a, m) as in the module notes
        (``dra`` may be ``dgx`` itself), and ``direct``, the gradient of each previous state
        component that does not pass through ``Wa`` (None where there is none).
        """

    # --- the exercise's cache tuple -------------------------------------------------------

    @abstractmethod
    def cache_tuple(self, prev: tuple, new: tuple, saved: Any, xt: Any, parameters: Any) -> tuple:
        """The exercise's per-step cache from the step's pieces (views, no copies)."""

    @abstractmethod
    def cache_parts(self, cache: tuple) -> tuple[tuple, tuple, Any, Any, Any]:
        """The inverse of :meth:`cache_tuple`: ``(prev, new, saved, xt, parameters)``
        (``saved`` rebuilt by stacking where the tuple holds its blocks apart)."""

    def __repr__(self) -> str:
        return f"<xrnn cell {self.name!r}>"

    def __reduce__(self) -> tuple:
        # a spec is a registered singleton (compared with ``is``): unpickled — in a Dask
        # worker, say — it is the registry's own object again
        return (get_cell, (self.name,))


class GatedCell(Cell):
    """A cell whose gates each have a weight ``W (n_a, n_a + n_x)`` acting on
    ``[a⟨t-1⟩; x⟨t⟩]`` and a bias ``b (n_a, 1)`` (the LSTM, the GRU): the stacking, the shapes
    and the PyTorch weight layout follow from the gate lists alone.

    Class attributes
    ----------------
    gates : tuple of (weight key, bias key)
        In the stacked order (``Wa``/``Wx``/``b`` blocks).
    torch_gates : tuple of (weight key, bias key)
        The same gates in PyTorch's order.
    """

    gates: tuple[tuple[str, str], ...]
    torch_gates: tuple[tuple[str, str], ...]

    def shapes(self, n_x, n_a):
        out = {}
        for w, b in self.gates:
            out[w] = ((n_a, n_a + n_x), f"n_a={n_a}, n_a + n_x={n_a + n_x}")
            out[b] = ((n_a, 1), f"n_a={n_a}")
        return out

    def stack(self, xp, parameters, n_a, *, apart=False):
        if apart:
            b = xp.concat([parameters[b] for _, b in self.gates], axis=0)
            return Stacked.apart(xp, tuple(parameters[w] for w, _ in self.gates), b)
        return Stacked(
            xp.concat([parameters[w][:, :n_a] for w, _ in self.gates], axis=0),
            xp.concat([parameters[w][:, n_a:] for w, _ in self.gates], axis=0),
            xp.concat([parameters[b] for _, b in self.gates], axis=0),
        )

    def unstack(self, dWa, dWx, db, n_a):
        xp = array_namespace(dWa)
        dW = xp.concat([dWa, dWx], axis=1)
        out = {}
        for k, (w, b) in enumerate(self.gates):
            out["d" + w] = dW[k * n_a : (k + 1) * n_a, :]
            out["d" + b] = db[k * n_a : (k + 1) * n_a, :]
        return out

    def torch_order(self) -> tuple[tuple[str, str], ...]:
        """The gates in PyTorch's order (:attr:`torch_gates`); a cell PyTorch lacks raises a
        ``ValueError`` here."""
        return self.torch_gates

    def to_torch(self, xp, parameters, n_a):
        """PyTorch's layout of a cell with one bias per gate: it is ``bias_ih``, and
        ``bias_hh`` is zero."""
        b = xp.concat([parameters[b][:, 0] for _, b in self.torch_order()])
        return {
            **self.torch_weights(xp, parameters, n_a),
            "bias_ih": b,
            "bias_hh": xp.zeros_like(b),
        }

    def from_torch(self, xp, weight_ih, weight_hh, bias_ih, bias_hh, n_a):
        """The inverse of :meth:`to_torch`: PyTorch's two biases summed into each gate's."""
        b = torch_bias(xp, bias_ih, bias_hh, weight_hh)
        out = self.weights_from_torch(xp, weight_ih, weight_hh, n_a)
        for k, (_, bk) in enumerate(self.torch_order()):
            out[bk] = xp.reshape(b[k * n_a : (k + 1) * n_a], (n_a, 1))
        return out

    def torch_weights(self, xp: Any, parameters: Mapping[str, Any], n_a: int) -> dict[str, Any]:
        """``weight_ih (k n_a, n_x)`` and ``weight_hh (k n_a, n_a)`` in PyTorch's gate order."""
        gates = self.torch_order()
        return {
            "weight_ih": xp.concat([parameters[w][:, n_a:] for w, _ in gates], axis=0),
            "weight_hh": xp.concat([parameters[w][:, :n_a] for w, _ in gates], axis=0),
        }

    def weights_from_torch(
        self, xp: Any, weight_ih: Any, weight_hh: Any, n_a: int
    ) -> dict[str, Any]:
        """The inverse of :meth:`torch_weights`: each gate's ``W`` on ``[a⟨t-1⟩; x⟨t⟩]``."""
        out = {}
        for k, (w, _) in enumerate(self.torch_order()):
            rows = slice(k * n_a, (k + 1) * n_a)
            out[w] = xp.concat([weight_hh[rows, :], weight_ih[rows, :]], axis=1)
        return out


def torch_bias(xp: Any, bias_ih: Any, bias_hh: Any, weight_hh: Any) -> Any:
    """PyTorch's two biases as one (their sum), or zeros for ``bias=False`` modules."""
    if bias_ih is None:
        return xp.zeros((int(weight_hh.shape[0]),), dtype=weight_hh.dtype, device=device(weight_hh))
    return bias_ih + bias_hh


CELLS: dict[str, Cell] = {}


def register(cell: Cell) -> Cell:
    """Add ``cell`` to the registry under ``cell.name`` (each cell module calls this once)."""
    CELLS[cell.name] = cell
    return cell


def get_cell(name: Any) -> Cell:
    """The registered cell called ``name``, with an error listing the known ones."""
    if isinstance(name, Cell):
        return name
    if not isinstance(name, str) or name not in CELLS:
        known = ", ".join(repr(k) for k in sorted(CELLS))
        raise ValueError(f"cell must be one of {known}; got {name!r}")
    return CELLS[name]
