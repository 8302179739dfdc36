"""Calls from several Python threads at once (issue: no process-wide side effects): every size
class of the NumPy loops — the compiled whole loop, the lean loop on the private one-thread
BLAS, the lockstep loop on mid-sized and on large steps — gives the lone call's results
bit for bit, no call changes NumPy's BLAS thread count as any thread sees it, a user's own
``threadpool_limits`` holds for as long as they hold it, and the lockstep helpers are one per
concurrent caller at most."""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest

import xrnn
from xrnn.backends import jit_enabled
from xrnn.core import tuning

threadpoolctl = pytest.importorskip("threadpoolctl")

# (cell, n_a, m, T) by the path its loops take (xrnn.core.tuning's thresholds, float32)
SIZE_CLASSES = {
    "whole compiled loop": ("lstm", 8, 2, 40),
    "private one-thread BLAS": ("gru", 64, 32, 20),
    "lockstep": ("lstm", 128, 16, 12),
    "lockstep, large steps": ("lstm", 256, 80, 4),
}
CALLERS = 4


def _call(cell: str, n_a: int, m: int, T: int) -> dict:
    rng = np.random.default_rng(n_a * 1000 + m)
    n_x = 6
    init = {"lstm": xrnn.initialize_lstm, "gru": xrnn.initialize_gru}[cell]
    p = {k: v.astype(np.float32) for k, v in init(n_x, n_a, seed=1).items()}
    x = rng.normal(size=(n_x, m, T)).astype(np.float32)
    a0 = rng.normal(size=(n_a, m)).astype(np.float32)
    da = rng.normal(size=(n_a, m, T)).astype(np.float32)
    out = xrnn.forward(cell, x, a0, p)
    grads = xrnn.backward(da, out[-1])
    return {"a": out[0], **grads}


def _blas_threads() -> set:
    return {i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"}


def test_the_size_classes_take_their_paths():
    """The sizes above really are the four classes (so that the stress test covers each)."""
    step = {name: tuning.step_flops(xrnn.CELLS[c], n_a, m) for name, (c, n_a, m, _) in
            SIZE_CLASSES.items()}  # fmt: skip
    assert step["whole compiled loop"] <= tuning.SMALL_LOOP_FLOPS
    assert tuning.SMALL_LOOP_FLOPS < step["private one-thread BLAS"] < tuning.SMALL_STEP_FLOPS
    assert tuning.LOCKSTEP_MIN_FLOPS <= step["lockstep"] < tuning.SMALL_TRAINING_STEP_FLOPS
    assert step["lockstep, large steps"] > tuning.SMALL_TRAINING_STEP_FLOPS


def test_concurrent_calls_of_every_size_class_round_alike_and_touch_no_thread_pool():
    want = {name: _call(*args) for name, args in SIZE_CLASSES.items()}  # one at a time
    before = _blas_threads()
    seen: set = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.update(_blas_threads())

    failures: list[str] = []
    barrier = threading.Barrier(CALLERS)

    def caller(i: int) -> None:
        order = [name for name in SIZE_CLASSES for _ in range(3)]
        random.Random(i).shuffle(order)
        barrier.wait()
        for name in order:
            got = _call(*SIZE_CLASSES[name])
            for k, v in want[name].items():
                if not np.array_equal(got[k], v):
                    failures.append(f"{name}: {k} differs from the lone call's")

    watcher = threading.Thread(target=watch)
    watcher.start()
    callers = [threading.Thread(target=caller, args=(i,)) for i in range(CALLERS)]
    for t in callers:
        t.start()
    for t in callers:
        t.join(300)
    stop.set()
    watcher.join()
    assert not any(t.is_alive() for t in callers)
    assert failures == []
    assert seen == before, f"NumPy's BLAS thread count seen as {seen}, {before} before"
    assert _blas_threads() == before
    if jit_enabled():
        from xrnn.backends.numpy import lockstep

        assert len(lockstep.helpers()) <= CALLERS + 1  # (+1: a helper of an earlier test)


def test_a_users_threadpool_limits_holds_while_other_threads_call():
    before = _blas_threads()
    stop = threading.Event()
    broken: list[set] = []
    inside = threading.Event()

    def user() -> None:
        with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
            inside.set()
            while not stop.is_set():
                now = _blas_threads()
                if now != {1}:
                    broken.append(now)

    holder = threading.Thread(target=user)
    holder.start()
    inside.wait()
    try:
        for args in SIZE_CLASSES.values():
            for _ in range(2):
                _call(*args)
    finally:
        stop.set()
        holder.join()
    assert broken == []
    assert _blas_threads() == before  # theirs to restore, and restored
