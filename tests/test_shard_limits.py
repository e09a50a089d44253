"""Shard sets from someone else are read in bounded memory and time: tar headers, the shuffle buffer, a batch's
bytes, brace patterns, declared counts and the index's nesting all have limits, and going over one is a one-line
error."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import tarfile
import time
from pathlib import Path

import pytest
import torch
from encoded_files import encoded

from cropmix.data import Batching, shard_reader, shard_urls, shards
from cropmix.data.shard_reader import ShardStream
from cropmix.data.shard_tar import MAX_HEADER_BYTES, iter_samples
from cropmix.data.shard_urls import MAX_SHARD_NAMES, expand_braces
from cropmix.data.shards import MAX_SAMPLES_PER_SHARD, MAX_SPLIT_SAMPLES, read_index

HUGE = 5 * 2**30


def header(name: str, kind: bytes, size: int) -> bytes:
    """One 512-byte ustar header of type `kind` declaring `size` bytes."""
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, size
    return info.tobuf(format=tarfile.GNU_FORMAT if size >= 8**11 else tarfile.USTAR_FORMAT)


def sparse_tar(path: Path, head: bytes, size: int) -> Path:
    """`head`, then zeros up to `size` bytes: a sparse file, nothing but `head` written to disk."""
    path.write_bytes(head)
    os.truncate(path, size)
    return path


@pytest.mark.parametrize("kind", [b"x", b"g", b"L", b"K", b"X"])
def test_a_header_declaring_gigabytes_is_refused_before_it_is_read(tmp_path, kind) -> None:
    shard = sparse_tar(tmp_path / "train-000000.tar", header("././@Header", kind, HUGE), HUGE + 1024)
    with pytest.raises(ValueError, match=rf"train-000000\.tar.*declares {HUGE} bytes.*limit of {MAX_HEADER_BYTES}"):
        list(iter_samples(str(shard), frozenset({"jpg"})))


def test_headers_within_the_limit_are_read_as_before(tmp_path) -> None:
    shard = tmp_path / "a.tar"
    with tarfile.open(shard, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("d" * 300 + "/k0.jpg")  # a long name: a pax header
        info.size, info.pax_headers = 3, {"comment": "c" * 100_000}
        tar.addfile(info, io.BytesIO(b"abc"))
    samples = list(iter_samples(str(shard), frozenset({"jpg"})))
    assert [(s["__key__"], s["jpg"]) for s in samples] == [("d" * 300 + "/k0", b"abc")]


def index(root: Path, **split) -> Path:
    """root/index.json with one "val" split (`split`: its shards, counts, ...)."""
    root.mkdir(parents=True, exist_ok=True)
    meta = {"format": "cropmix-webdataset", "classes": ["x"], "splits": {"val": split}}
    (root / "index.json").write_text(json.dumps(meta))
    return root


def test_brace_groups_that_multiply_past_the_limit_are_refused_before_expanding() -> None:
    start = time.perf_counter()
    with pytest.raises(ValueError, match=rf"'t\{{0\.\.9999\}}\{{0\.\.9999\}}\.tar'.*limit of {MAX_SHARD_NAMES}"):
        expand_braces("t{0..9999}{0..9999}.tar")
    with pytest.raises(ValueError, match="limit of"):
        expand_braces("{a,b}" * 40)
    assert time.perf_counter() - start < 1
    assert expand_braces("s-{08..10}{a,b}.tar") == [
        "s-08a.tar",
        "s-08b.tar",
        "s-09a.tar",
        "s-09b.tar",
        "s-10a.tar",
        "s-10b.tar",
    ]
    assert expand_braces("{a}{3..1}") == ["{a}3", "{a}2", "{a}1"] and expand_braces("plain") == ["plain"]
    assert len(expand_braces("{0..99}" * 3)) == 10**6


def test_an_index_repeating_patterns_past_the_limit_is_refused_before_expanding(tmp_path, monkeypatch) -> None:
    for module in (shard_urls, shards):
        monkeypatch.setattr(module, "MAX_SHARD_NAMES", 1000)
    root = index(tmp_path / "a", shards=["a{000..599}.tar"] * 2, shard_size=1, num_samples=1200)
    with pytest.raises(ValueError, match=r"index\.json.*name more than the limit of 1000 shards in all"):
        read_index(root)
    meta = json.loads((root / "index.json").read_text())
    meta["splits"] = {"train": {"shards": ["a{000..599}.tar"], "counts": [1] * 600}, "val": meta["splits"]["val"]}
    meta["splits"]["val"]["shards"] = ["b{000..599}.tar"]
    (root / "index.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="limit of 1000 shards in all"):  # the splits count together
        read_index(root)
    root = index(tmp_path / "b", shards=["a{000..499}.tar", "b{000..499}.tar"], shard_size=1, num_samples=1000)
    assert len(read_index(root).split("val").urls) == 1000


def test_a_pattern_of_many_groups_is_counted_only_until_it_passes_the_limit(monkeypatch) -> None:
    """Counting stops at the group that passes MAX_SHARD_NAMES (2^24 > 10^7: the 24th), however many follow:
    a product over a million groups took half a minute."""
    counted = []
    count = shard_urls._count
    monkeypatch.setattr(shard_urls, "_count", lambda body: counted.append(body) or count(body))
    with pytest.raises(ValueError, match=f"limit of {MAX_SHARD_NAMES}"):
        expand_braces("{a,b}" * 10_000)
    assert len(counted) == 24


def test_a_huge_label_member_is_shown_cut_short(tmp_path) -> None:
    with tarfile.open(tmp_path / "a.tar", "w") as tar:
        for field, body in (("png", encoded("RGB", "PNG", size=(8, 8))), ("cls", b"\x00" * 2**20)):
            info = tarfile.TarInfo(f"k0.{field}")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    index(tmp_path, shards=["a.tar"], counts=[1])
    stream = ShardStream(read_index(tmp_path).split("val"), Batching(8, train=False, workers=0))
    with pytest.raises(
        ValueError, match=r"a\.tar#k0: label \(\.cls\) is not an integer: b'\\x00.* \(1048576 bytes\)"
    ) as caught:
        list(stream)
    assert len(str(caught.value)) < 1000


def test_counts_beyond_any_shard_are_refused(tmp_path) -> None:
    root = index(tmp_path / "a", shards=["a.tar"], counts=[10**15])
    with pytest.raises(ValueError, match=rf"index\.json.*counts.*\[0, {MAX_SAMPLES_PER_SHARD}\].*1000000000000000"):
        read_index(root)
    root = index(tmp_path / "b", shards=["a{0..9999}.tar"], counts=[MAX_SAMPLES_PER_SHARD] * 10_000)
    with pytest.raises(ValueError, match=rf"index\.json.*add up to {10**11}.*limit of {MAX_SPLIT_SAMPLES}"):
        read_index(root)
    root = index(tmp_path / "c", shards=["a.tar"], shard_size="many", num_samples=4)
    with pytest.raises(ValueError, match=r"index\.json.*shard_size and num_samples must be ints >= 0.*'many'"):
        read_index(root)


def small_shard(path: Path, n: int, key: str = "k") -> None:
    """A shard of `n` real 8x8 PNG images (the reader checks each member's header), labelled 0, keys key000..."""
    with tarfile.open(path, "w") as tar:
        for i in range(n):
            for field, body in (("png", encoded("RGB", "PNG", size=(8, 8), seed=i)), ("cls", b"0")):
                info = tarfile.TarInfo(f"{key}{i:03d}.{field}")
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))


