"""Each implementation ``xrnn bench`` times runs in its worker process and reports timings."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from xrnn.benchmark.worker import IMPLS, INFERENCE

NEEDS = {"xrnn-jax": "jax", "torch.nn": "torch", "torch.nn-no_grad": "torch"}
NEEDS.update({i: "torch" for i in IMPLS if i.startswith("xrnn-torch")})


@pytest.mark.parametrize("impl", IMPLS)
def test_worker_times_each_implementation(impl):
    if impl in NEEDS:
        pytest.importorskip(NEEDS[impl])
    cmd = [sys.executable, "-m", "xrnn.benchmark.worker", impl, "lstm", "charlm", "float32"]
    done = subprocess.run(
        [*cmd, "--min-runs", "2", "--budget", "0.01"], capture_output=True, text=True, check=True
    )
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(got["fwd"]) >= 2 and all(t > 0 for t in got["fwd"])
    assert (got["fb"] == []) == (impl in INFERENCE)


def test_every_bench_option_says_what_it_does():
    from xrnn.benchmark.table import parser

    for action in parser()._actions:
        assert action.help, f"{action.option_strings} has no help"


def test_an_unknown_config_is_refused_before_any_work(capsys):
    from xrnn.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--configs", "Z"])
    assert exit_.value.code == 2  # argparse's usage error
    assert "--configs: unknown 'Z'" in capsys.readouterr().err
