"""Character-model checkpoints: an ``.npz`` archive of the parameters plus JSON metadata,
written atomically and read as untrusted input.

Reading validates everything it can from the archive's directory, the ``.npy`` headers and the
metadata *before* it reads an array's body: member names, storage (uncompressed, inside the
file), dtypes, byte order and shapes, and sizes declared by the metadata against the file's own
size. So a file of N bytes costs O(N) memory to refuse or to load — a few KB claiming a huge
model are refused without allocating it — and every failure is a ``ValueError`` naming the
file.
"""

from __future__ import annotations

import io
import json
import math
import os
import secrets
import stat
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np

from xrnn.cells.base import CELLS, Cell
from xrnn.charlm.vocab import Vocabulary, printable
from xrnn.core.host import to_numpy

if TYPE_CHECKING:
    from xrnn.charlm.model import CharModel

__all__ = ["FORMAT_VERSION", "check_writable", "load", "save"]

# 2: layers and dropout in the metadata, deeper layers' arrays prefixed (version 1 is read as
# one layer without dropout)
FORMAT_VERSION = 2
META = "__meta__"
MAX_META_BYTES = 1 << 20  # a vocabulary of thousands of characters fits many times over
MAX_HEADER_BYTES = 10_000  # NumPy's own bound on an .npy header
DTYPES: dict[str, np.dtype] = {"float32": np.dtype("<f4"), "float64": np.dtype("<f8")}


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, with a message naming the file."""


def layer_key(layer: int, key: str) -> str:
    """A parameter's name in the model's flat dict: layer 0's keys as the cell names them
    (a one-layer model's dict is the functional API's), deeper layers' prefixed ``l1.``, …"""
    return key if layer == 0 else f"l{layer}.{key}"


def expected_shapes(cell: Cell, V: int, hidden: int, layers: int) -> dict[str, tuple[int, int]]:
    """Every array of a ``layers``-deep model of ``hidden`` units over ``V`` characters."""
    shapes: dict[str, tuple[int, int]] = {}
    for n in range(layers):
        for k, (shape, _) in cell.shapes(V if n == 0 else hidden, hidden).items():
            shapes[layer_key(n, k)] = (int(shape[0]), int(shape[1]))
    W, b = cell.output_keys
    shapes.update({W: (V, hidden), b: (V, 1)})
    return shapes


# --- writing ---------------------------------------------------------------------------------


