"""A cell's elementwise functions traced into straight-line programs.

Calling a cell's ``forward``/``backward`` (:mod:`xrnn.cells.elementwise`) with symbolic inputs
and the symbolic math namespace :class:`TraceMath` records every operation once, in order, as
a :class:`Program`: a list of single-assignment nodes (identical nodes shared). From one
program come

- straight-line code for the compiled loops, each constant cast to the kernel's dtype so a
  float32 kernel never computes in double (:meth:`Program.python`, :meth:`Program.c`);
- its evaluation on whole arrays (:meth:`Program.evaluate`);
- its reverse-mode derivative, a program of the same kind (:func:`derive`), which is how a cell
  that writes no backward gets one.

A traced function must be straight-line: a branch on a traced value is refused with a message
pointing to ``m.where``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Node", "Program", "TraceMath", "derive", "trace"]

UNARY = ("neg", "sigmoid", "tanh", "exp", "log", "sqrt", "abs")
BINARY = ("add", "sub", "mul", "div", "maximum", "minimum", "lt", "le", "gt", "ge")
COMPARISONS = ("lt", "le", "gt", "ge")


class Node:
    """One value of a traced program: an input, a constant or an operation on earlier nodes."""

    __slots__ = ("op", "args", "value", "index", "graph")

    def __init__(self, graph: _Graph, op: str, args: tuple, value: Any, index: int) -> None:
        self.graph, self.op, self.args, self.value, self.index = graph, op, args, value, index

    # Python's arithmetic records a node
    def __add__(self, other: Any) -> Node:
        return self.graph.op("add", self, other)

    def __radd__(self, other: Any) -> Node:
        return self.graph.op("add", other, self)

    def __sub__(self, other: Any) -> Node:
        return self.graph.op("sub", self, other)

    def __rsub__(self, other: Any) -> Node:
        return self.graph.op("sub", other, self)

    def __mul__(self, other: Any) -> Node:
        return self.graph.op("mul", self, other)

    def __rmul__(self, other: Any) -> Node:
        return self.graph.op("mul", other, self)

    def __truediv__(self, other: Any) -> Node:
        return self.graph.op("div", self, other)

    def __rtruediv__(self, other: Any) -> Node:
        return self.graph.op("div", other, self)

    def __neg__(self) -> Node:
        return self.graph.op("neg", self)

    def __pos__(self) -> Node:
        return self

    def __pow__(self, exponent: Any) -> Node:
        if not isinstance(exponent, int) or isinstance(exponent, bool) or exponent < 0:
            raise TypeError("a traced value's power must be a non-negative int (x ** 2)")
        if exponent == 0:
            return self.graph.const(1.0)
        out = self
        for _ in range(exponent - 1):
            out = out * self
        return out

    def __lt__(self, other: Any) -> Node:
        return self.graph.op("lt", self, other)

    def __le__(self, other: Any) -> Node:
        return self.graph.op("le", self, other)

    def __gt__(self, other: Any) -> Node:
        return self.graph.op("gt", self, other)

    def __ge__(self, other: Any) -> Node:
        return self.graph.op("ge", self, other)

    def __bool__(self) -> bool:
        raise TypeError(
            "a cell's elementwise math cannot branch on a value (if/and/or/min/max on arrays): "
            "use m.where(condition, a, b), m.maximum or m.minimum"
        )

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"<node {self.index}: {self.op}>"


class _Graph:
    """The nodes recorded so far, identical operations shared."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self._seen: dict[tuple, Node] = {}

    def _add(self, op: str, args: tuple, value: Any = None) -> Node:
        key = (op, tuple(a.index for a in args), value)
        node = self._seen.get(key)
        if node is None:
            node = Node(self, op, args, value, len(self.nodes))
            self.nodes.append(node)
            self._seen[key] = node
        return node

    def input(self, name: str) -> Node:
        return self._add("input", (), name)

    def const(self, value: float) -> Node:
        return self._add("const", (), float(value))

    def node(self, value: Any) -> Node:
        if isinstance(value, Node):
            if value.graph is not self:
                raise ValueError("a value from another traced function")
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(
                f"a cell's elementwise math works on its arguments and Python numbers; got "
                f"{type(value).__name__}"
            )
        return self.const(value)

    def op(self, op: str, *args: Any) -> Node:
        nodes = tuple(self.node(a) for a in args)
        if all(n.op == "const" for n in nodes) and op in _FOLD:
            return self.const(_FOLD[op](*(n.value for n in nodes)))
        return self._add(op, nodes)