def test_a_shard_far_shorter_than_its_count_is_one_record(tmp_path, caplog) -> None:
    small_shard(tmp_path / "a.tar", 4)
    index(tmp_path, shards=["a.tar"], counts=[MAX_SAMPLES_PER_SHARD])
    split = read_index(tmp_path).split("val")
    stream = ShardStream(split, Batching(8, train=False, workers=0, skip_bad=True))
    start = time.perf_counter()
    with caplog.at_level(logging.WARNING, "cropmix.data"):
        batches = list(stream)
    assert time.perf_counter() - start < 1
    skipped = [name for b in batches for name in b.skipped]
    assert [name.rsplit("/", 1)[-1] for name in skipped] == [f"a.tar#<members 5..{MAX_SAMPLES_PER_SHARD}>"]
    assert len(caplog.records) == 1 and f"{MAX_SAMPLES_PER_SHARD - 4} members missing" in caplog.text
    assert sum(len(b) for b in batches) == 4


def shuffled(items: list, max_bytes: int | None = None) -> list[int]:
    return [i for _, i in shard_reader._shuffled(iter(items), 50, torch.Generator().manual_seed(3), max_bytes)]


def test_the_shuffle_buffer_holds_at_most_its_byte_bound(monkeypatch) -> None:
    items = [(bytes(100 + 37 * (i % 7)), i) for i in range(300)]
    bound, biggest = 2000, max(len(data) for data, _ in items)
    monkeypatch.setattr(shard_reader, "SHUFFLE_BUFFER_BYTES", bound)
    given, taken, held = [0], [0], []

    def source():
        for item in items:
            given[0] += len(item[0])
            held.append(given[0] - taken[0])  # the buffer's bytes and the one item just handed to it
            yield item

    order = []
    for data, i in shard_reader._shuffled(source(), 50, torch.Generator().manual_seed(3)):
        taken[0] += len(data)
        order.append(i)
    assert sorted(order) == list(range(300)) and max(held) <= bound + biggest
    assert shuffled(items, 10**9) == shuffled(items, 50 * biggest) != order, "under the bound: the count bound's order"