def check_writable(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a ``Path`` once it is known a file can be written there (its folder exists
    and is writable, and it is not itself a folder), so that a long run does not fail at its
    very end; a ``ValueError`` naming ``what`` and the path otherwise."""
    p = Path(path)
    folder = p.parent
    if p.name in ("", ".", ".."):
        raise ValueError(f"{what} {str(p)!r} is not a file name")
    if p.is_dir():
        raise ValueError(f"{what} {str(p)!r} is a directory; give a file name")
    if not folder.is_dir():
        raise ValueError(f"{what} {str(p)!r}: the folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {str(p)!r}: the folder {str(folder)!r} is not writable")
    if p.exists() and not p.is_file():
        raise ValueError(f"{what} {str(p)!r} exists and is not a regular file")
    # the one proof that a file can be written there (a read-only mount, /proc, a full disk
    # pass the checks above): create one beside it, as save() will, and remove it
    probe = folder / f".xrnn-probe-{secrets.token_hex(6)}.tmp"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        probe.unlink()
    except OSError as exc:
        raise ValueError(
            f"{what} {str(p)!r}: cannot create a file in {str(folder)!r} ({exc.strerror or exc})"
        ) from None
    return p


def save(model: CharModel, path: str | os.PathLike) -> Path:
    """Write ``model`` to ``path`` (see :meth:`CharModel.save`)."""
    p = check_writable(path, "checkpoint")
    meta = {
        "format": "xrnn.charlm",
        "format_version": FORMAT_VERSION,
        "cell": model.cell,
        "hidden": model.hidden,
        "layers": model.layers,
        "dropout": model.dropout,
        "vocab": "".join(model.vocab.chars),
        "dtype": str(np.dtype(to_numpy(model.params["by"]).dtype)),
    }
    payload: dict[str, Any] = {k: to_numpy(v) for k, v in model.params.items()}
    payload[META] = np.array(json.dumps(meta))
    # A short temporary name beside the target (a long target name still fits the file
    # system's limit), created with mode 0666 so that the kernel applies the user's umask, as
    # for any file the user writes; renamed over the target only once it is complete.
    tmp = p.parent / f".xrnn-save-{secrets.token_hex(6)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **payload)
            os.replace(tmp, p)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ValueError(f"cannot write checkpoint {str(p)!r}: {exc.strerror or exc}") from exc
    return p


# --- reading ---------------------------------------------------------------------------------


def load(path: str | os.PathLike, *, like: Any = None) -> CharModel:
    """Load a checkpoint written by :meth:`CharModel.save`, validating all of it.

    Parameters
    ----------
    like : array, optional
        Put the parameters in this array's library, device and dtype (default: NumPy, in the
        checkpoint's dtype).

    Raises
    ------
    ValueError
        The file is missing or not a regular file, is not an xrnn checkpoint (truncated,
        corrupted, another format or format version), or its metadata and arrays disagree —
        whatever went wrong, the message names the file.
    """
    p = Path(path)
    try:
        meta, archive = _open(p)
        model = _build(p, meta, archive, like)
    except CheckpointError:
        raise
    except Exception as exc:  # zipfile, struct, JSON nesting, memory: all the same to a user
        raise CheckpointError(
            f"{str(p)!r} is not a readable xrnn checkpoint ({type(exc).__name__}: {exc})"
        ) from exc
    return model


def _fail(p: Path, message: str) -> CheckpointError:
    return CheckpointError(f"{str(p)!r} {message}")


class _Archive:
    """The checkpoint's arrays, read one by one after checking their headers."""

    def __init__(self, p: Path, size: int, archive: zipfile.ZipFile, members: dict) -> None:
        self.p, self.size, self.archive, self.members = p, size, archive, members

    @property
    def arrays(self) -> set[str]:
        """The names of the arrays it holds, the metadata aside."""
        return set(self.members) - {META}

    def read(self, name: str, dtype: np.dtype | None, shape: tuple[int, ...] = ()) -> np.ndarray:
        """Array ``name`` after checking its header against ``dtype`` and ``shape`` (``dtype``
        None: the metadata, a 0-d string of the header's own length)."""
        p, member = self.p, self.members[name]
        with self.archive.open(member) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                header = np.lib.format.read_array_header_1_0(f, max_header_size=MAX_HEADER_BYTES)
            elif version == (2, 0):
                header = np.lib.format.read_array_header_2_0(f, max_header_size=MAX_HEADER_BYTES)
            else:
                raise _fail(p, f"array {name!r} has an unsupported .npy version {version}")
            got_shape, fortran, got_dtype = header
            if dtype is None:  # the metadata: a 0-d Unicode string
                if got_dtype.kind != "U" or got_shape != () or got_dtype.itemsize > MAX_META_BYTES:
                    raise _fail(p, "has corrupt metadata (not a short text string)")
                dtype = got_dtype
            elif got_dtype != dtype:
                raise _fail(
                    p,
                    f"array {name!r} has dtype {got_dtype.str}; the metadata says "
                    f"{dtype.name} (little-endian {dtype.str})",
                )
            elif tuple(got_shape) != shape:
                raise _fail(p, f"array {name!r} has shape {tuple(got_shape)}; expected {shape}")
            nbytes = math.prod(shape) * dtype.itemsize
            if f.tell() + nbytes != member.file_size:
                raise _fail(p, f"array {name!r} is truncated or padded (corrupt file)")
            buffer = bytearray(nbytes)
            if f.readinto(buffer) != nbytes:  # type: ignore[attr-defined]
                raise _fail(p, f"array {name!r} is truncated")
        flat = np.frombuffer(buffer, dtype=dtype)
        return flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)


