"""Every tuning threshold of the time loops, and the one measure they are stated in.

The thresholds are in FLOPs of one step's recurrent GEMM ``Wa a⟨t-1⟩`` (:func:`step_flops`),
except the backward chunk's width, in step × batch columns. The loops read them from here when
they run, so a test or a benchmark may change one for a while.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CHUNK_COLUMNS",
    "FORWARD_CHUNK_BYTES",
    "FORWARD_CHUNK_MIN_BYTES",
    "FORWARD_CHUNK_SHARE",
    "INTERRUPT_CHECK_FLOPS",
    "LOCKSTEP_MIN_FLOPS",
    "LOCKSTEP_TAKEOVER_CHECKS",
    "POINTWISE_FLOPS",
    "SMALL_LOOP_FLOPS",
    "SMALL_STEP_FLOPS",
    "SMALL_TRAINING_STEP_FLOPS",
    "step_flops",
    "steps_between_checks",
    "steps_per_span",
]


def step_flops(cell: Any, n_a: int, m: int) -> float:
    """FLOPs of one step's recurrent GEMM ``Wa a⟨t-1⟩`` (``blocks·n_a × n_a`` by ``n_a × m``)."""
    return 2.0 * cell.blocks * n_a * n_a * m


# --- BLAS threads of the time loops and of training ---------------------------------------------

# A loop's per-step GEMMs below this many FLOPs run on the private one-thread OpenBLAS
# (xrnn.backends.numpy.cblas), larger ones on NumPy's, with its threads: 2^21 is the LSTM's
# 2·4n_a·n_a·m at n_a = 128, m = 16, the benchmark's "long" config; config A (8.4 MFLOP) is
# 1.3× faster on two threads on an idle machine (2× slower with a competing process, like
# torch's own LSTM); charlm-sized steps gain from threads nowhere.
SMALL_STEP_FLOPS = 2**21
# `xrnn train` runs thousands of steps of one size: up to 2^24 FLOPs (n_a = 128, m = 128) its
# process runs NumPy's BLAS on one thread (xrnn.core.threads), which loses nothing idle and keeps
# it 2.4× faster on a busy machine (xrnn bench --busy)
SMALL_TRAINING_STEP_FLOPS = 2**24

# --- the compiled NumPy loops (xrnn.backends.numpy.jit, xrnn.backends.numpy.generated) ------------

# Steps up to this many FLOPs run as one compiled loop with a hand-written GEMM (charlm's
# 20 k; the "long" config's 2.1 M and `xrnn train`'s 4.2 M call BLAS per step)
SMALL_LOOP_FLOPS = 2**17
# Steps from this many FLOPs up run on two threads in lockstep where they can (the "long"
# config's 2.1 M: 25 → 14 µs a forward step; below it, the step limits BLAS to one thread).
# There is no upper bound: BLAS's own threads split only the GEMMs, leave the pointwise math on
# one core and keep spinning after each call, beside whatever runs next (a forward's loop
# slows the backward after it), worst where another process competes for the cores
LOCKSTEP_MIN_FLOPS = 2**21
# Checks of a meeting (xrnn.backends.numpy.lockstep.wait_or_take: spins, then yields of the
# core) after which a lockstep loop's caller stops waiting for a late helper and runs both
# halves of the remaining steps of that forward span or backward chunk: a step's usual wait is
# a few checks, a helper whose core another thread holds (another library's pool spinning
# after its own call, another process) is late by a time slice of the scheduler's.
# Negative: never.
LOCKSTEP_TAKEOVER_CHECKS = 4096

# --- the engine's backward loop (xrnn.core.engine) ----------------------------------------------

# Step × batch columns of the gradient blocks per chunk: large enough for GEMMs near peak,
# small enough that the chunk's temporaries are recycled by the allocator rather than
# page-faulted in afresh on every call. Config A forward+backward (benchmarks/phases.py):
# 512 → 29.7 ms, 1024 → 30.3 ms, 2048 → 34.1 ms, 4096 → 37.3 ms.
CHUNK_COLUMNS = 1024

# --- the forward that keeps no caches (xrnn.core.engine, return_caches=False) ------------------

# Bytes of input side per chunk of steps, the chunk's work area beside the outputs (its saved
# blocks go over it or beside it), and at most this share of the output a's bytes: a small
# share of a large call's outputs (the LSTM's input side is four times their size per step),
# and few chunks for a small call, as each chunk costs a start of the loops (the lockstep
# helper's hand-offs, some 0.1 ms). With the outputs themselves (a and, for the LSTM, c) and
# the lockstep loop's scratch, the forward then holds under 3x the output a.
FORWARD_CHUNK_BYTES = 4 * 2**20
FORWARD_CHUNK_SHARE = 0.5
# ... but never below this many bytes: a small call's memory is small whatever its share, and
# its time is mostly the chunks' starts
FORWARD_CHUNK_MIN_BYTES = 2**20

# --- interrupts (xrnn.backends.numpy.jit) ---------------------------------------------------------

# A compiled forward loop returns to Python, where a KeyboardInterrupt is raised, after about
# this much work: recurrent-GEMM FLOPs plus POINTWISE_FLOPS per gate element of each step.
# 2^28 is a few to some 30 ms of one core's work; a span's start costs a compiled call (and in
# lockstep a hand-over to the helper, some 20 µs), at most a percent of it.
INTERRUPT_CHECK_FLOPS = 2**28
POINTWISE_FLOPS = 64


def steps_between_checks(cell: Any, n_a: int, m: int) -> int:
    """Steps a compiled loop runs before it returns to Python (see INTERRUPT_CHECK_FLOPS)."""
    return steps_per_span(step_flops(cell, n_a, m) + POINTWISE_FLOPS * cell.blocks * n_a * m)


def steps_per_span(flops_per_step: float) -> int:
    """Steps of ``flops_per_step`` each that make one span of compiled work between two
    returns to Python (INTERRUPT_CHECK_FLOPS; at least one)."""
    return max(1, int(INTERRUPT_CHECK_FLOPS // flops_per_step))
