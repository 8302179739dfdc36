"""The BLAS thread policy around time loops (xrnn.threads)."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from xrnn import threads, tuning


def test_mid_sized_steps_run_blas_on_one_thread(monkeypatch):
    """Steps below SMALL_STEP_FLOPS get a one-thread limit; steps OpenBLAS keeps on one thread
    anyway (below SINGLE_THREAD_FLOPS) and large ones get no limit at all."""
    pytest.importorskip("threadpoolctl")
    for name in threads.USER_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    threads._blas.cache_clear()
    try:
        if threads._blas() is None:
            pytest.skip("threadpoolctl finds no BLAS library")
        xp = np  # NumPy's namespace check accepts the module itself
        for flops, limited in (
            (tuning.SINGLE_THREAD_FLOPS / 2, False),
            (tuning.SINGLE_THREAD_FLOPS, True),
            (tuning.SMALL_STEP_FLOPS / 2, True),
            (tuning.SMALL_STEP_FLOPS, False),
        ):
            scope = threads.step_threads(xp, flops)
            assert isinstance(scope, contextlib.nullcontext) != limited, flops
        # a training loop sets the limit once, for its tiniest steps too
        tiny = threads.step_threads(xp, 1, small=tuning.SMALL_TRAINING_STEP_FLOPS, floor=0)
        assert not isinstance(tiny, contextlib.nullcontext)
    finally:
        threads._blas.cache_clear()


def test_a_users_thread_setting_is_left_alone(monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    threads._blas.cache_clear()
    try:
        scope = threads.step_threads(np, tuning.SMALL_STEP_FLOPS / 2)
        assert isinstance(scope, contextlib.nullcontext)
    finally:
        threads._blas.cache_clear()