_FOLD: dict[str, Callable] = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "neg": lambda a: -a,
}


class TraceMath:
    """The math namespace ``m`` on traced values (see :mod:`xrnn.cells.elementwise`)."""

    def __init__(self, graph: _Graph) -> None:
        self._graph = graph

    def sigmoid(self, z: Any) -> Node:
        return self._graph.op("sigmoid", z)

    def tanh(self, z: Any) -> Node:
        return self._graph.op("tanh", z)

    def exp(self, z: Any) -> Node:
        return self._graph.op("exp", z)

    def log(self, z: Any) -> Node:
        return self._graph.op("log", z)

    def sqrt(self, z: Any) -> Node:
        return self._graph.op("sqrt", z)

    def abs(self, z: Any) -> Node:
        return self._graph.op("abs", z)

    def maximum(self, a: Any, b: Any) -> Node:
        return self._graph.op("maximum", a, b)

    def minimum(self, a: Any, b: Any) -> Node:
        return self._graph.op("minimum", a, b)

    def where(self, condition: Any, a: Any, b: Any) -> Node:
        c = self._graph.node(condition)
        if c.op not in COMPARISONS:
            raise TypeError("m.where's condition must be a comparison (a > b, ...)")
        return self._graph.op("where", c, a, b)


@dataclass
class Program:
    """A traced function: named inputs, its nodes in order, and its outputs.

    Attributes
    ----------
    inputs : list of str
    nodes : list of Node
        Every node, each after its arguments (inputs and constants included).
    outputs : tuple of tuples of (Node or None)
        The function's result, one tuple per group (forward: the new states, the saved
        values; backward: ``dz``, ``dv``, ``dprev``).
    """

    inputs: list[str]
    nodes: list[Node]
    outputs: tuple
    used: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        live = self.live()
        self.used = {n.value for n in self.nodes if n.op == "input" and n.index in live}

    def live(self) -> set[int]:
        """Indices of the nodes some output depends on."""
        keep: set[int] = set()
        stack = [n for group in self.outputs for n in group if n is not None]
        while stack:
            node = stack.pop()
            if node.index not in keep:
                keep.add(node.index)
                stack.extend(node.args)
        return keep

    # --- evaluation on arrays ---------------------------------------------------------------

    def evaluate(self, m: Any, values: dict[str, Any]) -> tuple:
        """The outputs computed with the math namespace ``m`` (:class:`~xrnn.cells.elementwise.
        ArrayMath`) from ``values``, the inputs by name (arrays; a constant output stays a
        Python float)."""
        live = self.live()
        got: dict[int, Any] = {}
        for node in self.nodes:
            if node.index not in live:
                continue
            a = [got[x.index] for x in node.args]
            if node.op == "input":
                got[node.index] = values[node.value]
            elif node.op == "const":
                got[node.index] = node.value
            else:
                got[node.index] = _ARRAY_OPS[node.op](m, *a)
        return tuple(
            tuple(None if n is None else got[n.index] for n in group) for group in self.outputs
        )

    # --- code -------------------------------------------------------------------------------

    def python(
        self,
        names: dict[str, str],
        results: Sequence[Sequence[str | Sequence[str] | None]],
        const: Callable[[float], str],
    ) -> list:
        """Lines of straight-line Python for the compiled kernels: each input read from the
        expression ``names[input]``, output ``k`` of group ``g`` assigned to the target
        ``results[g][k]`` (None: not wanted; a tuple: each of its targets; a None output
        assigns zero), each constant
        written as ``const(value)`` (a name of the kernel's float type), and the math
        namespace as the functions ``sigmoid``, ``tanh``, ``exp``, ``log``, ``sqrt``,
        ``abs``, ``maximum``, ``minimum``."""
        return _code(self, names, results, _PY, const, "{0} = {1}")

    def c(
        self, names: dict[str, str], results: Sequence[Sequence[str | Sequence[str] | None]]
    ) -> list:
        """Lines of C for a CUDA elementwise kernel body (type ``T``; see :meth:`python`)."""
        return _code(self, names, results, _C, lambda v: f"(T){v!r}", "{0} = {1};", "T ")


