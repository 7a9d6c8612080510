"""Atomic file writes (a crash never leaves a half-written file behind), the one archive layout of mlpkit's npz files,
and checked settings read from files."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import glob
import hashlib
import io
import json
import math
import os
import secrets
import tempfile
import tokenize
import types
import typing
import zipfile
from pathlib import Path

import numpy as np

from mlpkit.errors import MlpkitError

META = "meta.json"  # an archive's metadata: a JSON object with its format_version, stored as bytes
CHECKSUM = "sha256"  # hex SHA-256 of an archive's metadata and arrays, in the formats that keep one
_WRITING: set[Path] = set()  # temporaries of this process's unfinished atomic writes


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.part"
    _WRITING.add(tmp)  # known before it exists: a signal at any point leaves nothing that discard_partial_writes misses
    try:
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        yield tmp
        with open(tmp, "rb+") as stream:  # the data reach the disk before the name does
            os.fsync(stream.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # give the file ordinary permissions
        os.replace(tmp, path)
        _remove_orphans(path)
    except OSError as error:
        if error.filename is not None:
            raise
        # a failed write (a full disk) names no file: name the one being written
        raise OSError(error.errno, error.strerror or str(error), str(path)) from error
    finally:
        tmp.unlink(missing_ok=True)
        _WRITING.discard(tmp)


def discard_partial_writes() -> None:
    """Delete the temporaries of writes this process has not finished: for an exit that skips ``finally`` blocks."""
    for tmp in list(_WRITING):
        tmp.unlink(missing_ok=True)


def _remove_orphans(path: Path) -> None:
    """Delete temporary files of ``path`` left by writers that were killed (their process is gone)."""
    for orphan in path.parent.glob(f".{glob.escape(path.name)}.*.part"):
        pid = orphan.name[len(path.name) + 2:].split(".")[0]
        if pid.isdigit() and not _alive(int(pid)):
            orphan.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike, payload: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)


def csv_text(rows, columns) -> str:
    """``rows`` (dicts) as CSV text with a header of ``columns``, in that order, newline-terminated lines."""
    stream = io.StringIO()
    writer = csv.DictWriter(stream, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return stream.getvalue()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def archive_bytes(metadata: dict, arrays: dict, version: int, checksum: bool = False) -> bytes:
    """An npz archive (no pickle) of ``arrays`` and ``metadata``: the layout of every mlpkit npz file.

    ``meta.json`` holds ``metadata`` as JSON with ``format_version`` set to ``version``; with ``checksum``,
    ``sha256`` covers the metadata and every array (:func:`archive_checksum`). Write it with
    :func:`write_bytes_atomic`; :func:`read_archive` reads it back.
    """
    stored = {name: np.asarray(array) for name, array in arrays.items()}
    meta_bytes = json.dumps({**metadata, "format_version": version}).encode()  # keys keep their order (CSV columns)
    stored[META] = np.frombuffer(meta_bytes, np.uint8)
    if checksum:
        stored[CHECKSUM] = np.frombuffer(archive_checksum(meta_bytes, stored).encode(), np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **stored)
    return buffer.getvalue()


def archive_checksum(meta_bytes: bytes, arrays: dict) -> str:
    """SHA-256 over ``meta_bytes``, then each of ``arrays`` (all but the checksum) by name: name, dtype, shape, bytes."""
    digest = hashlib.sha256(meta_bytes)
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def read_archive(path, what: str, version: int, checksum: bool = False,
                 error: type[MlpkitError] = MlpkitError) -> tuple[dict, dict[str, np.ndarray]]:
    """The metadata (without ``format_version``) and arrays of the :func:`archive_bytes` file ``path``, a ``what``
    of format ``version`` or older.

    A missing, unreadable, truncated or foreign file, unreadable metadata, a format version this mlpkit does not
    read, no checksum where ``checksum`` asks for one, and a checksum that does not fit all raise ``error`` (an
    :class:`~mlpkit.errors.MlpkitError`) naming ``path`` and the problem.
    """
    def fail(problem: str) -> MlpkitError:
        return error(f"{path}: {problem}")

    arrays = _npz_arrays(path, what, fail)
    stored_checksum = arrays.pop(CHECKSUM, None)
    if checksum and stored_checksum is None:
        raise fail(f"not an mlpkit {what} (no checksum)")
    meta_bytes, metadata, found = _header(arrays, what, fail)
    if type(found) is not int or found < 1:
        raise fail(f"corrupt {what} (format version {found!r:.40})")
    if found > version:
        raise fail(f"{what} format {found} is newer than this mlpkit reads ({version}); upgrade mlpkit")
    if stored_checksum is not None and stored_checksum.tobytes() != archive_checksum(meta_bytes, arrays).encode():
        raise fail(f"corrupt {what} (SHA-256 mismatch); restore a copy or make it again")
    arrays.pop(META, None)
    return metadata, arrays


def _npz_arrays(path, what: str, fail) -> dict[str, np.ndarray]:
    try:
        with open(path, "rb") as stream, np.lib.npyio.NpzFile(stream) as archive:  # an archive only, never a pickle
            return {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise fail(f"no such {what}") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError, SyntaxError, tokenize.TokenError) as error:  # numpy parses .npy headers as Python literals
        raise fail(f"not a readable mlpkit {what} ({error})") from None


def _header(arrays: dict, what: str, fail) -> tuple[bytes, dict, object]:
    """The metadata's bytes, the metadata without its version, and the stored version.

    Files from before this layout read as what they are: MD states kept their metadata under ``meta`` with no
    version (theirs is 1), dataset caches had no metadata and kept their version as a ``format_version`` array.
    """
    if META in arrays:
        meta_bytes, version = arrays[META].tobytes(), None
    elif "meta" in arrays:
        meta_bytes, version = arrays.pop("meta").tobytes(), 1
    elif "format_version" in arrays:
        meta_bytes, version = b"{}", arrays["format_version"].item() if arrays["format_version"].ndim == 0 else None
    else:
        raise fail(f"not an mlpkit {what} (no metadata)")
    try:
        metadata = json.loads(meta_bytes)
    except (ValueError, RecursionError):
        metadata = None
    if not isinstance(metadata, dict):
        raise fail(f"corrupt {what} (metadata unreadable)")
    return meta_bytes, metadata, metadata.pop("format_version", version)


def dataclass_from_dict(cls, values, where: str = "settings"):
    """A frozen dataclass ``cls`` from parsed JSON ``values``, every field checked against its annotation.

    Nested dataclasses are dicts, tuples may be lists, an int may stand for a float; missing fields take
    their defaults. Unknown keys, wrong types, booleans for numbers and NaN or infinite floats raise
    :class:`~mlpkit.errors.MlpkitError` naming ``where`` and the field.
    """
    if not isinstance(values, dict):
        raise MlpkitError(f"{where}: expected a mapping of settings, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    names = {field.name for field in dataclasses.fields(cls) if field.init}
    unknown = sorted(map(str, set(values) - names))
    if unknown:
        raise MlpkitError(f"{where}: unknown settings {unknown}")
    converted = {name: _typed(hints[name], value, f"{where}.{name}") for name, value in values.items()}
    try:
        return cls(**converted)
    except (MlpkitError, ValueError, TypeError) as error:
        raise MlpkitError(f"{where}: {error}") from None


def _typed(hint, value, where: str):
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [arg for arg in args if arg is not type(None)]
        if len(options) == 1:
            return _typed(options[0], value, where)
    elif dataclasses.is_dataclass(hint):
        return dataclass_from_dict(hint, value, where)
    elif origin is tuple and isinstance(value, (list, tuple)):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_typed(args[0], item, f"{where}[{k}]") for k, item in enumerate(value))
        if len(args) == len(value):
            return tuple(_typed(arg, item, f"{where}[{k}]") for k, (arg, item) in enumerate(zip(args, value)))
    elif hint is bool and isinstance(value, bool) or hint is str and isinstance(value, str):
        return value
    elif hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise MlpkitError(f"{where}: {value} is not a finite number")
        return float(value)
    raise MlpkitError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r:.60}")


def writable_folder(path: str | os.PathLike, option: str = "--out") -> Path:
    """``path`` as a folder that exists (made if needed) and takes files, checked before any work starts.

    A path that is a file, a device, read-only or on a full disk raises :class:`~mlpkit.errors.MlpkitError`
    naming it and the reason, instead of a traceback after the work is done.
    """
    path = Path(path)
    try:
        if path.exists() and not path.is_dir():
            raise MlpkitError(f"{option} {path}: exists and is not a folder")
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path) as probe:
            probe.write(b"\0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as error:
        raise MlpkitError(f"{option} {path}: cannot write there ({error.strerror or error})") from None
    return path


class FolderInUse(MlpkitError):
    """Another process holds the folder's lock."""


