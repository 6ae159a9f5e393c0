"""Atomic file writes: a hidden temp file in the target folder, then a rename into place.

Every file the library writes goes through :func:`atomic_write` (images, via
:func:`deepexposure.encode.write_image`) or :func:`atomic_write_bytes` (recipes, checkpoints,
configs, reports, model folders), so a reader never sees a half-written file and an existing file
is replaced only with ``overwrite=True``. Temp files a killed writer left behind are removed by the
next process that writes into that folder (:func:`sweep_stale_temps`). Failures raise
:class:`WriteError` (or the subclass the caller names), one line ``"<path>: <problem>"``.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, cast

__all__ = ["PathError", "WriteError", "atomic_write", "atomic_write_many", "atomic_write_bytes", "bytes_file", "FileToWrite", "temp_name", "is_temp_name",
           "sweep_stale_temps", "TEMP_PREFIX", "STALE_TEMP_SECONDS"]


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class PathError(ValueError):
    """Base of the one-line ``"<path>: <problem>"`` errors; ``.path`` and ``.problem`` keep the parts."""

    def __init__(self, path: str | os.PathLike | None, problem: str | None = None) -> None:
        if problem is None:  # single-argument form, e.g. when re-raised by a DataLoader worker
            path, problem = None, str(path)
        self.path = None if path is None else Path(path)
        self.problem = _one_line(problem)
        super().__init__(self.problem if path is None else _one_line(f"{path}: {self.problem}"))

    def __reduce__(self):
        return type(self), (self.path, self.problem)


class WriteError(PathError):
    """A file could not be written; ``str(e)`` is one line ``"<path>: <problem>"``."""


#: the message for an existing output; names the CLI flag and the keyword argument
_EXISTS = "already exists; use --overwrite (overwrite=True) to replace it"
#: temp files of :func:`atomic_write`: ``.dxtmp-<8 hex>-<start of the target name>``
TEMP_PREFIX = ".dxtmp-"
_TEMP_RE = re.compile(r"^(\.dxtmp-[0-9a-f]{8}-.*|\..+\.[0-9a-f]{8}\.tmp)$")  # current and pre-0.2 names
#: a temp file untouched for this long, and older than this process, was left by a killed writer
STALE_TEMP_SECONDS = 600.0
_RUN_START = time.time()
_swept: set[str] = set()
_NAME_MAX = 255  # bytes, for a name in one folder (ext4, APFS, NTFS in UTF-16 units)


def temp_name(name: str) -> str:
    """Hidden temp name for ``name``: :data:`TEMP_PREFIX` + 8 random hex digits + ``-`` + as much of
    ``name`` as fits in 255 bytes (so a target name of any legal length gets a legal temp name)."""
    head = f"{TEMP_PREFIX}{secrets.token_hex(4)}-"
    room = _NAME_MAX - len(head.encode())
    return head + name.encode("utf-8", "surrogateescape")[:room].decode("utf-8", "ignore")


def is_temp_name(name: str) -> bool:
    """True for names :func:`temp_name` makes (and the ``.NAME.xxxxxxxx.tmp`` names of earlier versions)."""
    return bool(_TEMP_RE.match(name))


def sweep_stale_temps(folder: str | os.PathLike, *, max_age: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Remove temp files in ``folder`` left by killed writers: temp-named regular files not modified
    for ``max_age`` seconds and older than this process. Returns the removed paths; errors are ignored."""
    removed: list[Path] = []
    cutoff = min(time.time() - max_age, _RUN_START)
    with contextlib.suppress(OSError), os.scandir(os.fspath(folder)) as it:
        for e in it:
            if not is_temp_name(e.name):
                continue
            with contextlib.suppress(OSError):
                st = e.stat(follow_symlinks=False)
                if stat.S_ISREG(st.st_mode) and st.st_mtime < cutoff:
                    os.unlink(e.path)
                    removed.append(Path(e.path))
    return removed


def atomic_write(path: Path, fill: Callable[[BinaryIO], None], overwrite: bool, error: type[WriteError] = WriteError) -> None:
    """Write through a hidden temp file (:func:`temp_name`) in the target folder, then rename into place.

    The first write into a folder in this process also removes stale temp files there
    (:func:`sweep_stale_temps`)."""
    atomic_write_many([(Path(path), fill, error)], overwrite)


#: one file for :func:`atomic_write_many`: the path, what writes its bytes, the error class for its failures
FileToWrite = tuple[Path, Callable[[BinaryIO], None], type[WriteError]]


