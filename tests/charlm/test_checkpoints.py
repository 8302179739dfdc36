"""Checkpoints as untrusted input: every crafted or corrupted file is a ``ValueError`` naming
it, costs memory in proportion to its size, and saving keeps the user's umask and leaves no
temporary files behind (issue #12)."""

import json
import os
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from xrnn import charlm
from xrnn.benchmark.table import peak_memory_mb
from xrnn.cli import main

NAMES = ["anna", "bob", "carla", "dora", "emma", "fabio", "gina", "hans", "ida", "jonas"]


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A small trained model, its checkpoint, and the checkpoint's arrays and metadata."""
    model, _ = charlm.train(NAMES, hidden=4, layers=1, dropout=0.0, steps=2, validation=0)
    path = model.save(tmp_path_factory.mktemp("ckpt") / "ok.npz")
    with np.load(path) as z:
        files = {k: z[k] for k in z.files}
    return model, path, files, json.loads(str(files.pop("__meta__")))


def write(path, files, meta):
    text = meta if isinstance(meta, str) else json.dumps(meta)
    np.savez(path, **files, __meta__=np.array(text))
    return path


def refused(path, message):
    with pytest.raises(ValueError, match=message) as exc:
        charlm.load(path)
    assert str(path) in str(exc.value)  # the message names the file


def test_round_trip_and_version_1(good, tmp_path):
    model, path, files, meta = good
    assert charlm.load(path).sample(5, seed=1) == model.sample(5, seed=1)
    v1 = {k: v for k, v in meta.items() if k not in ("layers", "dropout")}
    loaded = charlm.load(write(tmp_path / "v1.npz", files, {**v1, "format_version": 1}))
    assert (loaded.layers, loaded.dropout) == (1, 0.0)
    assert loaded.sample(3, seed=0) == model.sample(3, seed=0)
    # a Fortran-ordered array is read as such
    fortran = {**files, "Wy": np.asfortranarray(files["Wy"])}
    loaded = charlm.load(write(tmp_path / "f.npz", fortran, meta))
    np.testing.assert_array_equal(loaded.params["Wy"], files["Wy"])


def test_files_that_are_not_checkpoints(good, tmp_path):
    _, path, files, _ = good
    raw = path.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    refused(tmp_path / "trunc.npz", "not a readable xrnn checkpoint|truncated")
    (tmp_path / "text.npz").write_text("hello")
    refused(tmp_path / "text.npz", "not an .npz archive")
    np.save(tmp_path / "plain.npy", files["Wy"])
    refused(tmp_path / "plain.npy", "a single .npy array, not an xrnn checkpoint")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    refused(tmp_path / "other.npz", "no metadata")
    refused(tmp_path / "missing.npz", "does not exist")
    refused(tmp_path, "is a directory")
    refused("/dev/null", "not a regular file")
    os.mkfifo(tmp_path / "fifo")
    refused(tmp_path / "fifo", "not a regular file")  # and does not block on the pipe
    # NumPy's advice to "load it unsafely" with pickle never reaches the user
    with pytest.raises(ValueError) as exc:
        charlm.load(tmp_path / "text.npz")
    assert "pickle" not in str(exc.value)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"format_version": 99}, "format version 99; this xrnn reads versions 1 to 2"),
        ({"format_version": True}, "format version True"),
        ({"layers": 0}, "invalid number of layers 0"),
        ({"layers": "2"}, "invalid number of layers '2'"),
        ({"dropout": 1.5}, "invalid dropout 1.5"),
        ({"vocab": None}, "invalid vocabulary None"),
        ({"vocab": 5}, "invalid vocabulary 5"),
        ({"vocab": ["\n", "a", 3]}, "invalid vocabulary"),
        ({"vocab": "abc"}, "invalid vocabulary: a vocabulary is a newline"),
        ({"cell": ["lstm"]}, "unknown cell \\['lstm'\\]"),
        ({"cell": "tcn"}, "unknown cell 'tcn'"),
        ({"hidden": 5.0}, "invalid hidden size 5.0"),
        ({"hidden": 5}, "array 'Wf' has shape \\(4, \\d+\\); expected \\(5, \\d+\\)"),
        ({"dtype": "float16"}, "invalid dtype 'float16'"),
        ({"format": "other"}, "not an xrnn character-model checkpoint"),
    ],
)
def test_bad_metadata(good, tmp_path, change, message):
    _, _, files, meta = good
    refused(write(tmp_path / "bad.npz", files, {**meta, **change}), message)


