"""Hostile shard sets and reused folders: no command runs, nothing is read unbounded, nothing is silently mixed."""

from __future__ import annotations

import gzip
import io
import json
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from encoded_files import png16

from cropmix.data import Batching
from cropmix.data.loaders import check_data_path
from cropmix.data.shard_reader import ShardLoader
from cropmix.data.shard_urls import allow_pipe_url
from cropmix.data.shards import read_index, write_shards


def jpeg(size=(16, 16)) -> bytes:
    out = io.BytesIO()
    PIL.Image.new("RGB", size, (90, 120, 200)).save(out, format="JPEG")
    return out.getvalue()


def huge_jpeg() -> bytes:
    """A small JPEG whose frame header says 30000x30000."""
    data = bytearray(jpeg())
    i = 2
    while data[i + 1] not in (0xC0, 0xC1, 0xC2):
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    data[i + 5 : i + 9] = struct.pack(">HH", 30000, 30000)
    return bytes(data)


def shard_set(root: Path, samples: list[tuple[str, str, bytes]], declared: dict[str, int] | None = None) -> Path:
    """root/a.tar of (key, field, bytes) members plus "cls" 0 for each key, and root/index.json naming it."""
    root.mkdir(parents=True, exist_ok=True)
    with tarfile.open(root / "a.tar", "w") as tar:
        for key, field, data in samples:
            for name, body in ((f"{key}.{field}", data), (f"{key}.cls", b"0"), (f"{key}.path", f"{key}.src".encode())):
                info = tarfile.TarInfo(name)
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
    if declared:  # patch the size field of a member's header: it declares more than the archive holds
        data = bytearray((root / "a.tar").read_bytes())
        with tarfile.open(root / "a.tar") as tar:
            for member in tar.getmembers():
                if member.name in declared:
                    data[member.offset + 124 : member.offset + 136] = b"%011o\0" % declared[member.name]
                    block = data[member.offset : member.offset + 512]
                    block[148:156] = b" " * 8
                    data[member.offset + 148 : member.offset + 156] = b"%06o\0 " % sum(block)
        (root / "a.tar").write_bytes(bytes(data))
    meta = {"format": "cropmix-webdataset", "classes": ["x"], "splits": {"val": {"shards": ["a.tar"]}}}
    meta["splits"]["val"]["counts"] = [len(samples)]
    (root / "index.json").write_text(json.dumps(meta))
    return root


def read_all(root: Path, skip_bad: bool = False) -> tuple[list, ShardLoader]:
    loader = ShardLoader(read_index(root).split("val"), Batching(8, workers=0, skip_bad=skip_bad))
    return list(loader), loader