def _code(
    program: Program,
    names: dict[str, str],
    results: Sequence[Sequence[str | Sequence[str] | None]],
    table: dict[str, str],
    const: Callable[[float], str],
    assign: str,
    declare: str = "",
) -> list:
    live = set()
    stack = [
        n
        for group, wanted in zip(program.outputs, results, strict=True)
        for n, w in zip(group, wanted, strict=True)
        if n is not None and w is not None
    ]
    while stack:
        node = stack.pop()
        if node.index not in live:
            live.add(node.index)
            stack.extend(node.args)
    # each output stored as soon as its value is computed (fewer values live at once: the
    # compiled loops keep them in registers); outputs that are inputs or constants at the end.
    # The kernels read every input before the first line, so no store precedes a read.
    stores: dict[int, list[str]] = {}
    last = []
    for group, wanted in zip(program.outputs, results, strict=True):
        for node, target in zip(group, wanted, strict=True):
            if target is None:
                continue
            targets = (target,) if isinstance(target, str) else tuple(target)
            if node is None or node.op in ("input", "const") or node.op in COMPARISONS:
                last += [(node, t) for t in targets]
            else:
                stores.setdefault(node.index, []).extend(targets)
    expr: dict[int, str] = {}
    lines = []
    for node in program.nodes:
        if node.index not in live:
            continue
        if node.op == "input":
            expr[node.index] = names[node.value]
            continue
        if node.op == "const":
            expr[node.index] = const(node.value)
            continue
        text = table[node.op].format(*(expr[a.index] for a in node.args))
        if node.op in COMPARISONS:  # used once, inside its where
            expr[node.index] = text
            continue
        var = f"t{node.index}"
        lines.append(assign.format(declare + var, text))
        expr[node.index] = var
        lines += [assign.format(target, var) for target in stores.get(node.index, ())]
    for node, target in last:
        value = const(0.0) if node is None else expr[node.index]
        lines.append(assign.format(target, value))
    return lines


_PY = {
    "add": "({0} + {1})",
    "sub": "({0} - {1})",
    "mul": "({0} * {1})",
    "div": "({0} / {1})",
    "neg": "(-{0})",
    "sigmoid": "sigmoid({0})",
    "tanh": "tanh({0})",
    "exp": "exp({0})",
    "log": "log({0})",
    "sqrt": "sqrt({0})",
    "abs": "abs({0})",
    "maximum": "maximum({0}, {1})",
    "minimum": "minimum({0}, {1})",
    "lt": "({0} < {1})",
    "le": "({0} <= {1})",
    "gt": "({0} > {1})",
    "ge": "({0} >= {1})",
    "where": "({1} if {0} else {2})",
}

_C = {
    **{k: v for k, v in _PY.items() if k not in ("where", "sigmoid", "maximum", "minimum")},
    "sigmoid": "((T)0.5 * tanh((T)0.5 * {0}) + (T)0.5)",
    "maximum": "max({0}, {1})",
    "minimum": "min({0}, {1})",
    "abs": "abs({0})",
    "where": "({0} ? {1} : {2})",
}

_ARRAY_OPS: dict[str, Callable] = {
    "add": lambda m, a, b: a + b,
    "sub": lambda m, a, b: a - b,
    "mul": lambda m, a, b: a * b,
    "div": lambda m, a, b: a / b,
    "neg": lambda m, a: -a,
    "sigmoid": lambda m, a: m.sigmoid(a),
    "tanh": lambda m, a: m.tanh(a),
    "exp": lambda m, a: m.exp(a),
    "log": lambda m, a: m.log(a),
    "sqrt": lambda m, a: m.sqrt(a),
    "abs": lambda m, a: m.abs(a),
    "maximum": lambda m, a, b: m.maximum(a, b),
    "minimum": lambda m, a, b: m.minimum(a, b),
    "lt": lambda m, a, b: a < b,
    "le": lambda m, a, b: a <= b,
    "gt": lambda m, a, b: a > b,
    "ge": lambda m, a, b: a >= b,
    "where": lambda m, c, a, b: m.where(c, a, b),
}