def test_an_index_nested_too_deeply_is_a_one_line_error(tmp_path) -> None:
    (tmp_path / "index.json").write_text("[" * 200_000)
    with pytest.raises(ValueError, match=r"shard index .*index\.json.* nested too deeply"):
        read_index(tmp_path)


def test_reading_a_shard_does_not_keep_every_header(tmp_path) -> None:
    import tracemalloc

    path = tmp_path / "many.tar"
    with tarfile.open(path, "w") as tar:
        for i in range(4_000):  # members no sample uses, each header kept by tarfile's stream unless dropped
            info = tarfile.TarInfo(f"k{i:06d}.txt")
            info.pax_headers = {"comment": "x" * 200}
            tar.addfile(info, io.BytesIO())
    tracemalloc.start()
    samples = sum(1 for _ in iter_samples(str(path), frozenset({"png", "cls"})))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert samples == 4_000 and peak < 1_500_000, peak  # 4,000 headers held take about 3.6 MB


def sized_split(root: Path, n: int, key: str = "k") -> tuple:
    """A split of one shard of `n` small PNGs (small_shard's), and the images' encoded bytes in order."""
    root.mkdir(parents=True, exist_ok=True)
    small_shard(root / "a.tar", n, key)
    index(root, shards=["a.tar"], counts=[n])
    return read_index(root).split("val"), [encoded("RGB", "PNG", size=(8, 8), seed=i) for i in range(n)]


@pytest.mark.parametrize("skip_bad", [False, True])
def test_a_batch_over_its_byte_bound_is_an_error_naming_the_shard(tmp_path, monkeypatch, skip_bad) -> None:
    split, files = sized_split(tmp_path, 6)
    bound = sum(map(len, files[:4])) - 1
    monkeypatch.setattr(shard_reader, "MAX_BATCH_BYTES", bound)
    stream = ShardStream(split, Batching(4, train=False, workers=0, skip_bad=skip_bad))
    with pytest.raises(ValueError) as error:
        list(stream)
    message = str(error.value)
    assert "batch size 4" in message and f"limit of {bound} bytes" in message and "a.tar'" in message
    assert f"a.tar#k003': its 4 images hold {bound + 1} bytes" in message, "checked as the 4th image came"
    assert "smaller batch size (--batch-size" in message


def test_the_byte_bound_error_names_the_shard_of_keys_holding_a_hash(tmp_path, monkeypatch) -> None:
    split, files = sized_split(tmp_path / "set#1", 6, key="photo#")  # '#' in the shard's path and in its keys
    monkeypatch.setattr(shard_reader, "MAX_BATCH_BYTES", sum(map(len, files[:4])) - 1)
    with pytest.raises(ValueError) as error:
        list(ShardStream(split, Batching(4, train=False, workers=0)))
    shards = str(error.value).split("from shard(s) ", 1)[1].split(" went over", 1)[0]
    assert shards == repr(split.urls[0]), shards


def test_the_byte_bound_error_reads_the_split_urls_once_not_once_per_sample() -> None:
    """A split may have 10^5 shards and a batch 10^3 samples: scanning the URLs per sample took seconds."""

    class Counted(list):
        reads = 0

        def __iter__(self):
            Counted.reads += 1
            return super().__iter__()

    urls = Counted(["a", "a#b", *(f"s{i}.tar" for i in range(1000))])
    error = shard_reader._too_large(["a#b#k1", "a#k#2", "s7.tar#k", "a#b#k3"], urls, 10, 4)
    assert Counted.reads == 1
    assert "from shard(s) 'a#b', 'a', 's7.tar' went over" in str(error)


def test_a_batch_within_its_byte_bound_is_read_unchanged(tmp_path, monkeypatch) -> None:
    split, files = sized_split(tmp_path, 6)
    monkeypatch.setattr(shard_reader, "MAX_BATCH_BYTES", sum(map(len, files[:4])))  # the first batch exactly
    batches = list(ShardStream(split, Batching(4, train=False, workers=0)))
    assert [len(b) for b in batches] == [4, 2]
    assert [bytes(image.numpy()) for b in batches for image in b.images] == files