def test_an_index_naming_a_command_runs_nothing(tmp_path) -> None:
    root = shard_set(tmp_path / "s", [("k0", "jpg", jpeg())])
    marker = tmp_path / "MARKER"
    meta = json.loads((root / "index.json").read_text())
    meta["splits"]["val"]["shards"] = [f"pipe:touch {marker}; cat {root / 'a.tar'}"]
    (root / "index.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"index\.json.*pipe:touch.*never a command"):
        read_all(root)
    assert not marker.exists()


def test_a_pipe_data_location_needs_the_command_line_flag(tmp_path) -> None:
    root = shard_set(tmp_path / "s", [("k0", "jpg", jpeg())])
    marker = tmp_path / "MARKER"
    url = f"pipe:touch {marker}; cat {root / 'index.json'}"
    for call in (lambda: check_data_path("webdataset", url), lambda: read_index(url)):
        with pytest.raises(ValueError, match="--allow-pipe-urls"):
            call()
    assert not marker.exists()
    with pytest.raises(ValueError, match="no split"):  # entries resolved: absolute, from the command's index
        allow_pipe_url(url.replace(str(root / "index.json"), str(tmp_path / "abs.json")))
        meta = json.loads((root / "index.json").read_text())
        meta["splits"]["val"]["shards"] = [str(root / "a.tar")]
        (tmp_path / "abs.json").write_text(json.dumps(meta))
        read_index(url.replace(str(root / "index.json"), str(tmp_path / "abs.json"))).split("train")
    assert marker.exists(), "an allowed command runs"


def test_cli_refuses_a_pipe_data_without_the_flag(tmp_path, capsys) -> None:
    from cropmix.cli import main

    marker = tmp_path / "MARKER"
    args = ["train", "--dataset", "webdataset", "--data", f"pipe:touch {marker}", "--out", str(tmp_path / "run")]
    assert main([*args, "--epochs", "1", "--device", "cpu"]) == 2
    assert "--allow-pipe-urls" in capsys.readouterr().err and not marker.exists()


def make_folder(root: Path, per_class: int = 2) -> Path:
    for split in ("train", "val"):
        for name in ("a", "b"):
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                (root / split / name / f"{i}.jpg").write_bytes(jpeg())
    return root


def test_shards_into_a_used_folder_need_overwrite_which_clears_stale_shards(tmp_path) -> None:
    src = make_folder(tmp_path / "src")
    out = tmp_path / "out"
    write_shards(src, out, shard_size=1, progress=False)
    assert len(list(out.glob("train-*.tar"))) == 4
    with pytest.raises(ValueError, match="not empty.*--overwrite"):
        write_shards(src, out, shard_size=2, progress=False)
    write_shards(src, out, shard_size=2, progress=False, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["index.json", "train-000000.tar", "train-000001.tar"] + [
        "val-000000.tar",
        "val-000001.tar",
    ]
    with pytest.raises(ValueError, match="local folder only"):
        write_shards(src, "pipe:touch x", progress=False)
    assert write_shards(src, tmp_path / "exp:1", progress=False).is_file()


def test_a_failed_overwrite_keeps_the_old_shards_and_leaves_no_temporary_file(tmp_path, monkeypatch) -> None:
    from cropmix.data import shards

    src = make_folder(tmp_path / "src")
    out = tmp_path / "out"
    write_shards(src, out, shard_size=1, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    calls = []

    def failing(path, limit):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return Path(path).read_bytes()

    monkeypatch.setattr(shards, "read_regular_bytes", failing)
    with pytest.raises(OSError, match="no space left on device writing .*train-000001.tar"):
        write_shards(src, out, shard_size=2, progress=False, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before, "the old index and shards stay whole"
    assert read_index(out).split("train").counts == [1, 1, 1, 1]


def test_overwrite_clears_the_shards_a_killed_run_was_writing(tmp_path) -> None:
    src = make_folder(tmp_path / "src")
    out = tmp_path / "out"
    (out / ".shards.partial").mkdir(parents=True)
    (out / ".shards.partial" / "train-000000.tar").write_bytes(b"half a shard")
    write_shards(src, out, shard_size=2, progress=False, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["index.json", "train-000000.tar", "train-000001.tar"] + [
        "val-000000.tar",
        "val-000001.tar",
    ]
    assert read_index(out).split("train").counts == [2, 2]


def test_a_rerun_after_a_killed_first_run_needs_no_overwrite(tmp_path) -> None:
    src = make_folder(tmp_path / "src")
    out = tmp_path / "out"
    (out / ".shards.partial").mkdir(parents=True)
    (out / ".shards.partial" / "train-000000.tar").write_bytes(b"half a shard")
    (out / ".shards.partial" / ".train-000001.tar.partial").write_bytes(b"a quarter")
    write_shards(src, out, shard_size=2, progress=False)
    assert ".shards.partial" not in {p.name for p in out.iterdir()}
    assert read_index(out).split("train").counts == [2, 2]


@pytest.mark.parametrize("overwrite", [False, True])
def test_files_not_shards_in_the_staging_folder_are_named_and_kept(tmp_path, overwrite) -> None:
    from cropmix.data.safe_files import FileError

    src = make_folder(tmp_path / "src")
    staging = tmp_path / "out" / ".shards.partial"
    staging.mkdir(parents=True)
    (staging / "train-000000.tar").write_bytes(b"half a shard")
    (staging / "notes.txt").write_text("mine")
    with pytest.raises(FileError, match=r"\.shards\.partial, where shards are written, .*\(notes\.txt\): remove them"):
        write_shards(src, tmp_path / "out", shard_size=2, progress=False, overwrite=overwrite)
    assert (staging / "notes.txt").read_text() == "mine"


def test_a_folder_shards_cannot_be_written_in_is_one_line_naming_it(tmp_path, monkeypatch, capsys) -> None:
    from cropmix.cli import main

    src, out = make_folder(tmp_path / "src"), tmp_path / "out"
    out.mkdir()
    mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):
        if self.parent == out:
            raise OSError(30, "Read-only file system")
        mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    assert main(["shards", str(src), str(out), "--no-progress"]) == 2
    assert f"cannot write shards in {out} (Read-only file system)" in capsys.readouterr().err


def test_a_member_declaring_a_huge_size_is_refused_before_reading(tmp_path) -> None:
    root = shard_set(tmp_path / "s", [("k0", "jpg", jpeg()), ("k1", "jpg", jpeg())], declared={"k1.jpg": 2**30})
    with pytest.raises(ValueError, match=r"a\.tar#k1: .*declares 1073741824 bytes.*max_member_bytes"):
        read_all(root)
    batches, loader = read_all(root, skip_bad=True)
    assert sum(len(b) for b in batches) == 1 and any("k1" in name for name in loader.skipped)


def test_a_gzip_stream_named_tar_is_refused(tmp_path) -> None:
    root = shard_set(tmp_path / "s", [("k0", "jpg", jpeg())])
    (root / "a.tar").write_bytes(gzip.compress((root / "a.tar").read_bytes()))
    with pytest.raises(ValueError, match="gzip-compressed"):
        read_all(root)


def test_a_huge_jpeg_header_is_refused_before_decoding(tmp_path) -> None:
    root = shard_set(tmp_path / "s", [("k0", "jpg", jpeg()), ("bomb", "jpg", huge_jpeg())])
    with pytest.raises(ValueError, match=r"bomb.*bomb\.src.*30000x30000 pixels is more than the limit"):
        read_all(root)
    batches, loader = read_all(root, skip_bad=True)
    assert sum(len(b) for b in batches) == 1 and loader.skipped[-1].endswith("#bomb")


def test_16bit_png_members_are_scaled_to_8_bits(tmp_path) -> None:
    from cropmix.data.device_pipeline import DevicePipeline, make_augment

    pixels = np.full((16, 16, 3), 65535, dtype=np.uint16)
    pixels[:8] = 32768
    root = shard_set(tmp_path / "s", [("k0", "jpg", jpeg()), ("deep", "png", png16(pixels))])
    (batch,) = read_all(root)[0]
    with PIL.Image.open(io.BytesIO(batch.images[1].numpy().tobytes())) as image:
        array = np.asarray(image.convert("RGB"))
    assert array[0, 0].tolist() == [128, 128, 128] and array[-1, -1].tolist() == [255, 255, 255]
    images, _ = DevicePipeline(make_augment("center", 16), flip=False)(batch)
    assert images.shape == (2, 3, 16, 16)


def test_an_index_whose_shards_are_all_unreadable_is_a_clear_error(tmp_path) -> None:
    root = shard_set(tmp_path / "s", [("k0", "jpg", jpeg()), ("k1", "jpg", jpeg())])
    (root / "a.tar").write_bytes(b"not a tar archive" * 40)
    for train in (False, True):
        loader = ShardLoader(
            read_index(root).split("val"), Batching(batch_size=1, train=train, workers=0, skip_bad=True)
        )
        with pytest.raises(ValueError, match="0 readable samples.*bad or missing"):
            list(loader)


def test_the_package_imports_without_webdataset_and_braceexpand() -> None:
    code = (
        "import sys; sys.modules['webdataset'] = None; sys.modules['braceexpand'] = None\n"
        "import cropmix.data.shards, cropmix.data.shard_reader\n"
        "from cropmix.cli import main; raise SystemExit(main(['--help']))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="flock")
def test_a_second_writer_to_the_same_folder_is_refused_and_the_first_ones_shards_kept(tmp_path) -> None:
    """Two `cropmix shards` into one folder: the second took the first one's staging folder for a killed
    run's, cleared it and wrote its own beside it. It is refused while the first holds the folder."""
    from cropmix.data.safe_files import FileError

    src, out = make_folder(tmp_path / "src"), tmp_path / "out"
    (out / ".shards.partial").mkdir(parents=True)
    (out / ".shards.partial" / "train-000000.tar").write_bytes(b"the first writer's shard")
    holder = (
        "import fcntl, os, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('held', flush=True)\n"
        "time.sleep(120)\n"
    )
    first = subprocess.Popen([sys.executable, "-c", holder, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "held"
        with pytest.raises(FileError, match="another process is writing shards to .*out: let it finish"):
            write_shards(src, out, shard_size=2, progress=False, overwrite=True)
        assert (out / ".shards.partial" / "train-000000.tar").read_bytes() == b"the first writer's shard"
    finally:
        first.kill()
        first.wait()
    write_shards(src, out, shard_size=2, progress=False, overwrite=True)  # once it has gone (killed: the rerun case)
    assert read_index(out).split("train").counts == [2, 2]
