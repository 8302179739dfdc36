"""Training corpora: the bundled dinosaur names, user files, and the fixed evaluation split."""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

__all__ = ["bundled_names", "clean_dino_names", "holdout_split", "prepare_names", "read_names"]

# Lines of the source list that are not genus names (picture captions that slipped in).
NON_NAMES = frozenset({"skeleton", "illustration"})
# Two capitalised names run together ("AetonyxAfromimus"): split before an inner capital.
_RUN_TOGETHER = re.compile(r"(?<=[a-z])(?=[A-Z])")


def clean_dino_names(lines: Iterable[str]) -> list[str]:
    """Clean the raw dinosaur list: split run-together names, drop non-name lines, lowercase,
    and drop duplicates (first occurrence kept, order preserved). This made ``data/dinos.txt``."""
    names: list[str] = []
    for line in lines:
        for part in _RUN_TOGETHER.split(line.strip()):
            name = part.lower()
            if name and name not in NON_NAMES:
                names.append(name)
    return list(dict.fromkeys(names))


def prepare_names(lines: Iterable[str]) -> list[str]:
    """User data: one name per line, stripped and lowercased; blank lines and duplicates dropped."""
    return list(dict.fromkeys(s for s in (line.strip().lower() for line in lines) if s))


def bundled_names() -> list[str]:
    """The bundled corpus: 1,5xx dinosaur genus names, cleaned by :func:`clean_dino_names`."""
    text = resources.files("xrnn.charlm").joinpath("data/dinos.txt").read_text("utf-8")
    return text.split()


def read_names(path: str | Path) -> list[str]:
    """Names from a UTF-8 text file, one per line; a ``ValueError`` says what is wrong with it."""
    p = Path(path)
    if not p.exists():
        raise ValueError(f"data file {str(p)!r} does not exist")
    if p.is_dir():
        raise ValueError(f"data file {str(p)!r} is a directory, not a text file")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ValueError(f"data file {str(p)!r} cannot be read: {exc.strerror}") from exc
    if b"\0" in raw:
        raise ValueError(f"data file {str(p)!r} is binary (it contains NUL bytes), not text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"data file {str(p)!r} is not UTF-8 text (bad byte at offset {exc.start})"
        ) from exc
    names = prepare_names(text.splitlines())
    if len(names) < 2:
        raise ValueError(
            f"data file {str(p)!r} has {len(names)} usable name(s); training needs at least 2"
        )
    return names


def holdout_split(names: list[str], fraction: float = 0.1, seed: int = 0):
    """The fixed evaluation protocol: shuffle with ``random.Random(seed)`` and hold out the first
    ``fraction`` (at least one name). Returns ``(train, held_out)``; the input is not modified."""
    if len(names) < 2:
        raise ValueError(f"need at least 2 names to hold some out, got {len(names)}")
    shuffled = list(names)
    random.Random(seed).shuffle(shuffled)
    k = min(max(1, int(len(shuffled) * fraction)), len(shuffled) - 1)
    return shuffled[k:], shuffled[:k]
