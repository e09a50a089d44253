"""Dataset formats as a registry: a new one is a module and a `register` line; every source subsets alike."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import tiny_config

from cropmix.data import (
    SOURCES,
    ArraySplit,
    DataSource,
    Source,
    SourceOptions,
    fixed_subset,
    register,
    source_named,
    subset,
)
from cropmix.train import train


class Stripes(Source):
    """A format made up for the test: `data` is the stripe period; images in memory, class = the phase."""

    name = "stripes"
    normalisation = "cifar10"

    def check(self, data, options) -> None:
        if not str(data).isdigit():
            raise ValueError(f"data (--data) must be a stripe period in pixels, got {data!r}")

    def open(self, data, options) -> DataSource:
        period = int(data)
        targets = torch.arange(48) % 2
        columns = (torch.arange(16)[None, :] + targets[:, None] * (period // 2)) % period < period // 2
        images = (columns[:, None, None, :].expand(48, 3, 16, 16) * 255).to(torch.uint8)
        split = ArraySplit(images.contiguous(), targets, ["even", "odd"])
        return DataSource(split, split.select(torch.arange(16)), split.classes)


@pytest.fixture
def stripes():
    source = register(Stripes())
    yield source
    del SOURCES[source.name]


def test_a_registered_source_trains_like_the_built_in_ones(tmp_path, stripes):
    out = train(tiny_config(tmp_path, dataset="stripes", data="4", epochs=1, max_train_images=32))
    assert json.loads((out / "config.json").read_text())["image_size"] == 16
    assert [json.loads(line)["train_images"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [32]
    with pytest.raises(ValueError, match="stripe period"):
        train(tiny_config(tmp_path, dataset="stripes", data="wide", out=str(tmp_path / "bad")))
    assert not (tmp_path / "bad").exists()  # checked before any work


def test_names_are_not_replaced_and_unknown_ones_are_named(stripes):
    with pytest.raises(ValueError, match="already registered"):
        register(Stripes())
    with pytest.raises(ValueError, match=r"dataset \(--dataset\) must be one of .*'stripes'.*got 'lmdb'"):
        source_named("lmdb")


def test_hf_splits_subset_like_the_others(tmp_path):
    pytest.importorskip("datasets")
    from helpers import hf_dataset_dict

    path = tmp_path / "hf"
    hf_dataset_dict().save_to_disk(str(path))
    out = train(tiny_config(tmp_path, dataset="hf", data=str(path), epochs=1, max_train_images=12, batch_size=4))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["train_images"] == 12
    split = source_named("hf").open(path, SourceOptions()).train
    picked, keep = subset(split, 5, seed=3), fixed_subset(16, 5, seed=3).tolist()
    assert len(picked) == 5 and picked.targets == [split.targets[i] for i in keep]
    assert picked.dataset[0]["image"]["bytes"] == split.dataset[keep[0]]["image"]["bytes"]  # stored, undecoded


def test_a_switch_the_format_has_no_use_for_is_refused_by_name(tmp_path, stripes):
    for key, flag in (("skip_bad", "--skip-bad"), ("in_memory", "--in-memory")):
        config = tiny_config(tmp_path, dataset="stripes", data="4", **{key: True})
        with pytest.raises(ValueError, match=rf"{key} \({flag}\) does not apply to dataset \(--dataset\) 'stripes'"):
            config.validate(cuda_available=False)
    with pytest.raises(
        ValueError, match=r"skip_bad \(--skip-bad\) does not apply to .* 'npz' \(it applies to .*'imagefolder'"
    ):
        tiny_config(tmp_path, skip_bad=True).validate(cuda_available=False)
    stripes.switches = ("skip_bad",)  # a format that skips bad items says so, and the switch is taken
    tiny_config(tmp_path, dataset="stripes", data="4", skip_bad=True).validate(cuda_available=False)
