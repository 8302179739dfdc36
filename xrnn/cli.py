"""The ``xrnn`` command: ``xrnn train``, ``xrnn sample``, ``xrnn bench``.

Every error the user can cause (a bad file, a bad number, a bad checkpoint) is one line on
stderr and exit code 2 — never a traceback.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from xrnn import __version__
from xrnn.cells.base import CELLS
from xrnn.charlm.checkpoint import check_writable
from xrnn.charlm.train import train

__all__ = ["main"]

# `xrnn train`'s defaults are charlm.train's
DEFAULTS = {k: p.default for k, p in inspect.signature(train).parameters.items()}


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each option's default, except the ones that are simply absent."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kw: Any) -> None:
        kw.setdefault("formatter_class", _Help)
        super().__init__(*args, **kw)

    def error(self, message: str):  # argparse's own errors: one line, exit 2
        self.exit(2, f"xrnn: error: {message}\n")


def _int_at_least(minimum: int):
    """An argparse type: a whole number >= ``minimum``, with a one-line message otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            what = "a positive integer" if minimum == 1 else f"at least {minimum}"
            raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def _dropout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), got {text}")
    return value


def _decay(text: str) -> float | None:
    if text.lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (or 'none')") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1), or be 'none'; got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="xrnn",
        description="RNN/LSTM kernels on the array API, and a "
        "character-level language model that learns and invents names.",
    )
    p.add_argument("--version", action="version", version=f"xrnn {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser(
        "train", help="train the character model, report held-out bits/char, print sampled names"
    )
    t.add_argument(
        "--data", metavar="FILE", help="names, one per line (default: the bundled dinosaur names)"
    )
    t.add_argument("--cell", choices=sorted(CELLS), default=DEFAULTS["cell"], help="the cell")
    t.add_argument(
        "--hidden",
        type=_positive_int,
        default=DEFAULTS["hidden"],
        metavar="N",
        help="hidden units of every layer",
    )
    t.add_argument(
        "--layers",
        type=_positive_int,
        default=DEFAULTS["layers"],
        metavar="N",
        help="stacked recurrent layers",
    )
    t.add_argument(
        "--dropout",
        type=_dropout,
        default=DEFAULTS["dropout"],
        metavar="P",
        help="dropout on each recurrent layer's output while training",
    )
    t.add_argument(
        "--steps",
        type=_positive_int,
        default=DEFAULTS["steps"],
        metavar="N",
        help="maximum updates; early stopping on a validation split may end sooner",
    )
    t.add_argument(
        "--batch-size",
        type=_positive_int,
        default=DEFAULTS["batch_size"],
        metavar="N",
        help="names per update (1: the exercise's one name per step)",
    )
    t.add_argument(
        "--lr", type=_positive_float, default=DEFAULTS["lr"], metavar="X", help="learning rate"
    )
    t.add_argument(
        "--optimizer", choices=("sgd", "adam"), default=DEFAULTS["optimizer"], help="optimizer"
    )
    t.add_argument(
        "--average",
        type=_decay,
        default=DEFAULTS["average"],
        metavar="X",
        help="keep a moving average of the parameters (avg ← X·avg + (1 − X)·params) and "
        "validate and return it; 'none': the parameters themselves",
    )
    t.add_argument(
        "--lr-decay",
        type=_decay,
        default=DEFAULTS["lr_decay"],
        metavar="X",
        help="on a validation plateau, resume from the best parameters with lr × X "
        "(up to twice); 'none': stop at the first plateau",
    )
    t.add_argument(
        "--clip",
        type=_positive_float,
        default=DEFAULTS["clip"],
        metavar="X",
        help="elementwise gradient clipping bound",
    )
    t.add_argument(
        "--seed",
        type=int,
        default=DEFAULTS["seed"],
        metavar="N",
        help="seeds the weights, the validation split, the batch order, dropout and sampling",
    )
    t.add_argument(
        "--samples",
        type=_non_negative_int,
        default=10,
        metavar="N",
        help="names to invent after training",
    )
    t.add_argument("--save", metavar="PATH", help="write the trained model (.npz)")
    t.add_argument("--plot", metavar="PNG", help="save the loss curve (needs matplotlib)")
    t.add_argument(
        "--device",
        choices=("cpu", "gpu", "auto"),
        default="cpu",
        help="NumPy, or CuPy on a CUDA GPU ('auto': the GPU when there is one)",
    )

    s = sub.add_parser("sample", help="invent names with a saved model")
    s.add_argument("--load", metavar="PATH", required=True, help="a checkpoint from --save")
    s.add_argument("--n", type=_non_negative_int, default=10, metavar="N", help="how many names")
    s.add_argument("--seed", type=int, default=0, metavar="N", help="seeds the draws")
    s.add_argument(
        "--temperature",
        type=_positive_float,
        default=1.0,
        metavar="X",
        help="below 1: safer names, above 1: wilder ones",
    )

    # `xrnn bench ARGS…` hands every argument to xrnn.benchmark (main() intercepts it)
    sub.add_parser(
        "bench",
        help="time xrnn against the exercise's loop and torch.nn; --busy: on an idle and a busy "
        "machine (xrnn bench --help lists the options)",
    )
    return p


