"""Atomic file writes (a crash never leaves a half-written file behind) and checked settings read from files."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import glob
import hashlib
import math
import os
import tempfile
import types
import typing
from pathlib import Path

from mlpkit.errors import MlpkitError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".part")
    os.close(handle)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as stream:  # the data reach the disk before the name does
            os.fsync(stream.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file ordinary permissions
        os.replace(tmp, path)
        _remove_orphans(path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


@contextlib.contextmanager
def locked_folder(path: str | os.PathLike, wait: bool = False):
    """Hold an exclusive lock on folder ``path`` (``fcntl.flock`` on ``path/.lock``, which records the holder's pid).

    Without ``wait`` a folder another process holds raises :class:`~mlpkit.errors.MlpkitError` naming that
    process; with ``wait`` it blocks until the other process lets go. The lock ends with the process, however
    it ends, so a killed run never leaves a folder locked.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with open(path / ".lock", "a+") as stream:
        try:
            fcntl.flock(stream, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            stream.seek(0)
            holder = stream.read().strip() or "unknown"
            raise MlpkitError(f"{path}: in use by another mlpkit run (pid {holder}); wait for it to finish or choose "
                              "another output folder") from None
        stream.seek(0)
        stream.truncate()
        stream.write(str(os.getpid()))
        stream.flush()
        try:
            yield path
        finally:
            fcntl.flock(stream, fcntl.LOCK_UN)


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
    except MlpkitError:
        return True
