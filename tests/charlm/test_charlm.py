"""The character model: learning, gradients, sampling, checkpoints, corpus and bad input."""

import math
import os
from pathlib import Path

import numpy as np
import pytest

import xrnn
from xrnn import charlm
from xrnn.charlm.model import CharModel

SMALL = [
    "anna",
    "bob",
    "carla",
    "dora",
    "emma",
    "fabio",
    "gina",
    "hans",
    "ida",
    "jonas",
    "karl",
    "lena",
    "mia",
    "nora",
    "otto",
    "paula",
]


def _is_bias(key):
    return key.split(".")[-1].startswith("b")  # "ba", "l1.ba", …


def _like(xp, dtype="float64"):
    return xp.asarray(np.zeros((1, 1)), dtype)


@pytest.mark.parametrize("cell", sorted(xrnn.CELLS))
def test_loss_falls_on_a_small_corpus(cell, xp):
    model, history = charlm.train(
        SMALL,
        cell=cell,
        hidden=16,
        layers=1,
        dropout=0.0,
        steps=60,
        batch_size=4,
        lr=0.02,
        validation=0,
        like=_like(xp, "float32"),
        seed=1,
    )
    loss = history["loss"]
    assert len(loss) == 60 and history["steps"] == 60
    assert np.mean(loss[-10:]) < 0.7 * np.mean(loss[:10])
    assert model.params["by"].dtype == xp.dtype("float32")


@pytest.mark.parametrize("layers, dropout", [(1, 0.0), (2, 0.3)], ids=["1-layer", "2-layers"])
@pytest.mark.parametrize("cell", sorted(xrnn.CELLS))
def test_full_model_gradients_match_finite_differences(cell, layers, dropout, xp):
    """Every parameter's gradient; with dropout, every model below is fresh with the same
    seed, so every loss sees the same masks."""
    vocab = charlm.Vocabulary.from_names(SMALL)
    kw = {"layers": layers, "dropout": dropout, "seed": 3}
    initial = CharModel.initialise(cell, vocab, 5, like=_like(xp), **kw)
    rng = np.random.default_rng(0)
    # nonzero biases: at zero, a zero input (the first step; or a layer below that ReLU and
    # dropout silenced) and a zero state put the ReLU RNN on its kink
    host = {
        k: xp.to_numpy(v) + (0.1 * rng.normal(size=v.shape) if _is_bias(k) else 0.0)
        for k, v in initial.params.items()
    }
    model = CharModel(cell, vocab, {k: xp.asarray(v) for k, v in host.items()}, **kw)
    batch = ["anna", "bo", "karl"]  # different lengths: padding and masking are exercised
    loss, grads = model.loss_and_gradients(batch)
    eps = 1e-6
    for k, value in host.items():
        g = xp.to_numpy(grads["d" + k])
        assert g.shape == value.shape
        # every output-layer entry; a random sample of the larger kernel matrices
        flat = list(np.ndindex(*value.shape))
        most = 30 if layers == 1 else 8
        picks = flat if len(flat) <= most else [flat[i] for i in rng.choice(len(flat), most, False)]
        for idx in picks:
            losses = []
            for sign in (1, -1):
                p = {kk: vv.copy() for kk, vv in host.items()}
                p[k][idx] += sign * eps
                probe = CharModel(cell, vocab, {kk: xp.asarray(vv) for kk, vv in p.items()}, **kw)
                losses.append(probe.loss_and_gradients(batch)[0])
            numeric = (losses[0] - losses[1]) / (2 * eps)
            assert math.isclose(g[idx], numeric, rel_tol=1e-5, abs_tol=1e-7), (k, idx)


def test_exercise_settings_train_with_a_falling_loss():
    """RNN, hidden 50, SGD lr 0.01, clip 5, one name per step (the exercise's model)."""
    names = charlm.bundled_names()[:300]
    _, history = charlm.train(
        names,
        cell="rnn",
        hidden=50,
        optimizer="sgd",
        lr=0.01,
        clip=5.0,
        batch_size=1,
        steps=1500,
        validation=0,
        seed=0,
    )
    loss = history["loss"]
    assert np.mean(loss[-300:]) < 0.85 * np.mean(loss[:300])


def test_sampling_is_reproducible(xp):
    vocab = charlm.Vocabulary.from_names(SMALL)
    model = CharModel.initialise("lstm", vocab, 8, seed=0, like=_like(xp))
    a = model.sample(6, seed=5)
    assert a == model.sample(6, seed=5)
    assert len(a) == 6 and all(set(n) <= set("".join(SMALL)) for n in a)
    assert a != model.sample(6, seed=6)
    assert model.sample(0) == []
    assert all(len(n) <= 3 for n in model.sample(4, max_length=3))
    trained, _ = charlm.train(
        SMALL, hidden=8, layers=1, dropout=0.0, average=None, steps=40, lr=0.05, validation=0,
        like=_like(xp),
    )  # fmt: skip
    cold = trained.sample(20, seed=1, temperature=0.01)  # near-greedy: (almost) all the same
    assert len(set(cold)) <= 2
    with pytest.raises(ValueError, match="temperature must be a positive number"):
        model.sample(2, temperature=0)