class _Progress:
    """tqdm when installed and stderr is a terminal, else a plain line every 10 % of the
    steps (a log file or a pipe gets whole lines, not a bar redrawn with carriage returns)."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.bar: Any = None
        self.val = float("nan")
        if not sys.stderr.isatty():
            return
        try:
            from tqdm import tqdm
        except ImportError:
            return
        self.bar = tqdm(total=steps, unit="step", file=sys.stderr, dynamic_ncols=True)

    def __call__(self, report: dict[str, Any]) -> None:
        self.val = report.get("val_bpc", self.val)
        if self.bar is not None:
            self.bar.update(1)
            shown = {"loss": f"{report['loss']:.2f}", "names/s": f"{report['names_per_s']:.0f}"}
            if self.val == self.val:  # not NaN: a validation has run
                shown["val bits/char"] = f"{self.val:.3f}"
            self.bar.set_postfix(shown, refresh=False)
        elif report["step"] % max(1, self.steps // 10) == 0:
            # the validation loss once there is one (never "nan" before the first)
            val = f"val {self.val:.3f} bits/char  " if self.val == self.val else ""
            print(
                f"step {report['step']:>6}/{self.steps}  loss {report['loss']:7.3f}  "
                f"{val}{report['names_per_s']:.0f} names/s",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _one_blas_thread(like: Any, cell: str, hidden: int, batch_size: int) -> None:
    """NumPy's BLAS on one thread for this process while its training steps are small
    (:mod:`xrnn.core.threads`: the command owns its process; the library never does this)."""
    import array_api_compat

    from xrnn.cells.base import get_cell
    from xrnn.core.threads import one_blas_thread_for_training
    from xrnn.core.tuning import step_flops

    xp = array_api_compat.array_namespace(like)
    one_blas_thread_for_training(xp, step_flops(get_cell(cell), hidden, batch_size))


def _train(args: argparse.Namespace, own_process: bool) -> int:
    from xrnn import charlm
    from xrnn.charlm.train import resolve_device

    like = resolve_device(args.device)  # fail on a missing GPU before reading anything
    # and on an output that cannot be written before training, not after it
    if args.save:
        check_writable(args.save, "--save")
    if args.plot:
        check_writable(args.plot, "--plot")
        _pyplot()
    if args.data:
        names, source = charlm.read_names(args.data), args.data
    else:
        names, source = charlm.bundled_names(), "the bundled dinosaur names"
    train_names, test_names = charlm.holdout_split(names)
    if args.batch_size > len(train_names):  # checked against the data before any work
        raise ValueError(
            f"--batch-size {args.batch_size} is larger than the {len(train_names)} names to "
            f"train on; use at most {len(train_names)}"
        )
    print(
        f"xrnn {args.cell} · {len(names)} names from {source} · {len(test_names)} held out · "
        f"hidden {args.hidden} × {args.layers} layer{'s' if args.layers > 1 else ''}"
        f"{f' · dropout {args.dropout}' if args.dropout else ''} · {args.optimizer} lr {args.lr}"
        f" · batch {args.batch_size}"
    )
    if own_process:
        _one_blas_thread(like, args.cell, args.hidden, args.batch_size)
    bar = _Progress(args.steps)
    try:
        model, history = charlm.train(
            train_names,
            cell=args.cell,
            hidden=args.hidden,
            layers=args.layers,
            dropout=args.dropout,
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            lr_decay=args.lr_decay,
            average=args.average,
            optimizer=args.optimizer,
            clip=args.clip,
            seed=args.seed,
            like=like,
            progress=bar,
            alphabet="".join(test_names),
        )
    finally:
        bar.close()
    test_bpc = model.evaluate(test_names)
    print(
        f"trained {history['steps']} steps in {history['seconds']:.1f} s "
        f"(best at step {history['best_step']}"
        + "".join(f"; lr × {args.lr_decay} at step {k}" for k in history["lr_decays"])
        + ")"
    )
    print(f"held-out: {test_bpc:.3f} bits/char over {len(test_names)} names")
    if args.save:
        print(f"saved {model.save(args.save)}")
    if args.plot:
        _plot(history, args.plot)
    if args.samples:
        print("samples:")
        for name in model.sample(args.samples, seed=args.seed):
            print(f"  {name}")
    return 0


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("--plot needs matplotlib: pip install 'xrnn-kernels[plot]'") from None
    return plt


def _plot(history: dict[str, Any], path: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    lines = ax.plot(history["loss"], lw=0.6, label="training loss (nats per name)")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    if history["val_bpc"]:
        ax2 = ax.twinx()
        steps, bpc = zip(*history["val_bpc"], strict=True)
        lines += ax2.plot(steps, bpc, color="C1", marker=".", label="validation bits/char")
        ax2.set_ylabel("bits/char")
    ax.legend(handles=lines, loc="upper right")  # one legend for both axes
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"saved loss curve to {path}")


def _sample(args: argparse.Namespace) -> int:
    from xrnn import charlm

    model = charlm.load(args.load)
    for name in model.sample(args.n, seed=args.seed, temperature=args.temperature):
        print(name)
    return 0


def _bench(args: list[str]) -> int:
    from xrnn.benchmark import table  # --busy: table.main hands over to xrnn.benchmark.busy

    return table.main(args)


def _line(exc: BaseException, limit: int = 500) -> str:
    """An error's message as one line of at most ``limit`` characters (a message that quotes
    a file's contents could otherwise fill the terminal)."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def main(argv: Sequence[str] | None = None, *, own_process: bool = False) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); the exit status.
    ``own_process``: the process is the command's alone (the ``xrnn`` executable and
    ``python -m xrnn``), so ``xrnn train`` may set its BLAS threads (:mod:`xrnn.core.threads`);
    called from a program, nothing process-wide changes."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if not argv:  # bare `xrnn`: what it can do
            _parser().print_help(sys.stderr)
            return 2
        if argv[:1] == ["bench"]:
            return _bench(argv[1:])
        args = _parser().parse_args(argv)
        with warnings.catch_warnings():
            # overflow on the way to a diverged run: the run's one-line error says it all
            warnings.simplefilter("ignore", RuntimeWarning)
            if args.command == "train":
                return _train(args, own_process)
            return _sample(args)
    except BrokenPipeError:  # `xrnn sample … | head`: the reader left; stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout
        return 1
    except FloatingPointError as exc:
        print(f"xrnn: error: {_line(exc)} (try a smaller --lr)", file=sys.stderr)
        return 2
    except MemoryError:
        print(
            "xrnn: error: out of memory; try a smaller --hidden, --layers, --batch-size or --n",
            file=sys.stderr,
        )
        return 2
    except (ValueError, OSError) as exc:
        print(f"xrnn: error: {_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xrnn: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the boundary: one line, never a traceback
        print(f"xrnn: error: unexpected {type(exc).__name__}: {_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(own_process=True))