def test_merging_the_workers_partial_batches_keeps_the_byte_bound(tmp_path, monkeypatch) -> None:
    split, files = sized_split(tmp_path, 6)  # two workers: 3 images each, a merged batch of 4
    bound = max(sum(map(len, files[:3])), sum(map(len, files[3:])))
    assert sum(map(len, files[:4])) > bound
    monkeypatch.setattr(shard_reader, "MAX_BATCH_BYTES", bound)  # forked workers see it too
    loader = shard_reader.ShardLoader(split, Batching(4, train=False, workers=2))
    with pytest.raises(ValueError, match=rf"batch size 4 from shard\(s\) '.*a\.tar'.*limit of {bound} bytes"):
        list(loader)
    monkeypatch.setattr(shard_reader, "MAX_BATCH_BYTES", sum(map(len, files[:4])))
    batches = list(loader)
    assert [bytes(image.numpy()) for b in batches for image in b.images] == files


def test_a_batch_is_built_with_one_copy_of_its_files() -> None:
    import tracemalloc
    import warnings

    files = [bytes([i]) * (2**20 + 37 * i) for i in range(8)] + [b"", b"xyz"]
    tracemalloc.start()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch.frombuffer warns on read-only bytes
        batch = shard_reader.ByteBatch.from_bytes(files, list(range(10)), [f"k{i}" for i in range(10)], [True] * 10)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2**20, f"{peak} bytes of Python objects: the files were joined before the batch was filled"
    assert [bytes(image.numpy()) for image in batch.images] == files
    assert batch.offsets.tolist() == [sum(map(len, files[:i])) for i in range(11)] and len(batch) == 10


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (pinned memory)")
def test_merged_batches_stay_pinned_for_asynchronous_copies(tmp_path) -> None:
    split, files = sized_split(tmp_path, 6)  # two workers: 3 images each, merged into batches of 4 and 2
    batches = list(shard_reader.ShardLoader(split, Batching(4, train=False, workers=2, pin_memory=True)))
    assert [len(b) for b in batches] == [4, 2]
    assert all(b.data.is_pinned() and b.labels.is_pinned() for b in batches)
    assert [bytes(image.numpy()) for b in batches for image in b.images] == files


def test_a_brace_range_of_huge_numbers_is_an_error_naming_the_index(tmp_path) -> None:
    index(tmp_path, shards=["s{0.." + "9" * 5000 + "}.tar"], counts=[1])  # int() refuses over 4300 digits
    with pytest.raises(ValueError, match=r"index\.json': brace range \{0\.\.9+\.\.\.\} has bounds of over 18 digits"):
        read_index(tmp_path)
    with pytest.raises(ValueError, match="over 18 digits"):
        expand_braces("s{" + "0" * 19 + "..1}.tar")
    assert expand_braces("s{" + "0" * 17 + "..1}.tar") == ["s" + "0" * 17 + ".tar", "s" + "0" * 16 + "1.tar"]


def test_a_pipe_index_command_is_read_up_to_the_limit_and_then_stopped(tmp_path) -> None:
    """What a `pipe:` index command relays may print without end: only the limit (+1 byte) is read, then it
    and what it started are killed, before it could go on (here: to the `touch` after the output)."""
    marker = tmp_path / "went-on"
    with pytest.raises(ValueError, match="more than the limit of 1000 bytes"):
        shard_urls.read_location("pipe", f"head -c 50000000 /dev/zero; touch {marker}", 1000)
    time.sleep(0.5)
    assert not marker.exists()


def test_a_pipe_index_command_that_outlives_its_time_limit_is_one_error(monkeypatch) -> None:
    """A command whose pipeline outlives the limit (here `sleep`, which holds the output pipe) is killed
    whole at the limit, not only its shell, and said in one error."""
    monkeypatch.setattr(shard_urls, "PIPE_TIMEOUT_S", 1.0)
    commands = ["sleep 20 | cat", "exec >/dev/null 2>&1; sleep 20"]  # its pipeline holds the output; it does not
    if shutil.which("setsid"):
        commands.append("setsid sleep 20")  # a child that left the group, holding the output: not waited for
    for command in commands:
        start = time.monotonic()
        with pytest.raises(ValueError, match=r"did not finish within 1 s"):
            shard_urls.read_location("pipe", command, 1000)
        assert time.monotonic() - start < 5, command


def test_a_pipe_index_command_that_fails_says_its_status_and_last_error_line() -> None:
    with pytest.raises(ValueError, match="failed with status 3: no such index"):
        shard_urls.read_location("pipe", "echo first >&2; echo no such index >&2; exit 3", 1000)
    assert shard_urls.read_location("pipe", "echo '{}'", 1000) == b"{}\n"
