"""Training corpora: the bundled dinosaur names, user files, and the fixed evaluation split."""

from __future__ import annotations

import random
import re
import stat
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from xrnn.charlm.vocab import printable

__all__ = [
    "MAX_DATA_BYTES",
    "MAX_NAME_CHARS",
    "MIN_NAMES",
    "bundled_names",
    "clean_dino_names",
    "holdout_split",
    "prepare_names",
    "read_names",
]

# Lines of the source list that are not genus names (picture captions that slipped in).
NON_NAMES = frozenset({"skeleton", "illustration"})
# A data file's limits: two names to train on and one held out; a size that fits in memory
# many times over once decoded (1 MiB of names is about 100,000 of them)
MIN_NAMES = 3
MAX_DATA_BYTES = 64 * 2**20
# A name's longest length: the model unrolls over the longest name of a batch, so its memory
# grows with it (a megabyte-long "name" took gigabytes); real names are tens of characters
MAX_NAME_CHARS = 1000
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


def prepare_names(lines: Iterable[str], source: str = "names") -> list[str]:
    """User data: one name per line, stripped and lowercased; blank lines and duplicates
    dropped. A name longer than :data:`MAX_NAME_CHARS` or with a control character or a lone
    surrogate (:func:`~xrnn.charlm.vocab.printable`) is a ``ValueError`` naming its line in
    ``source``."""
    names = []
    for number, line in enumerate(lines, 1):
        name = line.strip().lower()
        if not name:
            continue
        if len(name) > MAX_NAME_CHARS:
            raise ValueError(
                f"{source}: line {number} is {len(name)} characters long; a name may have at "
                f"most {MAX_NAME_CHARS}"
            )
        bad = next((c for c in name if not printable(c)), None)
        if bad is not None:
            raise ValueError(
                f"{source}: line {number} holds the control character U+{ord(bad):04X}; names "
                f"are printable text"
            )
        names.append(name)
    return list(dict.fromkeys(names))


def bundled_names() -> list[str]:
    """The bundled corpus: 1,5xx dinosaur genus names, cleaned by :func:`clean_dino_names`."""
    text = resources.files("xrnn.charlm").joinpath("data/dinos.txt").read_text("utf-8")
    return text.split()


def read_names(path: str | Path) -> list[str]:
    """Names from a UTF-8 text file; a ``ValueError`` says what is wrong with it.

    What makes a name: the file is split at ``\n`` only (other Unicode line breaks stay part
    of a name); each line is stripped of surrounding whitespace (so a Windows ``\r\n`` file
    reads the same) and lowercased; blank lines and repeated names are dropped; a UTF-8 byte
    order mark at the start is not part of the first name. The file must be a regular file
    (a pipe or device, which may never end, is refused before it is opened) holding at least
    :data:`MIN_NAMES` names and at most :data:`MAX_DATA_BYTES` bytes, each name at most
    :data:`MAX_NAME_CHARS` characters, none a control character.
    """
    p = Path(path)
    try:
        info = p.stat()
    except FileNotFoundError:
        raise ValueError(f"data file {str(p)!r} does not exist") from None
    except OSError as exc:
        raise ValueError(f"data file {str(p)!r} cannot be read: {exc.strerror}") from exc
    if stat.S_ISDIR(info.st_mode):
        raise ValueError(f"data file {str(p)!r} is a directory, not a text file")
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(
            f"data file {str(p)!r} is not a regular file (a pipe, device or socket); save the "
            f"names to a file first"
        )
    try:
        with open(p, "rb") as f:
            raw = f.read(MAX_DATA_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"data file {str(p)!r} cannot be read: {exc.strerror}") from exc
    if b"\0" in raw:
        raise ValueError(f"data file {str(p)!r} is binary (it contains NUL bytes), not text")
    if len(raw) > MAX_DATA_BYTES:
        raise ValueError(
            f"data file {str(p)!r} is larger than {MAX_DATA_BYTES // 2**20} MiB; train on a "
            f"sample of it (e.g. shuf -n 1000000 {p})"
        )
    try:
        text = raw.decode("utf-8-sig")  # -sig: a leading byte order mark is dropped
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"data file {str(p)!r} is not UTF-8 text (bad byte at offset {exc.start})"
        ) from exc
    names = prepare_names(text.split("\n"), f"data file {str(p)!r}")
    if len(names) < MIN_NAMES:
        raise ValueError(
            f"data file {str(p)!r} has {len(names)} usable name(s); training needs at least "
            f"{MIN_NAMES} (two to train on, one held out)"
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