@contextlib.contextmanager
def _locked_file(lock: Path, wait: bool):
    """``lock`` opened (its folder made if needed) and locked; taken again if the file was unlinked while this
    process waited for it (:func:`remove_unused_folder` tidying a refused command's folder), so that two processes
    never hold locks on two different files of one name."""
    while True:
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a+") as stream:
            try:
                fcntl.flock(stream, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                stream.seek(0)
                holder = stream.read().strip() or "unknown"
                raise FolderInUse(f"{lock.parent}: in use by another mlpkit run (pid {holder}); wait for it to finish "
                                  "or choose another output folder") from None
            try:
                still_there = os.path.samestat(os.stat(lock), os.fstat(stream.fileno()))
            except FileNotFoundError:
                still_there = False
            if still_there:
                yield stream
                return


@contextlib.contextmanager
def locked_folder(path: str | os.PathLike, wait: bool = False):
    """Hold an exclusive lock on folder ``path`` (``fcntl.flock`` on ``path/.lock``, which records the holder's pid).

    Without ``wait`` a folder another process holds raises :class:`FolderInUse` naming that process; with ``wait`` it blocks until the other process lets go. The lock ends with the process, however
    it ends, so a killed run never leaves a folder locked.
    """
    path = Path(path)
    with _locked_file(path / ".lock", wait) as stream:
        stream.seek(0)
        stream.truncate()
        stream.write(str(os.getpid()))
        stream.flush()
        try:
            yield path
        finally:
            fcntl.flock(stream, fcntl.LOCK_UN)


def remove_unused_folder(path: str | os.PathLike) -> None:
    """Remove folder ``path`` if it holds nothing but a lock no process holds: what a refused or interrupted
    command made and left empty (a folder with anything else in it is left as it is)."""
    path = Path(path)
    try:
        names = os.listdir(path)
        if names == [".lock"]:
            with open(path / ".lock", "a+") as stream:
                fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises while another process holds it
                (path / ".lock").unlink()
        elif names:
            return
        path.rmdir()
    except OSError:
        pass  # in use, or no longer there: nothing to tidy


def regular_file(path: str | os.PathLike, option: str) -> Path:
    """``path`` if it is an existing regular file; a missing path, a folder or a FIFO (which would hang a
    reader) raises :class:`~mlpkit.errors.MlpkitError` naming ``option`` and the path."""
    path = Path(path)
    if not path.exists():
        raise MlpkitError(f"{option} {path}: no such file")
    if not path.is_file():
        raise MlpkitError(f"{option} {path}: not a regular file")
    return path


def folder_in_use(path: str | os.PathLike) -> bool:
    """Whether some process holds :func:`locked_folder` on ``path`` right now."""
    try:
        with locked_folder(path):
            return False
    except FolderInUse:
        return True
