"""WebDataset shards (cropmix.data.shards), the exactly-once rank/worker split (shard_reader), decode and
augmentation on the device (device_pipeline), and `cropmix shards`. Tiny images generated here."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from encoded_files import encoded, make_jpeg_folder, write_tar
from torch.utils.data import DataLoader

from cropmix.data import AugmentSpec, Batching
from cropmix.data.device_pipeline import DevicePipeline, batch_decodable, make_augment
from cropmix.data.shard_reader import ShardLoader, ShardStream, epoch_plan
from cropmix.data.shards import read_index, write_shards

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shards")
    make_jpeg_folder(root / "src", train_per_class=4)  # 11 train images: shards of 3 give counts 3, 3, 3, 2
    write_shards(root / "src", root / "out", shard_size=3, progress=False)
    return root / "out"


def all_keys(split) -> list[str]:
    keys = []
    for url in split.urls:
        with tarfile.open(url) as tar:
            names = [m.name.split(".", 1)[0] for m in tar.getmembers()]
        keys += [f"{url}#{key}" for key in dict.fromkeys(names)]
    return keys


def test_shards_keep_the_bytes_and_the_index_counts(shards) -> None:
    index = read_index(shards)
    assert index.classes == ["cat", "dog"]
    train = index.split("train")
    assert train.counts == [3, 3, 3, 2] and len(train.urls) == 4
    assert index.split("test").num_samples == 7  # "test" names the val split
    meta = json.loads((shards / "index.json").read_text())
    assert meta["splits"]["train"]["class_counts"] == {"cat": 4, "dog": 7}
    src = shards.parent / "src" / "train"
    seen = {}
    for url in train.urls:
        with tarfile.open(url) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        for name, data in members.items():
            if name.endswith(".path"):
                key = name[: -len(".path")]
                image = members.get(key + ".jpg", members.get(key + ".png"))
                seen[data.decode()] = (image, int(members[key + ".cls"]))
    files = sorted(p.relative_to(src.parent).as_posix() for p in src.rglob("*.*"))
    assert sorted(seen) == files, ".path names the file from the source root: train/<class>/<name>"
    for rel, (data, label) in seen.items():
        assert data == (src.parent / rel).read_bytes(), f"{rel} was re-encoded"
        assert label == ["cat", "dog"].index(rel.split("/")[1])


def test_writing_names_missing_and_empty_folders(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        write_shards(tmp_path / "nowhere", tmp_path / "out", progress=False)
    (tmp_path / "src" / "train" / "cat").mkdir(parents=True)
    (tmp_path / "src" / "val" / "cat").mkdir(parents=True)
    with pytest.raises(ValueError, match="cat.*empty"):
        write_shards(tmp_path / "src", tmp_path / "out", progress=False)
    (tmp_path / "only" / "train" / "cat").mkdir(parents=True)
    (tmp_path / "only" / "train" / "cat" / "a.jpg").write_bytes(encoded())
    with pytest.raises(FileNotFoundError, match="no val split"):
        write_shards(tmp_path / "only", tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="shard_size"):
        write_shards(tmp_path / "only", tmp_path / "out", shard_size=0)


def test_an_index_may_name_brace_patterns_elsewhere(shards, tmp_path) -> None:
    meta = {
        "format": "cropmix-webdataset",
        "classes": ["cat", "dog"],
        "splits": {"train": {"shards": [str(shards / "train-{000000..000003}.tar")], "shard_size": 3}},
    }
    meta["splits"]["train"]["num_samples"] = 11
    (tmp_path / "index.json").write_text(json.dumps(meta))
    split = read_index(tmp_path / "index.json").split("train")
    assert split.counts == [3, 3, 3, 2]
    assert split.urls == read_index(shards).split("train").urls
    meta["splits"]["train"] = {"shards": ["train-{000000..000003}.tar"], "counts": [3, 3]}
    (tmp_path / "index.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="counts must list the samples of each of the 4 shards"):
        read_index(tmp_path)
    meta["splits"]["train"]["counts"] = [3, 3, 3, 2]
    (tmp_path / "index.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="has no split 'val'"):
        read_index(tmp_path).split("val")
    with pytest.raises(FileNotFoundError, match="missing"):
        read_index(tmp_path / "missing")
    # A command named by an index is never run (cropmix.data.shard_urls; tests/test_shard_security.py).
    meta["splits"]["train"] = {"shards": [f"pipe:cat {shards}/train-{{000000..000003}}.tar"], "counts": [3, 3, 3, 2]}
    (tmp_path / "index.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="never a command"):
        read_index(tmp_path)


@pytest.mark.parametrize("world,workers", [(1, 1), (2, 2), (3, 2), (4, 3)])
def test_epoch_plans_partition_every_epoch(world, workers) -> None:
    counts = [5, 3, 0, 7, 1, 4]  # 20 samples in 6 shards, one of them empty
    for epoch in range(3):
        taken = []
        for rank in range(world):
            for worker in range(workers):
                plan = epoch_plan(
                    counts, epoch=epoch, seed=1, shuffle=True, rank=rank, world=world, worker=worker, workers=workers
                )
                taken += [(shard, m) for shard, skip, take in plan for m in range(skip, skip + take)]
        assert sorted(taken) == [(s, m) for s, c in enumerate(counts) for m in range(c)]


def read_rank(split, rank: int, world: int, epoch: int, workers: int = 2) -> list[str]:
    stream = ShardStream(split, Batching(batch_size=2, rank=rank, world=world, train=True, seed=3), num_classes=2)
    stream.set_epoch(epoch)
    keys = []
    for batch in DataLoader(stream, batch_size=None, num_workers=workers):
        keys += batch.keys
    return keys


def test_two_ranks_of_two_workers_read_every_image_exactly_once(shards) -> None:
    split = read_index(shards).split("train")
    expected = sorted(all_keys(split))
    orders = []
    for epoch in (0, 1):
        ranks = [read_rank(split, rank, 2, epoch) for rank in (0, 1)]
        assert sorted(ranks[0] + ranks[1]) == expected, "each image once per epoch over 2 ranks x 2 workers"
        assert sorted(len(r) for r in ranks) == [5, 6]
        orders.append(ranks[0] + ranks[1])
    assert orders[0] != orders[1], "the epoch reshuffles"
    assert read_rank(split, 0, 2, 1) == read_rank(split, 0, 2, 1), "reproducible"


def test_loader_batches_evenly_for_training_and_completely_for_evaluation(shards) -> None:
    split = read_index(shards).split("train")
    lengths = []
    for rank in (0, 1):
        loader = ShardLoader(split, Batching(batch_size=2, train=True, rank=rank, world=2, workers=2), num_classes=2)
        loader.set_epoch(0)
        sizes = [len(b) for b in loader]
        assert sizes == [2, 2] and len(loader) == 2, "11 images // 2 ranks // batch 2: every rank 2 full batches"
        lengths.append(len(sizes))
    keys = []
    for rank in (0, 1):
        loader = ShardLoader(split, Batching(batch_size=4, train=False, rank=rank, world=2, workers=2), num_classes=2)
        batches = list(loader)
        assert [len(b) for b in batches[:-1]] == [4] * (len(batches) - 1) and len(batches) == len(loader)
        keys += [k for b in batches for k in b.keys]
    assert sorted(keys) == sorted(all_keys(split))


def test_header_check_sends_only_colour_jpegs_to_the_batched_decoder() -> None:
    assert batch_decodable(encoded())
    assert batch_decodable(encoded(progressive=True))
    assert not batch_decodable(encoded("L"))
    assert not batch_decodable(encoded("CMYK"))
    assert not batch_decodable(encoded(fmt="PNG"))
    assert not batch_decodable(b"\xff\xd8 not really a jpeg")


def decode_reference(data: torch.Tensor) -> torch.Tensor:
    with PIL.Image.open(io.BytesIO(data.numpy().tobytes())) as image:
        return torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1)


@pytest.mark.parametrize("device", DEVICES)
def test_device_decode_matches_pil_for_jpeg_png_grey_and_cmyk(shards, device) -> None:
    batch = next(iter(ShardLoader(read_index(shards).split("val"), Batching(batch_size=7, train=False, workers=0))))
    assert sum(batch.jpeg) == 4, "4 colour JPEGs batched; PNG, grey, CMYK per image"
    images, kept = DevicePipeline(make_augment("center", 16), device=device).decode(batch.images, batch.keys)
    assert kept == list(range(7))
    for image, data in zip(images, batch.images, strict=True):
        assert image.device.type == device and image.dtype == torch.uint8 and image.shape[0] == 3
        reference = decode_reference(data)
        assert image.shape == reference.shape
        # JPEG decoders may round differently (IDCT, chroma upsampling, nvJPEG on a GPU).
        assert (image.cpu().float() - reference.float()).abs().mean() < 3


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("aug", ["cropmix", "rrc"])
def test_device_pipeline_yields_normalised_float_batches(shards, device, aug) -> None:
    torch.manual_seed(0)
    loader = ShardLoader(
        read_index(shards).split("train"), Batching(batch_size=4, train=True, workers=2), num_classes=2
    )
    pipeline = DevicePipeline(make_augment(aug, 24, preset="imagenet"), device=device, mean=MEAN, std=STD)
    count = 0
    for batch in loader:
        images, labels = pipeline(batch)
        assert images.shape == (4, 3, 24, 24) and images.dtype == torch.float32
        assert images.device.type == device and labels.device.type == device and labels.dtype == torch.int64
        assert torch.equal(labels.cpu(), batch.labels)
        low, high = (-torch.tensor(MEAN) / torch.tensor(STD)), (1 - torch.tensor(MEAN)) / torch.tensor(STD)
        per_channel = images.transpose(0, 1).reshape(3, -1).cpu()
        assert (per_channel.min(1).values >= low - 1e-5).all() and (per_channel.max(1).values <= high + 1e-5).all()
        count += len(images)
    assert count == 8


def test_normalisation_is_the_given_statistics(shards) -> None:
    batch = next(iter(ShardLoader(read_index(shards).split("val"), Batching(batch_size=7, train=False, workers=0))))
    plain = DevicePipeline(make_augment("center", 16), flip=False)(batch)[0]
    normed = DevicePipeline(make_augment("center", 16), flip=False, mean=MEAN, std=STD)(batch)[0]
    assert 0 <= plain.min() and plain.max() <= 1
    expected = (plain - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
    torch.testing.assert_close(normed, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="mean and std"):
        DevicePipeline(make_augment("center", 16), mean=MEAN)


def bad_shards(tmp_path: Path) -> Path:
    good = [{"__key__": f"ok{i}", "jpg": encoded(seed=i), "cls": b"1"} for i in range(3)]
    cut = encoded(seed=9)[:-80]  # its header passes the reader's check; the decoders fail on it
    write_tar(tmp_path / "a.tar", [good[0], {"__key__": "broken", "jpg": cut, "cls": b"0"}, good[1]])
    write_tar(tmp_path / "b.tar", [good[2], {"__key__": "nolabel", "jpg": encoded(), "cls": b"cat"}])
    meta = {"format": "cropmix-webdataset", "classes": ["x", "y"], "splits": {"val": {"shards": ["a.tar", "b.tar"]}}}
    meta["splits"]["val"]["counts"] = [3, 2]
    (tmp_path / "index.json").write_text(json.dumps(meta))
    return tmp_path


def test_bad_members_are_named_or_counted_and_skipped(tmp_path) -> None:
    split = read_index(bad_shards(tmp_path)).split("val")
    with pytest.raises(ValueError, match=r"b\.tar#nolabel.*not an integer"):
        list(ShardLoader(split, Batching(batch_size=8, train=False, workers=0), num_classes=2))
    loader = ShardLoader(split, Batching(batch_size=8, train=False, workers=1, skip_bad=True), num_classes=2)
    batches = list(loader)
    assert [s.rsplit("/", 1)[-1] for s in loader.skipped] == ["b.tar#nolabel"]
    assert len(batches) == 1 and len(batches[0]) == 4
    with pytest.raises(ValueError, match=r"a\.tar#broken"):
        DevicePipeline(make_augment("center", 16))(batches[0])
    pipeline = DevicePipeline(make_augment("center", 16), skip_bad=True)
    images, labels = pipeline(batches[0])
    assert images.shape == (3, 3, 16, 16) and labels.tolist() == [1, 1, 1]
    assert [s.rsplit("/", 1)[-1] for s in pipeline.skipped] == ["a.tar#broken"]


def test_a_training_rank_short_of_images_after_skipping_still_gives_its_batches(tmp_path) -> None:
    split = read_index(bad_shards(tmp_path)).split("val")  # 5 members, one with a bad label
    loader = ShardLoader(split, Batching(batch_size=5, train=True, workers=0, skip_bad=True), num_classes=2)
    batches = list(loader)
    assert len(loader) == 1 and [len(b) for b in batches] == [5], "topped up from the rank's own share"
    assert len(set(batches[0].keys)) == 4
    assert [s.rsplit("/", 1)[-1] for s in loader.skipped] == ["b.tar#nolabel"]


def test_a_shard_shorter_than_its_index_is_an_error(tmp_path) -> None:
    root = bad_shards(tmp_path)
    meta = json.loads((root / "index.json").read_text())
    meta["splits"]["val"]["counts"] = [3, 4]
    (root / "index.json").write_text(json.dumps(meta))
    split = read_index(root).split("val")
    loader = ShardLoader(split, Batching(batch_size=8, train=False, workers=0, skip_bad=True), num_classes=2)
    assert sum(len(b) for b in loader) == 4
    assert [s.rsplit("/", 1)[-1] for s in loader.skipped] == ["b.tar#nolabel", "b.tar#<members 3..4>"]
    split.urls, split.counts = split.urls[:1], [4]
    with pytest.raises(ValueError, match=r"a\.tar#<member 4>.*ends after 3 members"):
        list(ShardLoader(split, Batching(batch_size=8, train=False, workers=0), num_classes=2))


def test_a_truncated_shard_is_named_or_its_lost_members_counted(shards, tmp_path) -> None:
    with tarfile.open(shards / "train-000000.tar") as tar:
        last = [m for m in tar.getmembers() if m.name.endswith((".jpg", ".png"))][-1]
    data = (shards / "train-000000.tar").read_bytes()
    (tmp_path / "cut.tar").write_bytes(data[: last.offset_data + last.size // 2])  # inside the last image
    meta = {"format": "cropmix-webdataset", "classes": ["cat", "dog"], "splits": {"train": {"shards": ["cut.tar"]}}}
    meta["splits"]["train"]["counts"] = [3]
    (tmp_path / "index.json").write_text(json.dumps(meta))
    split = read_index(tmp_path).split("train")
    with pytest.raises(ValueError, match=r"cannot read shard .*cut\.tar.* after member \d"):
        list(ShardLoader(split, Batching(batch_size=3, train=False, workers=0)))
    loader = ShardLoader(split, Batching(batch_size=3, train=False, workers=0, skip_bad=True))
    read = sum(len(b) for b in loader)
    assert read < 3 and len(loader.skipped) == 1, "the lost members are one record"
    assert loader.skipped[0].endswith("cut.tar#<member 3>" if read == 2 else f"cut.tar#<members {read + 1}..3>")


def test_shards_command_in_process(tmp_path, capsys) -> None:
    from cropmix.cli import shards as command

    parser = argparse.ArgumentParser()
    command.add_parser(parser.add_subparsers())
    make_jpeg_folder(tmp_path / "src", train_per_class=2, val_per_class=1)
    args = parser.parse_args(["shards", str(tmp_path / "src"), str(tmp_path / "out"), "--shard-size", "4"])
    args.progress = False
    assert args.run(args) == 0
    out = capsys.readouterr().out
    assert "train: 7 images in 2 shards" in out and "val: 5 images in 2 shards" in out
    with pytest.raises(SystemExit):
        parser.parse_args(["shards", "a", "b", "--shard-size", "0"])


def test_shards_command(tmp_path, capsys) -> None:
    from cropmix.cli import main

    make_jpeg_folder(tmp_path / "src", train_per_class=2, val_per_class=1)
    run = [sys.executable, "-m", "cropmix", "shards"]
    result = subprocess.run([*run, str(tmp_path / "src"), str(tmp_path / "out"), "--no-progress"], capture_output=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "train-000000.tar").is_file() and (tmp_path / "out" / "index.json").is_file()
    assert main(["shards", str(tmp_path / "nope"), str(tmp_path / "o")]) == 2  # in-process: one interpreter start less
    assert "cropmix shards: error:" in capsys.readouterr().err


@pytest.mark.parametrize("device", DEVICES)
def test_webdataset_loader_feeds_a_training_loop_unchanged(shards, device) -> None:
    from cropmix.data.device_loader import webdataset_loader

    index = read_index(shards)
    common = dict(device=device, num_classes=2)
    spec = AugmentSpec("cropmix", 24, "imagenet")
    train = webdataset_loader(index.split("train"), spec, Batching(4, train=True, workers=1), **common)
    train.set_epoch(1)
    batches = list(train)
    assert len(batches) == len(train) == 2
    for images, labels in batches:
        assert images.shape == (4, 3, 24, 24) and images.dtype == torch.float32 and images.device.type == device
        assert 0 <= images.min() and images.max() <= 1 and labels.device.type == device
    test = webdataset_loader(index.split("val"), spec, Batching(4, workers=1), **common)
    assert [len(labels) for _, labels in test] == [4, 3]
    assert train.skipped == []
    with pytest.raises(ValueError, match="base augmentation"):
        AugmentSpec("mixup", 24)