def test_n_changes_how_many_names_a_seed_gives_not_which(xp):
    vocab = charlm.Vocabulary.from_names(SMALL)
    model = CharModel.initialise("gru", vocab, 8, seed=1, like=_like(xp))
    eight = model.sample(8, seed=4)
    assert model.sample(3, seed=4) == eight[:3]
    assert model.sample(1, seed=4) == eight[:1]


def test_no_name_is_empty(xp):
    """Even a model that puts almost all its probability on ending the name."""
    vocab = charlm.Vocabulary.from_names(SMALL)
    model = CharModel.initialise("rnn", vocab, 8, seed=0, like=_like(xp))
    W, b = model.spec.output_keys
    bias = np.zeros((len(vocab), 1))
    bias[0] = 30.0  # the newline, e^30 times as likely as any other character
    model.params[b] = xrnn.to_device({"b": bias}, model.params[b])["b"]
    names = model.sample(50, seed=0)
    assert all(len(n) == 1 for n in names)  # one character, then the likely newline
    cold = model.sample(5, seed=0, temperature=1e-40)  # every other character underflows
    assert all(len(n) == 1 for n in cold)


def test_sampling_is_the_same_on_every_backend(xp):
    vocab = charlm.Vocabulary.from_names(SMALL)
    ref = CharModel.initialise("rnn", vocab, 8, seed=2).sample(5, seed=3)
    assert CharModel.initialise("rnn", vocab, 8, seed=2, like=_like(xp)).sample(5, seed=3) == ref


def test_save_load_round_trip_is_exact(tmp_path, xp):
    model, _ = charlm.train(SMALL, hidden=8, steps=5, validation=0, like=_like(xp))
    path = model.save(tmp_path / "m.npz")
    loaded = charlm.load(path, like=_like(xp))
    assert loaded.cell == model.cell and loaded.vocab == model.vocab
    for k, v in model.params.items():
        np.testing.assert_array_equal(xp.to_numpy(loaded.params[k]), xp.to_numpy(v))
    assert loaded.sample(4, seed=1) == model.sample(4, seed=1)
    assert loaded.evaluate(SMALL[:3]) == model.evaluate(SMALL[:3])
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temporary file left behind


def test_layers_and_dropout_train_save_and_load(tmp_path, xp):
    model, history = charlm.train(
        SMALL, cell="gru", hidden=8, layers=2, dropout=0.2, steps=30, validation=0, like=_like(xp)
    )
    assert model.layers == 2 and model.dropout == 0.2
    assert {"Wr", "l1.Wr", "l1.bhn", "Wy"} <= set(model.params)
    assert model.params["l1.Wr"].shape == (8, 16)  # the second layer reads the first's 8
    assert np.mean(history["loss"][-5:]) < np.mean(history["loss"][:5])
    loaded = charlm.load(model.save(tmp_path / "m.npz"), like=_like(xp))
    assert (loaded.layers, loaded.dropout) == (2, 0.2)
    assert loaded.sample(4, seed=1) == model.sample(4, seed=1)
    assert loaded.evaluate(SMALL[:3]) == model.evaluate(SMALL[:3])  # no dropout when evaluating


def test_lr_decay_resumes_from_the_best_parameters_on_a_plateau():
    _, history = charlm.train(
        SMALL * 3, hidden=8, steps=400, lr=0.05, eval_every=5, patience=2, lr_decay=0.5,
        decays=2, validation=0.2,
    )  # fmt: skip
    decays = history["lr_decays"]
    assert len(decays) == 2 and decays == sorted(decays)
    assert history["steps"] < 400  # the third plateau stopped it
    assert history["best_step"] <= history["steps"]


def test_the_moving_average_is_what_training_returns():
    kw = {"hidden": 8, "layers": 1, "dropout": 0.0, "steps": 30, "validation": 0, "seed": 4}
    live, _ = charlm.train(SMALL, average=None, **kw)
    averaged, _ = charlm.train(SMALL, average=0.9, **kw)
    # the same run (the average does not feed back): the returned parameters are the average
    for k, v in live.params.items():
        assert not np.allclose(averaged.params[k], v)
    close, _ = charlm.train(SMALL, average=1e-9, **kw)  # an average of one step: the params
    for k, v in live.params.items():
        np.testing.assert_allclose(close.params[k], v, rtol=1e-6, atol=1e-7)


