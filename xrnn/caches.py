"""Compact caches of the sequence functions.

``rnn_forward``/``lstm_forward`` return ``caches = (step_caches, x)`` exactly as the exercise
does, but ``step_caches`` holds a few stacked buffers instead of T tuples of copies; indexing it
builds the exercise's per-step cache tuple on demand from views. The backward functions read the
stacked buffers directly, and also accept a plain list of per-step tuples (caches built by the
exercise's own loop), which they stack first.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from xrnn.backends import resolve
from xrnn.inputs import check_da, sequence_shape, unpack_caches
from xrnn.params import parameter_items

__all__ = ["LSTMStepCaches", "RNNStepCaches", "open_caches"]


class _StepCaches(Sequence):
    T: int

    def __len__(self) -> int:
        return self.T

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[t] for t in range(*index.indices(self.T))]
        t = int(index)
        if t < 0:
            t += self.T
        if not 0 <= t < self.T:
            raise IndexError(f"step {index} is out of range for {self.T} time steps")
        return self._step(t)

    @abstractmethod
    def _step(self, t: int) -> tuple:
        """Step ``t``'s cache tuple, built from views of the stacked buffers."""


class RNNStepCaches(_StepCaches):
    """Step caches of :func:`xrnn.rnn_forward`; ``[t]`` is ``(a_next, a_prev, xt, parameters)``.

    Attributes
    ----------
    H : array of shape (T+1, n_a, m)
        Hidden states (:mod:`xrnn.ops`); block 0 is ``a0``.
    x : array of shape (n_x, m, T_x)
    parameters : dict of arrays
    """

    def __init__(self, H: Any, x: Any, parameters: Mapping[str, Any]) -> None:
        self.H, self.x, self.parameters = H, x, parameters
        self.m, self.T = int(x.shape[1]), int(x.shape[2])

    def _step(self, t: int) -> tuple:
        return (self.H[t + 1, :, :], self.H[t, :, :], self.x[:, :, t], self.parameters)

    @classmethod
    def from_tuples(cls, xp: Any, steps: Sequence[tuple], x: Any) -> RNNStepCaches:
        """Stack a list of exercise-style ``(a_next, a_prev, xt, parameters)`` tuples."""
        _check_tuples(steps, 4, "(a_next, a_prev, xt, parameters)")
        H = xp.stack([steps[0][1]] + [s[0] for s in steps], axis=0)
        return cls(H, x, steps[0][3])


class LSTMStepCaches(_StepCaches):
    """Step caches of :func:`xrnn.lstm_forward`; ``[t]`` is the 10-tuple
    ``(a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters)``.

    Attributes
    ----------
    G : array of shape (T, 4 n_a, m)
        Activated gates ``[Γf; Γu; Γo; c̃]`` (:mod:`xrnn.ops`).
    H, C : arrays of shape (T+1, n_a, m)
        Hidden and cell states; block 0 is ``a0``/``c0``.
    x : array of shape (n_x, m, T_x)
    parameters : dict of arrays
    """

    def __init__(self, G: Any, H: Any, C: Any, x: Any, parameters: Mapping[str, Any]) -> None:
        self.G, self.H, self.C, self.x, self.parameters = G, H, C, x, parameters
        self.m, self.T = int(x.shape[1]), int(x.shape[2])

    def _step(self, t: int) -> tuple:
        n_a = int(self.H.shape[1])
        g = self.G[t, :, :]
        return (
            self.H[t + 1, :, :],
            self.C[t + 1, :, :],
            self.H[t, :, :],
            self.C[t, :, :],
            g[:n_a, :],
            g[n_a : 2 * n_a, :],
            g[3 * n_a :, :],
            g[2 * n_a : 3 * n_a, :],
            self.x[:, :, t],
            self.parameters,
        )

    @classmethod
    def from_tuples(cls, xp: Any, steps: Sequence[tuple], x: Any) -> LSTMStepCaches:
        """Stack a list of exercise-style 10-tuples into compact caches."""
        _check_tuples(
            steps, 10, "(a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters)"
        )
        H = xp.stack([steps[0][2]] + [s[0] for s in steps], axis=0)
        C = xp.stack([steps[0][3]] + [s[1] for s in steps], axis=0)
        G = xp.stack([xp.concat([s[4], s[5], s[7], s[6]], axis=0) for s in steps], axis=0)
        return cls(G, H, C, x, steps[0][9])


def _check_tuples(steps: Any, size: int, layout: str) -> None:
    if not isinstance(steps, Sequence) or len(steps) == 0:
        raise ValueError(
            "caches[0] must be the step caches returned by the forward function "
            f"(or a non-empty list of {layout} tuples)"
        )
    for t, s in enumerate(steps):
        if not isinstance(s, tuple) or len(s) != size:
            raise ValueError(f"caches[0][{t}] must be a {size}-tuple {layout}")


def open_caches(
    da: Any,
    caches: Any,
    cls: type[RNNStepCaches] | type[LSTMStepCaches],
    forward: str,
    keys: tuple[str, ...],
    validate: Callable[[Mapping[str, Any], int, int], Any],
    check_finite: bool,
) -> tuple[Any, Any, Any, int, int, int, int]:
    """The common opening of the sequence backward functions.

    Unpacks ``caches`` (stacking an exercise-style list of step tuples), resolves one namespace,
    device and dtype over ``da``, ``x``, the cached states and the parameters, and checks every
    shape, ``da``'s time length included. Returns ``(ctx, steps, x, n_x, n_a, m, T)``.
    """
    steps, x = unpack_caches(caches, forward)
    if not isinstance(steps, cls):
        steps = cls.from_tuples(resolve([("caches[1] (x)", x)]).xp, steps, x)
    parameters = steps.parameters
    ctx = resolve(
        [
            ("da", da),
            ("caches[1] (x)", x),
            ("caches[0] (states)", steps.H),
            *parameter_items(parameters, keys),
        ],
        check_finite=check_finite,
    )
    n_x, m, T = sequence_shape(x)
    n_a = int(steps.H.shape[1])
    validate(parameters, n_x, n_a)
    check_da(da, n_a, m, T)
    return ctx, steps, x, n_x, n_a, m, T
