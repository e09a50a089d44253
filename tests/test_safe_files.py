"""Writes never follow a planted link; reads refuse FIFOs and oversize files; failures leave nothing behind."""

import errno
import os
import stat

import pytest
import torch

from cropmix.data import ArraySplit, load_npz, safe_files, save_npz
from cropmix.data.safe_files import FileError, atomic_writer, read_regular_bytes, write_text_atomic


@pytest.mark.parametrize("link_name", ["out.json", "out.json.tmp"])
def test_write_never_follows_a_planted_link(tmp_path, link_name):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / link_name).symlink_to(victim)
    write_text_atomic(tmp_path / "out.json", "new")
    assert victim.read_text() == "precious"
    assert not (tmp_path / "out.json").is_symlink()
    assert (tmp_path / "out.json").read_text() == "new"


@pytest.mark.parametrize("link_name", ["data.npz", "data.npz.tmp.npz"])
def test_save_npz_never_follows_a_planted_link(tmp_path, link_name):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / link_name).symlink_to(victim)
    split = ArraySplit(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 1]), ["a", "b"])
    save_npz(tmp_path / "data.npz", {"train": split, "test": split})
    assert victim.read_text() == "precious"
    assert not (tmp_path / "data.npz").is_symlink()
    assert load_npz(tmp_path / "data.npz", "test").targets.tolist() == [0, 1]


def test_the_rename_is_made_durable_by_syncing_the_folder(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        info = os.fstat(fd)
        synced.append((stat.S_ISDIR(info.st_mode), (tmp_path / "out.json").exists()))
        real_fsync(fd)

    monkeypatch.setattr(safe_files.os, "fsync", recording_fsync)
    write_text_atomic(tmp_path / "out.json", "new")
    assert synced == [(False, False), (True, True)]  # the file before its rename, then its folder after


def test_written_files_get_the_usual_mode_not_mkstemps_private_one(tmp_path):
    mask = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "index.json", "{}")
    finally:
        os.umask(mask)
    assert (tmp_path / "index.json").stat().st_mode & 0o777 == 0o644


def test_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "final.json"
    target.write_text("old")
    with pytest.raises(ZeroDivisionError), atomic_writer(target) as handle:
        handle.write("half")
        raise ZeroDivisionError
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final.json"]


def test_read_refuses_a_fifo_without_hanging(tmp_path):
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    with pytest.raises(FileError, match="not a regular file"):
        read_regular_bytes(fifo)


def test_read_refuses_a_device_behind_a_link(tmp_path):
    (tmp_path / "image.jpg").symlink_to("/dev/zero")
    with pytest.raises(FileError, match="not a regular file"):
        read_regular_bytes(tmp_path / "image.jpg")


def test_read_limit(tmp_path):
    (tmp_path / "big").write_bytes(b"x" * 100)
    assert read_regular_bytes(tmp_path / "big", max_bytes=100) == b"x" * 100
    with pytest.raises(FileError, match="more than the limit of 99"):
        read_regular_bytes(tmp_path / "big", max_bytes=99)


def test_the_command_reports_a_file_error_in_one_line(tmp_path, monkeypatch, capsys):
    import cropmix.data.shards as shards
    from cropmix.cli import main

    def full_disk(*args, **kwargs):
        raise FileError(errno.ENOSPC, f"no space left on device writing {tmp_path / 'train-000000.tar'}")

    monkeypatch.setattr(shards, "write_shards", full_disk)
    assert main(["shards", str(tmp_path / "src"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"cropmix shards: error: no space left on device writing {tmp_path / 'train-000000.tar'}"


@pytest.mark.parametrize("fails", ["open", "fsync"])
def test_a_folder_that_cannot_be_synced_does_not_fail_the_write(tmp_path, monkeypatch, fails):
    """Opening a folder one may write but not read (EACCES), or a file system that does not fsync folders
    (EINVAL), must not turn a write that succeeded into an error."""
    real_open, real_fsync = os.open, os.fsync

    def folder_open(path, flags, *args):
        if fails == "open" and os.path.isdir(path):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, flags, *args)

    def folder_fsync(fd):
        if fails == "fsync" and stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "Invalid argument")
        real_fsync(fd)

    monkeypatch.setattr(safe_files.os, "open", folder_open)
    monkeypatch.setattr(safe_files.os, "fsync", folder_fsync)
    write_text_atomic(tmp_path / "out.json", "new")
    assert (tmp_path / "out.json").read_text() == "new"
    assert safe_files.sync_folder(tmp_path) is False