def _open(p: Path) -> tuple[dict[str, Any], _Archive]:
    """The metadata (a dict, its fields not yet checked) and the archive of arrays."""
    try:
        info = os.stat(p)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {str(p)!r} does not exist") from None
    except OSError as exc:
        raise CheckpointError(f"checkpoint {str(p)!r} cannot be read: {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise CheckpointError(f"checkpoint {str(p)!r} is a directory, not a checkpoint file")
    if not stat.S_ISREG(info.st_mode):
        raise CheckpointError(
            f"checkpoint {str(p)!r} is not a regular file (a device, pipe or socket)"
        )
    with open(p, "rb") as f:
        head = f.read(6)
        if head == b"\x93NUMPY":
            raise _fail(p, "is a single .npy array, not an xrnn checkpoint (.npz from --save)")
        if head[:2] != b"PK":
            raise _fail(p, "is not an xrnn checkpoint (not an .npz archive)")
        f.seek(0)
        data = f.read()  # O(N): the archive is read once, members are sliced from it
    size = len(data)  # what every declared size is bounded by
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise _fail(p, f"is not a readable xrnn checkpoint (truncated or corrupt: {exc})") from None
    members: dict[str, zipfile.ZipInfo] = {}
    for member in archive.infolist():
        name = member.filename
        if not name.endswith(".npy") or name[:-4] in members:
            raise _fail(p, f"holds an unexpected archive member {name!r}")
        if member.compress_type != zipfile.ZIP_STORED or member.compress_size != member.file_size:
            raise _fail(p, f"holds a compressed member {name!r}; xrnn writes them uncompressed")
        if member.header_offset + member.compress_size > size:
            raise _fail(p, f"is truncated: member {name!r} ends past the end of the file")
        members[name[:-4]] = member

    checkpoint = _Archive(p, size, archive, members)
    if META not in members:
        raise _fail(p, "is not an xrnn checkpoint: it has no metadata")
    if members[META].file_size > MAX_META_BYTES:
        raise _fail(p, "has corrupt metadata (over 1 MiB)")
    text = str(checkpoint.read(META, None)[()])
    try:
        meta = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise _fail(p, f"has corrupt metadata: {type(exc).__name__}") from None
    if not isinstance(meta, dict) or meta.get("format") != "xrnn.charlm":
        raise _fail(p, "is not an xrnn character-model checkpoint")
    return meta, checkpoint


def _listing(what: str, names: set[str], shown: int = 5) -> str:
    """``what`` and the first few of ``names`` (a file may list thousands), or nothing."""
    if not names:
        return ""
    first = sorted(names)[:shown]
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f"{what} {', '.join(repr(n[:40]) for n in first)}{more}"


def _integer(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _build(p: Path, meta: dict[str, Any], checkpoint: _Archive, like: Any) -> CharModel:
    from xrnn.charlm.model import CharModel
    from xrnn.core.params import to_device

    version = meta.get("format_version")
    if version not in (1, FORMAT_VERSION) or not _integer(version):
        raise _fail(
            p, f"has format version {version!r}; this xrnn reads versions 1 to {FORMAT_VERSION}"
        )
    cell = meta.get("cell")
    if not isinstance(cell, str) or cell not in CELLS:
        raise _fail(p, f"names an unknown cell {cell!r}")
    chars = meta.get("vocab")
    if not isinstance(chars, str):
        raise _fail(p, f"has an invalid vocabulary {chars!r} (a string of characters)")
    try:
        vocab = Vocabulary(chars)
    except ValueError as exc:
        raise _fail(p, f"has an invalid vocabulary: {exc}") from None
    bad = next((c for c in chars[1:] if not printable(c)), None)
    if bad is not None:
        raise _fail(p, f"has a vocabulary with the control character U+{ord(bad):04X}")
    hidden, size = meta.get("hidden"), checkpoint.size
    layers, dropout = meta.get("layers", 1), meta.get("dropout", 0.0)
    if not _integer(hidden) or hidden <= 0:
        raise _fail(p, f"has an invalid hidden size {hidden!r}")
    if not _integer(layers) or layers <= 0:
        raise _fail(p, f"has an invalid number of layers {layers!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0 <= dropout < 1:
        raise _fail(p, f"has an invalid dropout {dropout!r}")
    dtype = DTYPES.get(str(meta.get("dtype")))
    if dtype is None:
        raise _fail(p, f"has an invalid dtype {meta.get('dtype')!r} (float32 or float64)")
    # Every layer holds at least one weight of hidden² numbers: a model the file cannot hold
    # is refused before its shapes are even listed
    if layers * hidden * hidden * dtype.itemsize > size:
        raise _fail(
            p,
            f"declares {layers} layer(s) of {hidden} hidden units, more parameters than its "
            f"{size} bytes can hold (corrupt metadata)",
        )
    spec = CELLS[cell]
    shapes = expected_shapes(spec, len(vocab), hidden, layers)
    if sum(math.prod(s) for s in shapes.values()) * dtype.itemsize > size:
        raise _fail(p, f"declares more parameters than its {size} bytes can hold")
    if checkpoint.arrays != set(shapes):
        extra, missing = checkpoint.arrays - set(shapes), set(shapes) - checkpoint.arrays
        found = "; ".join(
            x for x in (_listing("unexpected", extra), _listing("missing", missing)) if x
        )
        raise _fail(p, f"holds arrays that are not a {cell} model's: {found}")
    params: dict[str, Any] = {}
    for k, shape in shapes.items():
        params[k] = checkpoint.read(k, dtype, shape)
        if not np.isfinite(params[k]).all():
            raise _fail(p, f"array {k!r} holds NaN or infinity")
    if like is not None:
        params = to_device(params, like)
    model = CharModel(cell, vocab, params, layers=layers, dropout=float(dropout))
    try:  # weights that overflow give no distribution to sample from: refused here, not later
        with warnings.catch_warnings():  # the overflow itself: the error below says it
            warnings.simplefilter("ignore", RuntimeWarning)
            model.sample(1, max_length=1)
    except ValueError as exc:
        raise _fail(p, f"has weights that give no probability distribution ({exc})") from None
    return model