def test_metadata_that_is_not_json_or_nested_deep(good, tmp_path):
    _, _, files, _ = good
    refused(write(tmp_path / "a.npz", files, "{not json"), "corrupt metadata")
    refused(write(tmp_path / "b.npz", files, "[" * 100_000 + "]" * 100_000), "corrupt metadata")
    refused(write(tmp_path / "c.npz", files, "[1, 2]"), "not an xrnn character-model")


@pytest.mark.parametrize(
    "dtype, meta_dtype, message",
    [
        ("int32", "int32", "invalid dtype 'int32'"),
        ("complex128", "complex128", "invalid dtype 'complex128'"),
        ("bool", "bool", "invalid dtype 'bool'"),
        ("<U3", "<U3", "invalid dtype '<U3'"),
        (">f4", "float32", "has dtype >f4; the metadata says float32"),
        ("float64", "float32", "has dtype <f8; the metadata says float32"),
    ],
)
def test_arrays_of_other_dtypes_with_matching_metadata(good, tmp_path, dtype, meta_dtype, message):
    _, _, files, meta = good
    cast = {k: v.astype(dtype) for k, v in files.items()}
    refused(write(tmp_path / "d.npz", cast, {**meta, "dtype": meta_dtype}), message)


def test_arrays_that_disagree_with_the_metadata(good, tmp_path):
    _, _, files, meta = good
    refused(write(tmp_path / "s.npz", {**files, "by": np.zeros((3, 1), "f4")}, meta),
            "array 'by' has shape \\(3, 1\\)")  # fmt: skip
    refused(write(tmp_path / "n.npz", {**files, "by": files["by"] * np.nan}, meta),
            "array 'by' holds NaN or infinity")  # fmt: skip
    extra = write(tmp_path / "x.npz", {**files, "extra": np.zeros(1, "f4")}, meta)
    refused(extra, "holds arrays .*'extra'")
    missing = write(tmp_path / "m.npz", {k: v for k, v in files.items() if k != "by"}, meta)
    refused(missing, "holds arrays")


def _peak_mb_of_loading(path):
    """Peak traced memory (MB) of ``charlm.load(path)``, which must refuse the file."""

    def refuse():
        with pytest.raises(ValueError):
            charlm.load(path)

    return peak_memory_mb(refuse)