def test_evaluate_refuses_unknown_characters():
    model = CharModel.initialise("lstm", charlm.Vocabulary.from_names(SMALL), 4)
    with pytest.raises(ValueError, match="character 'z', which is not in the model's vocabulary"):
        model.evaluate(["anna", "zed"])
    bpc = model.evaluate(SMALL)
    assert math.isclose(bpc, math.log2(len(model.vocab)), rel_tol=0.1)  # untrained ≈ uniform


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"hidden": 0}, "hidden must be a positive integer"),
        ({"steps": -1}, "steps must be a positive integer"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"lr": 0}, "lr must be a positive number"),
        ({"lr": float("nan")}, "lr must be a positive number"),
        (
            {"cell": "tcn"},
            "cell must be one of 'gru', 'lstm', 'peephole_lstm', 'rnn', 'rnn_relu'; got 'tcn'",
        ),
        ({"cell": ["lstm"]}, "cell must be one of"),
        ({"optimizer": "rmsprop"}, "optimizer must be 'adam' or 'sgd'"),
        ({"layers": 0}, "layers must be a positive integer"),
        ({"dropout": 1.0}, "dropout must be a number in \\[0, 1\\)"),
        ({"dropout": "0.1"}, "dropout must be a number in"),
        ({"lr_decay": 1.0}, "lr_decay must be a number in \\(0, 1\\) or None"),
        ({"decays": -1}, "decays must be a non-negative integer"),
        ({"average": 1}, "average must be a number in \\(0, 1\\) or None"),
        ({"device": "tpu"}, "device must be 'cpu', 'gpu' or 'auto'"),
    ],
)
def test_bad_hyperparameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        charlm.train(SMALL, **kwargs)


def test_too_few_names():
    with pytest.raises(ValueError, match="at least 2 distinct names"):
        charlm.train(["solo", "solo", ""])


def test_bad_data_files(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        charlm.read_names(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="has 0 usable name"):
        charlm.read_names(tmp_path / "empty.txt")
    (tmp_path / "one.txt").write_text("only\n\n")
    with pytest.raises(ValueError, match="has 1 usable name"):
        charlm.read_names(tmp_path / "one.txt")
    # two names pass no check that training then fails: one would be held out
    (tmp_path / "two.txt").write_text("anna\nbob\n")
    with pytest.raises(ValueError, match="has 2 usable name\\(s\\); training needs at least 3"):
        charlm.read_names(tmp_path / "two.txt")
    with pytest.raises(ValueError, match="is not a regular file"):
        charlm.read_names("/dev/zero")  # an endless device: refused before it is read
    big = tmp_path / "big.txt"
    big.write_bytes(b"name\n" * (charlm.corpus.MAX_DATA_BYTES // 5 + 1))
    with pytest.raises(ValueError, match="is larger than 64 MiB; train on a sample"):
        charlm.read_names(big)
    (tmp_path / "bin.dat").write_bytes(b"\x00\x01\x02abc")
    with pytest.raises(ValueError, match="is binary"):
        charlm.read_names(tmp_path / "bin.dat")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\nbar\n".encode("latin-1"))
    with pytest.raises(ValueError, match="is not UTF-8"):
        charlm.read_names(tmp_path / "latin1.txt")
    with pytest.raises(ValueError, match="is a directory"):
        charlm.read_names(tmp_path)
    if os.geteuid() != 0:  # root reads anything
        (tmp_path / "locked.txt").write_text("a\nb\n")
        (tmp_path / "locked.txt").chmod(0)
        with pytest.raises(ValueError, match="cannot be read"):
            charlm.read_names(tmp_path / "locked.txt")


def test_what_makes_a_name(tmp_path):
    """Split at \\n only; stripped (CRLF files read alike); a BOM is not a character."""
    data = "\ufeffAnna\r\nbob\n\n  carla \nx\u2028y\nANNA\n"
    (tmp_path / "n.txt").write_bytes(data.encode("utf-8"))
    names = charlm.read_names(tmp_path / "n.txt")
    assert names == ["anna", "bob", "carla", "x\u2028y"]
    assert "\ufeff" not in charlm.Vocabulary.from_names(names).chars


def test_bundled_corpus_is_the_cleaned_source():
    names = charlm.bundled_names()
    assert len(names) == len(set(names)) > 1500
    assert all(n.isalpha() and n.islower() for n in names)
    assert not {"skeleton", "illustration"} & set(names)
    assert {"aetonyx", "afromimus", "klamelisaurus", "kol"} <= set(names)
    source = Path(__file__).resolve().parents[3] / "shared" / "data" / "dinos.txt"
    if source.is_file():  # the repository's checkout: the bundled file is exactly the cleaning
        assert names == charlm.clean_dino_names(source.read_text().splitlines())


def test_holdout_split_protocol():
    names = charlm.bundled_names()
    train, test = charlm.holdout_split(names)
    assert len(test) == len(names) // 10 and set(train).isdisjoint(test)
    assert sorted(train + test) == sorted(names)
    assert charlm.holdout_split(names) == (train, test)


def test_clipping():
    g = {"dW": np.array([[-10.0, 0.5], [3.0, 7.0]])}
    np.testing.assert_array_equal(charlm.clip(g, 5.0)["dW"], [[-5, 0.5], [3, 5]])
    assert g["dW"][0, 0] == -10  # not mutated
    n = charlm.clip_by_global_norm(g, 1.0)["dW"]
    assert math.isclose(float(np.sqrt((n**2).sum())), 1.0, rel_tol=1e-9)
    np.testing.assert_allclose(n / n[0, 0], g["dW"] / g["dW"][0, 0])
