"""The ``xrnn`` command's BLAS thread policy while it trains (xrnn.core.threads). It changes the
whole process, so each check runs in a child process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from xrnn.core import threads, tuning

pytest.importorskip("threadpoolctl")

CHILD = """
import numpy as np, threadpoolctl
from xrnn.core.threads import one_blas_thread_for_training
did = one_blas_thread_for_training(np, {flops})
counts = {{i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"}}
print(did, sorted(counts))
"""


def _child(flops: float, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in threads.USER_SETTINGS}
    out = subprocess.run(
        [sys.executable, "-c", CHILD.format(flops=flops)],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return out.stdout.strip()


def test_small_training_steps_put_the_process_on_one_thread():
    assert _child(tuning.SMALL_TRAINING_STEP_FLOPS / 2) == "True [1]"


def test_large_training_steps_keep_the_threads():
    did, _ = _child(tuning.SMALL_TRAINING_STEP_FLOPS).split(" ", 1)
    assert did == "False"


def test_a_users_thread_setting_is_left_alone():
    assert _child(1.0, OPENBLAS_NUM_THREADS="2").startswith("False")


def test_the_command_called_from_a_program_changes_no_thread_pool(capsys):
    import threadpoolctl

    from xrnn.cli import main

    def counts() -> dict:
        return {i["filepath"]: i["num_threads"] for i in threadpoolctl.threadpool_info()}

    before = counts()
    assert main(["train", "--steps", "2", "--samples", "0", "--hidden", "8"]) == 0
    after = counts()  # (training may load another library, an OpenMP runtime: not changed)
    assert {k: after[k] for k in before} == before
