"""File helpers every module shares: atomic writes and strict UTF-8 line reading.

Writes go to a temp file beside the target that replaces it only once it is complete and on disk
(``os.replace`` is atomic on POSIX and Windows), so a crash, a full disk or Ctrl-C never leaves a
half-written file. Reads decode every line strictly as UTF-8 and name the file and line on error.
"""

from __future__ import annotations

import bz2
import errno
import fcntl
import gzip
import logging
import lzma
import os
import re
import shutil
import stat
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from seq2seq.errors import DataError, OutputError

log = logging.getLogger(__name__)

# Compressed formats, by the suffix of the file name; any other file is plain text, whatever its
# first bytes (a German line may begin "BZh"). Their magic bytes only say what a misnamed
# compressed file is.
_COMPRESSED = {".gz": ("gzip", gzip.open, b"\x1f\x8b"), ".xz": ("xz", lzma.open, b"\xfd7zXZ\x00"),
               ".bz2": ("bzip2", bz2.open, b"BZh")}
FULL_DISK_BYTES = 1 << 20  # less free space than this after a failed write: the disk is full


@contextmanager
def held_lock(path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on `path` (a lock file, made if missing) for the block, waiting
    for another process that holds it first (saying so, with `what` it is doing): jobs of a
    parallel sweep that share data.root then train its tokenizer and encode its corpus once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process %s", what)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield  # closing the file lets the lock go


@contextmanager
def atomic_writer(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file handle whose content replaces ``path`` only when the block exits cleanly.

    Any exception inside the block (or while syncing) removes the temp file and leaves the old
    ``path``, if any, untouched; a write that fails (a full disk) is an OutputError naming
    ``path``. The temp files that killed writers of ``path`` left behind go first.
    """
    path = Path(os.path.realpath(path))  # a symlink: replace its target, keep the link
    if path.exists() and not path.is_file():  # /dev/null, a FIFO: nothing to replace
        with _finished(open(path, "wb"), path, None) as handle:
            yield handle
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _mode_for(path)
    _remove_stale_parts(path)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.",
                                        suffix=".part")
    except OSError as error:
        raise OutputError(write_error(path, error)) from None
    try:
        with _finished(os.fdopen(fd, "wb"), path, mode) as handle:
            yield handle
        os.replace(tmp_name, path)
    finally:
        Path(tmp_name).unlink(missing_ok=True)


@contextmanager
def _finished(handle: BinaryIO, path: Path, mode: int | None) -> Iterator[BinaryIO]:
    """`handle` for the block, then flushed and closed; a temp file (given its `mode`) is also
    synced to disk. An OSError then is an OutputError that names `path`.

    After an error in the block the handle is closed without letting a second error replace
    the first: on a full disk the flush of close() fails too, and its bare "No space left on
    device" would hide which file it was.
    """
    try:
        yield handle
    except BaseException:
        with suppress(OSError):
            handle.close()
        raise
    try:
        handle.flush()
        if mode is not None:
            os.fchmod(handle.fileno(), mode)  # mkstemp makes 0600 whatever the umask
            os.fsync(handle.fileno())
        handle.close()
    except OSError as error:
        with suppress(OSError):
            handle.close()
        raise OutputError(write_error(path, error)) from None


def _remove_stale_parts(path: Path) -> None:
    """Remove the temp files of earlier writes of `path` whose writer process is gone.

    A temp file is named `.NAME.PID.XXXXXXXX.part` after its target and the process that
    writes it. A writer killed mid-write (kill -9, the OOM killer) runs no cleanup, so its temp
    file stays; one whose process still runs (another command writing the same target) is
    never touched, and a reused PID only keeps a stale file longer.
    """
    pattern = re.compile(re.escape(f".{path.name}.") + r"(\d+)\.[^.]+\.part")
    for entry in os.scandir(path.parent):
        found = pattern.fullmatch(entry.name)
        if found and entry.is_file(follow_symlinks=False) and not _running(int(found[1])):
            try:
                os.unlink(entry.path)
            except OSError:  # removed by another writer first, or not ours to remove
                continue
            log.warning("removed %s, left by process %s, which was killed while it wrote %s",
                        entry.path, found[1], path.name)


def _running(pid: int) -> bool:
    """Whether process `pid` exists (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OverflowError:  # a number no process has: not a temp file of ours, keep it
        return True
    return True


def write_error(path: Path, error: BaseException) -> str:
    """Why writing `path` failed, in words (a full disk is named as such), and what an atomic
    write left there: the previous file, untouched, or nothing."""
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        reason = "the disk is full"
    else:
        try:
            if shutil.disk_usage(path.parent).free < FULL_DISK_BYTES:
                reason = "the disk is full"
        except OSError:
            pass
    if path.exists() and not path.is_file():  # a device or a pipe: nothing to keep or leave
        return f"could not write {path}: {reason}"
    left = (f"{path.name} keeps its previous content" if path.exists()
            else f"no {path.name} was written")
    return f"could not write {path}: {reason}; {left}"


def _mode_for(path: Path) -> int:
    """The permissions a written file gets: those of the file it replaces, else what the umask
    gives a new file (as `open(path, "w")` would)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)  # reading the umask means setting it: put it straight back
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    with atomic_writer(path) as handle:
        try:
            handle.write(data)
        except OSError as error:
            raise OutputError(write_error(path, error)) from None


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def decode_line(raw: bytes, number: int, source: str | Path) -> str:
    """One line of bytes as text, strictly UTF-8 (a BOM on line 1 is dropped), without its line
    end (\\n or \\r\\n).

    Invalid bytes are a DataError naming the source and the line, and so is a first line that
    holds a carriage return but no line end: lines are split at \\n only, so a file with CR-only
    (old Mac) line endings would be one line, its sentences run together. A stray \\r inside a
    line of a file split at \\n stays in its line, as other separators do (N lines in, N out).
    """
    try:
        text = raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r\n")
    except UnicodeDecodeError as error:
        raise DataError(f"{source}, line {number}: invalid UTF-8 (byte {error.start}: "
                        f"{error.reason}); convert it to UTF-8") from None
    if number == 1 and "\r" in text and not raw.endswith(b"\n"):  # no \n: each \r ends a line
        raise DataError(f"{source} has CR-only (old Mac) line endings: lines must end in "
                        "\\n or \\r\\n; convert it, e.g. with tr '\\r' '\\n' < OLD > NEW")
    return text


def iter_lines(path: str | Path) -> Iterator[str]:
    """The lines of a plain, gzip (.gz), xz (.xz) or bzip2 (.bz2) text file, told apart by the
    name's suffix, without line ends.

    Raises DataError for a missing or unreadable file, invalid UTF-8 (with the line number),
    CR-only line ends, a truncated or corrupt compressed stream, and a compressed file whose
    name does not say so.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path} is a directory, not a text file")
    if not path.is_file():
        raise DataError(f"{path} not found")
    kind, opener, _ = _COMPRESSED.get(path.suffix.lower(), ("plain", None, b""))
    number = 0
    try:
        with open_binary(path) as raw, (opener(raw) if opener else raw) as stream:
            for number, line in enumerate(stream, start=1):
                if number == 1 and kind == "plain":
                    _check_not_compressed(line, path)
                yield decode_line(line, number, path)
    except (EOFError, zlib.error, lzma.LZMAError, OSError) as error:  # BadGzipFile: an OSError
        if kind == "plain":
            raise
        raise DataError(
            f"{path} is a truncated or corrupt {kind} file (after line {number}: {error}); "
            "fetch or compress it again"
        ) from None


def _check_not_compressed(first_line: bytes, path: Path) -> None:
    """Name the format of a compressed file read as plain text because of its name: one whose
    first line starts with a format's magic bytes and is not UTF-8."""
    for suffix, (kind, _, magic) in _COMPRESSED.items():
        if first_line.startswith(magic):
            try:
                first_line.decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(f"{path} holds {kind} data but its name does not end in "
                                f"{suffix}: compressed files are told by their name; rename it "
                                f"{path.name}{suffix}") from None


def read_lines(path: str | Path) -> list[str]:
    """All lines of a plain or compressed text file; see ``iter_lines``."""
    return list(iter_lines(path))


def open_binary(path: Path) -> BinaryIO:
    try:
        return open(path, "rb")
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}") from None


def check_output_file(path: str | Path, what: str) -> None:
    """Fail before any work when `path` cannot be written as a file: it is a folder, or a file
    stands where one of its folders would be, or that folder is not writable."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} {path} is a directory; give a file name")
    _check_writable_parent(path, what)


def check_output_dir(path: str | Path, what: str) -> None:
    """Fail before any work when `path` cannot be a folder to write into: the folder itself
    when it exists (a read-only run dir), else the nearest folder above it that exists."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path} is a file, not a directory")
    _check_writable(path.absolute(), path, what)


def _check_writable_parent(path: Path, what: str) -> None:
    _check_writable(path.absolute().parent, path, what)


def _check_writable(folder: Path, path: Path, what: str) -> None:
    """`folder`, or the nearest folder above it that exists, takes a new file. Tried, not
    judged from permission bits: root passes every os.access check, and /proc or a read-only
    mount still refuse."""
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{what} {path} cannot be created: {existing} is a file")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise OutputError(f"{what} {path} cannot be written: {existing} does not take new "
                          f"files ({error.strerror or error})") from None

