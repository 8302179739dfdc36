"""Ctrl-C reaches the caller promptly: during a long compiled loop (which returns to Python
between spans of steps) and, on the ``xrnn`` command, during its imports (one line, exit 130)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import xrnn

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "pthread_kill"), reason="no pthread_kill on this platform"
)


def _long_call():
    """An LSTM forward (with caches) of some 80,000 small steps: one compiled loop where the
    kernels are on, about a second of work, ~300 MB."""
    rng = np.random.default_rng(0)
    n_a, T = 128, 80_000
    p = {k: v.astype(np.float32) for k, v in xrnn.initialize_lstm(1, n_a, seed=0).items()}
    x = rng.normal(size=(1, 1, T)).astype(np.float32)
    a0 = np.zeros((n_a, 1), np.float32)
    xrnn.lstm_forward(x[:, :, :10], a0, p)  # compiled and warm
    return lambda: xrnn.lstm_forward(x, a0, p)


@pytest.fixture
def ctrl_c_raises():
    """Python's own SIGINT handler for the test. A process started with SIGINT ignored (a
    test runner's worker, such as nox's parallel sessions) keeps it ignored, and a Ctrl-C
    would then never reach the loop."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_keyboard_interrupt_stops_a_long_compiled_loop_promptly(ctrl_c_raises):
    call = _long_call()
    start = time.perf_counter()
    call()
    whole = time.perf_counter() - start
    delay = 0.2
    if whole < delay + 0.4:
        pytest.skip(f"the call took {whole:.2f} s: too short to tell a prompt interrupt here")
    sent: list[float] = []

    def interrupt() -> None:
        sent.append(time.perf_counter())
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    timer = threading.Timer(delay, interrupt)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            call()
            time.sleep(10)  # (only if the call ended first: the signal ends the sleep)
        latency = time.perf_counter() - sent[0]
    finally:
        timer.cancel()
    assert latency < 0.25, f"interrupt took {latency:.3f} s to arrive (the call: {whole:.2f} s)"
    # and the next call runs as before
    xrnn.lstm_forward(*_small_args())


def _small_args():
    p = xrnn.initialize_lstm(3, 4, seed=0)
    return np.ones((3, 2, 5)), np.zeros((4, 2)), p


# The child installs Python's SIGINT handler first, as Python does where SIGINT is not ignored
# (a test runner's worker may have started it ignored, and the child inherits that)
INTERRUPT_DURING_IMPORTS = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == "numpy":  # the first heavy import on the way to xrnn.cli
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None
sys.meta_path.insert(0, Interrupt())
import _xrnn_entry
sys.exit(_xrnn_entry.main())
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_during_the_commands_imports_is_one_line_and_exit_130():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSTARTUP"}
    done = subprocess.run(
        [sys.executable, "-c", INTERRUPT_DURING_IMPORTS, "train", "--steps", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 130, done.stderr
    assert done.stderr == "xrnn: interrupted\n"
    assert done.stdout == ""