def test_a_small_file_claiming_a_huge_model_costs_no_memory(good, tmp_path):
    """A few KB of metadata declaring 12,000 hidden units (2.3 GB of float32 parameters), an
    .npy header declaring 2**33 floats, and a 50 MB array compressed into a few KB: each is
    refused — and costs well under 100 MB — before any array body is read."""
    _, _, files, meta = good
    huge = write(tmp_path / "huge.npz", files, {**meta, "hidden": 12000})
    assert huge.stat().st_size < 100_000
    refused(huge, "more parameters than its \\d+ bytes can hold")
    assert _peak_mb_of_loading(huge) < 100

    claim = tmp_path / "claim.npz"
    write(claim, files, meta)
    with zipfile.ZipFile(claim, "a") as z:  # a second 'by.npy' whose header claims 2**33
        header = {"descr": "<f4", "fortran_order": False, "shape": (2**33,)}
        with z.open("by2.npy", "w") as f:
            np.lib.format.write_array_header_1_0(f, header)
    refused(claim, "holds arrays")
    assert _peak_mb_of_loading(claim) < 100

    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("__meta__.npy", "w") as f:
            np.lib.format.write_array(f, np.array(json.dumps(meta)))
        with z.open("Wy.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array(f, np.zeros(50 * 2**20 // 4, "f4"))
    assert bomb.stat().st_size < 200_000
    refused(bomb, "compressed member")
    assert _peak_mb_of_loading(bomb) < 100


def test_every_single_bit_flip_is_a_value_error_or_a_valid_model(good, tmp_path):
    """Every 5th bit of a checkpoint flipped in turn (a few thousand corrupt files): each loads
    as a valid model (a flipped weight) or is refused with a ValueError — never another
    exception."""
    _, path, _, _ = good
    raw = bytearray(path.read_bytes())
    target = tmp_path / "flip.npz"
    outcomes = {"loaded": 0, "refused": 0}
    for bit in range(0, 8 * len(raw), 5):
        flipped = bytearray(raw)
        flipped[bit // 8] ^= 1 << (bit % 8)
        target.write_bytes(flipped)
        try:
            charlm.load(target)
            outcomes["loaded"] += 1
        except ValueError as exc:
            assert str(target) in str(exc)
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0 and outcomes["loaded"] > 0, outcomes


def test_save_keeps_the_umask_and_handles_long_names(good, tmp_path):
    model = good[0]
    old = os.umask(0o027)
    try:
        saved = model.save(tmp_path / "m.npz")
    finally:
        os.umask(old)
    assert saved.stat().st_mode & 0o777 == 0o640
    long_name = tmp_path / ("n" * 250 + ".npz")  # 254 characters: the file system's limit is 255
    assert charlm.load(model.save(long_name)).sample(2) == model.sample(2)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m.npz", long_name.name])


def test_save_errors_name_the_target_and_leave_no_temporary_file(good, tmp_path):
    model = good[0]
    with pytest.raises(ValueError, match="folder .* does not exist"):
        model.save(tmp_path / "nowhere" / "m.npz")
    with pytest.raises(ValueError, match="is a directory"):
        model.save(tmp_path)
    # a write that fails half-way (the file-size limit stands in for a full disk)
    script = (
        "import resource, signal, sys\n"
        "from xrnn import charlm\n"
        "model = charlm.load(sys.argv[1])\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))\n"
        "try:\n"
        "    model.save(sys.argv[2])\n"
        "except ValueError as exc:\n"
        "    print(exc)\n"
    )
    out = tmp_path / "full"
    out.mkdir()
    r = subprocess.run(
        [sys.executable, "-c", script, str(good[1]), str(out / "m.npz")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert re.search(r"cannot write checkpoint .*m\.npz", r.stdout), r.stdout
    assert list(out.iterdir()) == []  # neither the target nor a temporary file


# --- issue #23: what a checkpoint may not hold -------------------------------------------


@pytest.mark.parametrize("char", ["\x1b", "\x07", "\r", "\ud800"])
def test_a_vocabulary_with_control_characters_is_refused_at_load(good, tmp_path, char):
    _, _, files, meta = good
    vocab = meta["vocab"][:-1] + char
    path = tmp_path / "bad.npz"
    np.savez(path, **files, __meta__=np.array(json.dumps({**meta, "vocab": vocab})))
    with pytest.raises(ValueError, match=f"control character U\\+{ord(char):04X}"):
        charlm.load(path)


def test_thousands_of_extra_members_give_a_short_message(good, tmp_path):
    _, _, files, meta = good
    extra = {f"junk{i}": np.zeros(1) for i in range(5000)}
    path = tmp_path / "many.npz"
    np.savez(path, **files, **extra, __meta__=np.array(json.dumps(meta)))
    with pytest.raises(ValueError, match="unexpected 'junk0'.* and 4995 more") as exc:
        charlm.load(path)
    assert len(str(exc.value)) < 400


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow the error reports
def test_weights_that_overflow_are_refused_at_load(good, tmp_path, capsys):
    """All weights 3e38 (finite): the model has no distribution to sample from. Refused at
    load (it sampled empty names with exit code 0), and by sample() itself."""
    _, _, files, meta = good
    huge = {k: np.full_like(v, 3e38) for k, v in files.items()}
    path = tmp_path / "huge.npz"
    np.savez(path, **huge, __meta__=np.array(json.dumps(meta)))
    with pytest.raises(ValueError, match="no probability distribution"):
        charlm.load(path)
    assert main(["sample", "--load", str(path), "--n", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no probability distribution" in err[0], err
    model = charlm.load(good[1])
    model.params = {k: np.full_like(v, 3e38) for k, v in model.params.items()}
    with pytest.raises(ValueError, match="not finite"):
        model.sample(3)
