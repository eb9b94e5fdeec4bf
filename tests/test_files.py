"""Atomic writes: all or nothing, with the permissions an ordinary write would give."""

from __future__ import annotations

import errno
import io
import logging
import os
import stat
import subprocess
import sys
import threading

import pytest

from seq2seq.errors import DataError, OutputError
from seq2seq.files import (
    atomic_write_text,
    atomic_writer,
    check_output_dir,
    check_output_file,
    read_lines,
)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_file_gets_the_umask_permissions(tmp_path, umask_022):
    atomic_write_text(tmp_path / "new.txt", "x\n")
    assert mode(tmp_path / "new.txt") == 0o644


def test_a_replaced_file_keeps_its_permissions(tmp_path, umask_022):
    path = tmp_path / "kept.txt"
    path.write_text("old\n")
    path.chmod(0o640)
    atomic_write_text(path, "new\n")
    assert path.read_text() == "new\n" and mode(path) == 0o640


def test_an_error_leaves_the_old_file_and_no_temp_file(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_writer(path) as handle:
        handle.write(b"half")
        raise RuntimeError("disk full")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_output_paths_are_checked_before_any_work(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    check_output_file(tmp_path / "new" / "deeper" / "out.txt", "--output")  # folders are made
    check_output_dir(tmp_path / "new_dir", "--plot-attention")
    with pytest.raises(OutputError, match="is a directory"):
        check_output_file(tmp_path, "--output")
    with pytest.raises(OutputError, match="a_file is a file"):
        check_output_file(a_file / "out.txt", "--output")
    with pytest.raises(OutputError, match="is a file, not a directory"):
        check_output_dir(a_file, "--plot-attention")
    with pytest.raises(OutputError, match="a_file is a file"):
        check_output_dir(a_file / "run", "data.root")



def test_a_folder_that_takes_no_new_files_is_refused_even_for_root(tmp_path):
    # /proc refuses new files whatever the permission bits say (root passes os.access)
    with pytest.raises(OutputError, match="/proc/self does not take new files"):
        check_output_dir("/proc/self", "the run dir (hydra.run.dir)")  # an existing folder
    with pytest.raises(OutputError, match="/proc does not take new files"):
        check_output_dir("/proc/nope/run", "data.root")  # the nearest existing one above


def test_a_symlink_is_followed_and_a_pipe_is_written_into(tmp_path):
    target = tmp_path / "target.txt"
    target.write_text("old\n")
    (tmp_path / "link.txt").symlink_to(target)
    atomic_write_text(tmp_path / "link.txt", "new\n")
    assert (tmp_path / "link.txt").is_symlink() and target.read_text() == "new\n"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    atomic_write_text(fifo, "through the pipe\n")
    reader.join(timeout=30)
    assert received == [b"through the pipe\n"] and stat.S_ISFIFO(fifo.stat().st_mode)


def test_a_directory_is_not_read_as_a_text_file(tmp_path):
    with pytest.raises(DataError, match="is a directory, not a text file"):
        read_lines(tmp_path)



class FullDisk(io.RawIOBase):
    """A file on a full disk: every write fails, so the buffer's flush when it closes fails too."""

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def fsync_fails(monkeypatch) -> None:
    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)


def writes_fail(monkeypatch) -> None:
    def full_disk_file(fd, mode):
        os.close(fd)
        return io.BufferedWriter(FullDisk())

    monkeypatch.setattr(os, "fdopen", full_disk_file)


@pytest.mark.parametrize("fill", [fsync_fails, writes_fail])
def test_a_full_disk_is_one_line_that_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch,
                                                                           fill):
    """The flush of close() once replaced this error by a bare "No space left on device"."""
    path = tmp_path / "out.txt"
    path.write_text("old\n")
    fill(monkeypatch)
    with pytest.raises(OutputError) as error:
        atomic_write_text(path, "new\n")
    assert str(error.value) == (f"could not write {path}: the disk is full; out.txt keeps its "
                                "previous content")
    assert path.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == [
        "out.txt"]


def test_a_full_device_is_named():
    with pytest.raises(OutputError) as error:
        atomic_write_text("/dev/full", "x\n")
    assert str(error.value) == "could not write /dev/full: the disk is full"


def hold_a_write(path) -> subprocess.Popen:
    """Another process in the middle of an atomic write of `path`: it has written a little and
    waits for its stdin to close."""
    code = ("import sys\nfrom seq2seq.files import atomic_writer\n"
            f"with atomic_writer({str(path)!r}) as handle:\n"
            "    handle.write(b'half')\n    print('writing', flush=True)\n    sys.stdin.read()\n")
    writer = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE)
    assert writer.stdout.readline() == b"writing\n"
    return writer


def test_the_next_write_removes_what_a_killed_writer_left_but_not_a_live_writers(tmp_path,
                                                                                  caplog):
    path = tmp_path / "out.txt"
    live = hold_a_write(path)
    killed = hold_a_write(path)
    killed.kill()  # kill -9: no cleanup runs
    killed.wait()
    other_target = tmp_path / f".other.txt.{killed.pid}.abcdefgh.part"
    other_target.write_bytes(b"not out.txt's")
    try:
        with caplog.at_level(logging.WARNING, logger="seq2seq"):
            atomic_write_text(path, "new\n")
        assert path.read_text() == "new\n" and other_target.exists()
        (part,) = tmp_path.glob(".out.txt.*.part")  # the killed writer's is gone
        assert part.name.startswith(f".out.txt.{live.pid}.")  # still being written: kept
        assert f"left by process {killed.pid}, which was killed while it wrote out.txt" in (
            caplog.text)
    finally:
        live.stdin.close()
        assert live.wait(timeout=60) == 0
    assert path.read_text() == "half" and sorted(p.name for p in tmp_path.iterdir()) == [
        other_target.name, "out.txt"]