def trace(fn: Callable, inputs: Sequence[str], groups: Sequence[int | None], what: str) -> Program:
    """Trace ``fn(m, *inputs)``, which must return ``len(groups)`` tuples of the given lengths
    (None: any length; ``what`` names the function in messages)."""
    graph = _Graph()
    args = [graph.input(name) for name in inputs]
    result = fn(TraceMath(graph), *args)
    if not isinstance(result, tuple | list) or len(result) != len(groups):
        raise ValueError(f"{what} must return {len(groups)} tuples; got {result!r}")
    outputs = []
    for k, (group, size) in enumerate(zip(result, groups, strict=True)):
        if not isinstance(group, tuple | list) or size not in (None, len(group)):
            raise ValueError(f"{what}'s result {k} must be a tuple of {size}; got {group!r}")
        outputs.append(tuple(None if v is None else graph.node(v) for v in group))
    return Program(list(inputs), graph.nodes, tuple(outputs))


def derive(
    forward: Program, wrt: Sequence[str], seeds: Sequence[str], extra: Sequence[str] = ()
) -> Program:
    """The reverse-mode derivative of ``forward``'s first output group: a program of the
    forward's inputs and one seed (upstream gradient) per first-group output, named
    ``seeds``, whose one output group is the gradient of ``Σ seed·output`` with respect to
    each input named in ``wrt`` (None where it does not depend on it). ``extra`` inputs are
    appended to the program's inputs unused (a fixed signature for the caller)."""
    graph = _Graph()
    copy: dict[int, Node] = {}
    for node in forward.nodes:
        if node.op == "input":
            copy[node.index] = graph.input(node.value)
        elif node.op == "const":
            copy[node.index] = graph.const(node.value)
        else:
            copy[node.index] = graph.op(node.op, *(copy[a.index] for a in node.args))
    seed_nodes = [graph.input(s) for s in seeds]
    for name in extra:
        graph.input(name)
    adjoint: dict[int, Node] = {}

    def add(node: Node, g: Node) -> None:
        if node.op in ("const",) or node.op in COMPARISONS:
            return
        adjoint[node.index] = g if node.index not in adjoint else adjoint[node.index] + g

    for out, seed in zip(forward.outputs[0], seed_nodes, strict=True):
        if out is not None:
            add(copy[out.index], seed)
    zero = graph.const(0.0)
    for node in reversed(forward.nodes):
        y = copy[node.index]
        g = adjoint.get(y.index)
        if g is None or node.op in ("input", "const") or node.op in COMPARISONS:
            continue
        a = [copy[x.index] for x in node.args]
        m = TraceMath(graph)
        if node.op == "add":
            add(a[0], g)
            add(a[1], g)
        elif node.op == "sub":
            add(a[0], g)
            add(a[1], -g)
        elif node.op == "mul":
            add(a[0], g * a[1])
            add(a[1], g * a[0])
        elif node.op == "div":
            add(a[0], g / a[1])
            add(a[1], -(g * y) / a[1])
        elif node.op == "neg":
            add(a[0], -g)
        elif node.op == "sigmoid":
            add(a[0], g * y * (1 - y))
        elif node.op == "tanh":
            add(a[0], g * (1 - y * y))
        elif node.op == "exp":
            add(a[0], g * y)
        elif node.op == "log":
            add(a[0], g / a[0])
        elif node.op == "sqrt":
            add(a[0], g * 0.5 / y)
        elif node.op == "abs":
            add(a[0], m.where(a[0] >= 0, g, -g))
        elif node.op in ("maximum", "minimum"):
            first = (a[0] >= a[1]) if node.op == "maximum" else (a[0] <= a[1])
            add(a[0], m.where(first, g, zero))
            add(a[1], m.where(first, zero, g))
        elif node.op == "where":
            add(a[1], m.where(a[0], g, zero))
            add(a[2], m.where(a[0], zero, g))
        else:  # pragma: no cover - every op of the namespace is handled above
            raise AssertionError(node.op)
    names = {n.value: n for n in graph.nodes if n.op == "input"}
    grads = tuple(adjoint.get(names[w].index) if w in names else None for w in wrt)
    return Program([*forward.inputs, *seeds, *extra], graph.nodes, (grads,))