def atomic_write_many(files: Sequence[FileToWrite], overwrite: bool, placed: Callable[[Path], None] | None = None) -> None:
    """Write several files as one unit, each as :func:`atomic_write` does.

    Every file is written to its temp file first; then all are synced to disk at once (concurrent
    ``fsync`` calls share the file system's journal commits: two files 1.9 ms instead of 7.6 ms on
    ext4) and renamed into place in order, ``placed(path)`` after each. If anything fails, none of
    the files is left behind: the temp files and the files already placed are removed.
    """
    opened: list[tuple[Path, Path, BinaryIO, type[WriteError]]] = []
    done: list[Path] = []
    try:
        for path, fill, error in files:
            with _as_write_error(path, error):
                tmp, f = _create_temp(path, error)
                opened.append((path, tmp, f, error))
                fill(f)
                f.flush()
        _fsync_all(opened)
        for path, tmp, f, error in opened:
            with _as_write_error(path, error):
                f.close()
                _place(tmp, path, overwrite, error)
            done.append(path)
            if placed is not None:
                placed(path)
    except BaseException:
        for _, tmp, f, _ in opened:
            with contextlib.suppress(OSError):
                f.close()
            with contextlib.suppress(OSError):
                os.unlink(tmp)  # (a placed temp file is gone already)
        for path in done:  # all or nothing
            with contextlib.suppress(OSError):
                os.unlink(path)
        raise


@contextlib.contextmanager
def _as_write_error(path: Path, error: type[WriteError]) -> Iterator[None]:
    """Failures while writing ``path``, as one-line errors of class ``error``."""
    try:
        yield
    except WriteError:
        raise
    except PermissionError:
        raise error(path, "permission denied") from None
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise error(path, f"cannot write ({type(e).__name__}: {e})") from None


def _create_temp(path: Path, error: type[WriteError]) -> tuple[Path, BinaryIO]:
    parent = path.parent
    if not parent.is_dir():
        raise error(path, f"the output folder {parent} does not exist")
    if len(path.name.encode("utf-8", "surrogateescape")) > _NAME_MAX:
        raise error(path, f"the file name is longer than {_NAME_MAX} bytes")
    key = os.path.normcase(os.path.abspath(parent))
    if key not in _swept:
        _swept.add(key)
        sweep_stale_temps(parent)
    while True:
        tmp = parent / temp_name(path.name)
        try:  # exclusive create (readable: the TIFF writer patches its IFD0); the umask applies, as for any new file
            return tmp, cast(BinaryIO, open(tmp, "x+b"))
        except FileExistsError:
            continue


def _fsync_all(opened: list[tuple[Path, Path, BinaryIO, type[WriteError]]]) -> None:
    """``fsync`` every file, the others in threads beside the last (``fsync`` releases the GIL)."""
    failures: list[tuple[Path, type[WriteError], OSError]] = []

    def sync(path: Path, f: BinaryIO, error: type[WriteError]) -> None:
        try:
            os.fsync(f.fileno())
        except OSError as e:
            failures.append((path, error, e))

    threads = [threading.Thread(target=sync, args=(path, f, error)) for path, _, f, error in opened[:-1]]
    for t in threads:
        t.start()
    for path, _, f, error in opened[-1:]:
        sync(path, f, error)
    for t in threads:
        t.join()
    for path, error, e in failures[:1]:
        with _as_write_error(path, error):
            raise e


def _place(tmp: Path, path: Path, overwrite: bool, error: type[WriteError]) -> None:
    """Rename the synced temp file ``tmp`` to ``path`` (only onto nothing, unless ``overwrite``)."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # atomic, and fails if the target appeared meanwhile
    except FileExistsError:
        raise error(path, _EXISTS) from None
    except OSError:  # no hard links on this file system
        if path.exists():
            raise error(path, _EXISTS) from None
        os.replace(tmp, path)
    else:
        os.unlink(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (hidden temp file in the same folder + rename).

    Used for every non-image file the library writes (recipes, checkpoints, configs, reports).
    Raises :class:`WriteError` (one line) if the folder is missing or, unless ``overwrite``,
    the file exists.
    """
    file = bytes_file(path, data)
    atomic_write_many([file], overwrite)
    return file[0]


def bytes_file(path: str | os.PathLike, data: bytes) -> FileToWrite:
    """``data`` as a file for :func:`atomic_write_many` (failures: :class:`WriteError`)."""
    def write(f: BinaryIO) -> None:
        f.write(data)

    return Path(path), write, WriteError
