"""Character n-gram baselines on the character model's evaluation protocol.

``python benchmarks/ngram_baseline.py [--data FILE]``: lowercase the names (default: xrnn's
bundled corpus), shuffle with ``random.Random(0)``, hold out the first 10 %, and report held-out
bits per character (each end-of-name newline counted) of add-α smoothed character n-grams for
n = 1..6. α is picked per n on the held-out names themselves, so these baselines are, if
anything, optimistic. Contexts are padded with newlines, as the model starts each name from an
empty input.
"""

from __future__ import annotations

import argparse
import math
from collections import Counter

from xrnn.charlm import bundled_names, holdout_split, read_names

ALPHAS = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


def bits_per_char(train: list[str], test: list[str], n: int, alpha: float) -> float:
    vocab = set("".join(train + test)) | {"\n"}
    grams: Counter[str] = Counter()
    contexts: Counter[str] = Counter()
    for name in train:
        s = "\n" * (n - 1) + name + "\n"
        for i in range(n - 1, len(s)):
            grams[s[i - n + 1 : i + 1]] += 1
            contexts[s[i - n + 1 : i]] += 1
    bits, chars = 0.0, 0
    for name in test:
        s = "\n" * (n - 1) + name + "\n"
        for i in range(n - 1, len(s)):
            p = (grams[s[i - n + 1 : i + 1]] + alpha) / (
                contexts[s[i - n + 1 : i]] + alpha * len(vocab)
            )
            bits -= math.log2(p)
            chars += 1
    return bits / chars


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="names, one per line (default: the bundled corpus)")
    args = ap.parse_args(argv)
    names = read_names(args.data) if args.data else bundled_names()
    train, test = holdout_split(names)
    print(f"{len(names)} names, {len(test)} held out")
    for n in range(1, 7):
        best = min((bits_per_char(train, test, n, a), a) for a in ALPHAS)
        print(f"{n}-gram: {best[0]:.3f} bits/char (alpha {best[1]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
