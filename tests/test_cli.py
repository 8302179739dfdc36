"""The command line: a short training run, sampling a checkpoint, and one-line errors (exit 2)."""

import os
import subprocess
import sys

import pytest

import xrnn
from xrnn.cli import main


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "xrnn", *args], capture_output=True, text=True, timeout=300
    )


def test_train_save_then_sample(tmp_path):
    ckpt = tmp_path / "model.npz"
    r = run(
        "train", "--steps", "40", "--hidden", "16", "--layers", "2", "--dropout", "0.1",
        "--samples", "3", "--save", str(ckpt),
    )  # fmt: skip
    assert "hidden 16 × 2 layers · dropout 0.1" in r.stdout
    assert r.returncode == 0, r.stderr
    assert "held-out:" in r.stdout and "bits/char" in r.stdout
    assert r.stdout.count("\n  ") == 3  # three sampled names
    r = run("sample", "--load", str(ckpt), "--n", "4", "--seed", "2")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 4
    assert all(name.strip() for name in r.stdout.splitlines())  # none empty
    more = run("sample", "--load", str(ckpt), "--n", "8", "--seed", "2")
    assert more.stdout.splitlines()[:4] == r.stdout.splitlines()  # --n: how many, not which


def test_exercise_mode_from_a_data_file(tmp_path):
    data = tmp_path / "names.txt"
    data.write_text("\n".join(["anna", "bob", "carla", "dora", "emma", "fabio"]) + "\n")
    r = run(
        "train",
        "--data",
        str(data),
        "--cell",
        "rnn",
        "--hidden",
        "8",
        "--optimizer",
        "sgd",
        "--lr",
        "0.01",
        "--batch-size",
        "1",
        "--steps",
        "30",
        "--samples",
        "2",
    )
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--data", "/no/such/file"], "does not exist"),
        (["train", "--hidden", "0"], "--hidden: must be a positive integer"),
        (["train", "--steps", "-5"], "--steps: must be a positive integer"),
        (["train", "--lr", "abc"], "--lr: 'abc' is not a number"),
        (["train", "--cell", "tcn"], "invalid choice"),
        (["train", "--layers", "0"], "--layers: must be a positive integer"),
        (["train", "--dropout", "1"], "--dropout: must lie in [0, 1)"),
        (["train", "--dropout", "x"], "--dropout: 'x' is not a number"),
        (["train", "--lr-decay", "1.5"], "--lr-decay: must lie in (0, 1), or be 'none'"),
        (["train", "--average", "x"], "--average: 'x' is not a number (or 'none')"),
        (["sample", "--load", "/no/such.npz"], "does not exist"),
        (["sample", "--load", "/dev/null"], "is not a regular file"),
        (["sample", "--load", "/"], "is a directory"),
        (["train", "--save", "/no/such/folder/m.npz"], "--save '/no/such/folder/m.npz': the fo"),
        (["train", "--save", "/"], "--save '/' is not a file name"),
        (["train", "--plot", "/no/such/folder/loss.png"], "--plot '/no/such/folder/loss.png'"),
        (["train", "--data", "/dev/zero"], "is not a regular file"),
        (["train", "--hidden", "100000", "--steps", "1"], "out of memory; try a smaller"),
        (["sample", "--load", "x", "--temperature", "0"], "--temperature: must be a positive"),
    ],
)
def test_errors_are_one_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        sys.exit(main(argv))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_gpu_without_gpu_is_a_clean_error(capsys):
    try:
        import cupy

        if cupy.is_available():
            pytest.skip("a GPU is present")
    except ImportError:
        pass
    assert main(["train", "--device", "gpu"]) == 2
    assert "cupy.is_available() is false" in capsys.readouterr().err


def test_bad_data_file_is_one_line(tmp_path, capsys):
    (tmp_path / "bin").write_bytes(b"\x00\x00")
    assert main(["train", "--data", str(tmp_path / "bin")]) == 2
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04garbage")
    assert main(["sample", "--load", str(tmp_path / "bad.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("xrnn: error:") for line in err)


def test_version_usage_and_defaults_in_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"xrnn {xrnn.__version__}"
    assert main([]) == 2  # bare `xrnn`: its usage, on stderr
    err = capsys.readouterr().err
    assert err.startswith("usage: xrnn") and "train" in err and "sample" in err
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "(default: 128)" in out and "(default: 0.3)" in out and "(default: None)" not in out


def test_a_diverged_run_is_one_line_and_suggests_a_smaller_lr(capsys):
    argv = ["train", "--lr", "1e38", "--optimizer", "sgd", "--steps", "5", "--samples", "0"]
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("step")]
    assert len(err) == 1 and "diverged" in err[0] and "--lr" in err[0], err


def test_a_closed_stdout_pipe_is_quiet(tmp_path):
    ckpt = tmp_path / "m.npz"
    r = run("train", "--steps", "2", "--hidden", "4", "--samples", "0", "--save", str(ckpt))
    assert r.returncode == 0, r.stderr
    reader = subprocess.Popen(["head", "-n", "1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    writer = subprocess.Popen(
        [sys.executable, "-m", "xrnn", "sample", "--load", str(ckpt), "--n", "100000"],
        stdout=reader.stdin,
        stderr=subprocess.PIPE,
        text=True,
    )
    reader.stdin.close()  # only head holds the pipe now: when it exits, writes fail
    _, err = writer.communicate(timeout=300)
    reader.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_outputs_are_checked_before_training(tmp_path):
    """An unwritable --save or --plot fails at once (exit 2), not after a long run."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("root writes anywhere")
        r = run("train", "--steps", "100000", "--save", str(locked / "m.npz"))
    finally:
        locked.chmod(0o700)
    assert r.returncode == 2 and "is not writable" in r.stderr
    assert "xrnn lstm" not in r.stdout  # no training header: nothing ran


def test_sampling_at_a_tiny_temperature_is_greedy_and_quiet(tmp_path):
    ckpt = tmp_path / "m.npz"
    r = run("train", "--steps", "30", "--hidden", "8", "--samples", "0", "--save", str(ckpt))
    assert r.returncode == 0, r.stderr
    r = run("sample", "--load", str(ckpt), "--n", "5", "--temperature", "1e-300")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    names = r.stdout.splitlines()
    assert len(names) == 5 and len(set(names)) == 1  # the likeliest name, five times


def test_a_huge_sample_count_is_one_line(tmp_path, capsys):
    ckpt = tmp_path / "m.npz"
    assert (
        main(["train", "--steps", "2", "--hidden", "4", "--samples", "0", "--save", str(ckpt)]) == 0
    )
    capsys.readouterr()
    assert main(["sample", "--load", str(ckpt), "--n", "100000000000"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "out of memory" in err, err


def test_bench_runs_from_the_package(capsys):
    """xrnn bench needs no source checkout: its code ships in xrnn.benchmark."""
    for argv in (
        ["bench", "--help"],
        ["bench", "--busy", "--help"],
        ["bench", "--device", "gpu", "-h"],
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
        assert capsys.readouterr().out.startswith("usage: xrnn bench")


def test_progress_never_prints_nan(capsys, monkeypatch):
    """Before the first validation the plain progress line leaves the validation loss out."""
    monkeypatch.setitem(sys.modules, "tqdm", None)  # the plain lines, tqdm or not
    assert main(["train", "--steps", "3", "--hidden", "8", "--layers", "1", "--samples", "0"]) == 0
    err = capsys.readouterr().err
    steps = [line for line in err.splitlines() if line.startswith("step")]
    assert len(steps) == 3 and not any("nan" in line for line in steps), steps
