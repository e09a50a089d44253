"""Received checkpoints: no link written through, no inflation past the limits, one-line errors for bad states."""

from __future__ import annotations

import os
import zipfile

import pytest
import torch

from cropmix.data.safe_files import FileError
from cropmix.models import weights
from cropmix.models.weights import CheckpointError, load_checkpoint
from cropmix.train.checkpoint import restore_states, rng_states, save_atomic


def test_save_atomic_replaces_a_planted_link(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (tmp_path / "checkpoint.pt.tmp").symlink_to(victim)
    (tmp_path / "checkpoint.pt").symlink_to(victim)
    save_atomic({"a": torch.zeros(2)}, tmp_path / "checkpoint.pt")
    assert victim.read_text() == "keep"
    assert not (tmp_path / "checkpoint.pt").is_symlink()
    assert load_checkpoint(tmp_path / "checkpoint.pt")["a"].shape == (2,)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".checkpoint")] == []


def test_load_refuses_a_fifo(tmp_path):
    fifo = tmp_path / "checkpoint.pt"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        load_checkpoint(fifo)


def _deflated_copy(source, target):
    """The torch archive at `source` rewritten with every entry deflated (torch itself stores them)."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as new:
        for entry in old.infolist():
            new.writestr(entry.filename, old.read(entry.filename))


def test_a_deflated_bomb_is_refused_before_inflating(tmp_path):
    save_atomic({"big": torch.zeros(1024 * 1024)}, tmp_path / "plain.pt")
    _deflated_copy(tmp_path / "plain.pt", tmp_path / "bomb.pt")
    assert (tmp_path / "bomb.pt").stat().st_size < 100_000
    with pytest.raises(CheckpointError, match="would inflate"):
        load_checkpoint(tmp_path / "bomb.pt")


def test_the_total_uncompressed_size_is_bounded(tmp_path, monkeypatch):
    save_atomic({"t": torch.zeros(1000)}, tmp_path / "c.pt")
    monkeypatch.setattr(weights, "MAX_CHECKPOINT_BYTES", 1000)
    with pytest.raises(CheckpointError, match="MAX_CHECKPOINT_BYTES"):
        load_checkpoint(tmp_path / "c.pt")


def test_a_non_archive_is_one_line_naming_the_file(tmp_path):
    (tmp_path / "c.pt").write_bytes(b"not a zip at all")
    with pytest.raises(CheckpointError, match="c.pt") as info:
        load_checkpoint(tmp_path / "c.pt")
    assert "\n" not in str(info.value)


def _parts():
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return model, optimizer, scheduler


@pytest.mark.parametrize(
    ("key", "bad"),
    [
        ("scheduler", {}),
        ("scheduler", [1, 2]),
        ("model", {"weight": torch.zeros(5, 5)}),
        ("optimizer", {"state": {}, "param_groups": [{"params": [0, 1, 2]}]}),
        ("rng", {"torch": "x"}),
        ("missing", None),
    ],
)
def test_malformed_states_give_one_line_naming_file_and_key(tmp_path, key, bad):
    model, optimizer, scheduler = _parts()
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_states(),
    }
    if key == "missing":
        del state["scheduler"]
        key = "scheduler"
    else:
        state[key] = bad
    path = save_atomic(state, tmp_path / "checkpoint.pt")
    loaded = load_checkpoint(path)
    targets = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "rng": None}
    with pytest.raises(CheckpointError, match=f"checkpoint.pt.*'{key}'") as info:
        restore_states(loaded, targets, path)
    assert "\n" not in str(info.value)


def test_a_good_checkpoint_restores(tmp_path):
    model, optimizer, scheduler = _parts()
    path = save_atomic(
        {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
        tmp_path / "checkpoint.pt",
    )
    restore_states(load_checkpoint(path), {"model": model, "optimizer": optimizer, "scheduler": scheduler}, path)


def test_a_config_asking_for_a_huge_model_is_refused_before_allocating():
    import resource

    from cropmix.models import build_model

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ValueError, match="MAX_PARAMETERS"):
        build_model("vit_tiny", 10, image_size=32, dim=16384, depth=64, num_heads=16)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 500_000  # KiB: far below the 800 GB asked


def test_models_of_normal_size_still_build():
    from cropmix.models import build_model

    model = build_model("vit_tiny", 10, image_size=32, depth=2)
    assert all(p.device.type == "cpu" for p in model.parameters())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"act_layer": "os.system"},
        {"norm_layer": "torch.nn.LayerNorm"},
        {"pretrained": True},
        {"checkpoint_path": "/tmp/x.pt"},
        {"pretrained_cfg_overlay": {"file": "x.pt"}},
        {"weight_init": "mod:func"},
        {"drop_rate": print},
        {"block_args": {"block_fn": "a.b"}},
    ],
)
def test_timm_kwargs_naming_code_or_files_are_refused(kwargs):
    pytest.importorskip("timm")
    from cropmix.models import build_model

    with pytest.raises(ValueError, match="timm model kwarg"):
        build_model("timm:resnet18", 10, image_size=32, **kwargs)


def test_plain_timm_kwargs_still_work():
    from cropmix.models.timm_bridge import check_timm_kwargs

    check_timm_kwargs({"num_classes": 10, "drop_rate": 0.1, "img_size": 32, "global_pool": "avg", "depths": [1, 2]})


def test_a_hf_folder_with_a_loading_script_is_never_run(tmp_path):
    pytest.importorskip("datasets")
    from cropmix.integrations.hf import load_hf

    folder = tmp_path / "ds"
    folder.mkdir()
    marker = tmp_path / "ran"
    (folder / "ds.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (folder / "train.csv").write_text("image,label\n1,0\n")
    with pytest.raises(ValueError, match="loading script"):
        load_hf(folder)
    assert not marker.exists()


def test_a_hf_name_not_in_the_cache_is_one_quick_line(tmp_path, monkeypatch):
    pytest.importorskip("datasets")
    import time

    from cropmix.integrations.hf import load_hf

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    start = time.monotonic()
    with pytest.raises(ValueError, match="local Hugging Face cache") as info:
        load_hf("someone/no-such-dataset-here")
    assert time.monotonic() - start < 20
    assert "\n" not in str(info.value)


def test_the_block_formula_matches_the_built_blocks():
    from cropmix.models.size import block_stack_parameters
    from cropmix.models.vit import Block

    blocks = torch.nn.ModuleList(Block(32, 4) for _ in range(3))
    assert block_stack_parameters(32, 3) == sum(p.numel() for p in blocks.parameters())


def test_a_huge_position_buffer_counts_too():
    from cropmix.models import build_model

    with pytest.raises(ValueError, match="MAX_PARAMETERS"):
        build_model("vit_tiny", 10, image_size=8192, patch_size=2, dim=192)


def test_a_received_pretrain_config_asking_for_a_huge_moco_head_is_refused_before_allocating():
    import resource

    from cropmix.ssl import PretrainConfig
    from cropmix.ssl.pretrain import build_ssl_model

    config = PretrainConfig.from_dict({"method": "moco", "backbone": "fastnet", "moco_dim": 1 << 24, "queue_size": 1})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ValueError, match="MAX_PARAMETERS") as info:
        build_ssl_model(config)
    assert "dim=16777216" in str(info.value)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 500_000  # KiB: far below the 40+ GB asked


def test_the_projection_head_formula_matches_the_built_head():
    from cropmix.ssl.moco import ProjectionHead

    head = ProjectionHead(24, 40, 8)
    assert ProjectionHead.parameter_count(24, 40, 8) == sum(p.numel() for p in head.parameters())


def test_pretrain_eval_only_of_a_train_checkpoint_says_so_in_one_line(tmp_path, capsys):
    from helpers import tiny_config

    from cropmix.cli import main

    run = tmp_path / "run"
    run.mkdir()
    torch.save({"config": tiny_config(tmp_path).to_dict(), "model": {}}, run / "checkpoint.pt")
    assert main(["pretrain", "--eval-only", str(run / "checkpoint.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "`cropmix train` checkpoint" in err and f"cropmix eval {run}" in err, err
    assert "unknown PretrainConfig fields" not in err


def test_an_npz_given_as_a_checkpoint_is_said_not_to_be_one(tmp_path, capsys):
    from helpers import make_npz

    from cropmix.cli import main

    data = make_npz(tmp_path / "d.npz")
    with pytest.raises(CheckpointError, match="not a torch checkpoint") as info:
        load_checkpoint(data)
    assert "inflate" not in str(info.value) and "y_train.npy" in str(info.value)
    assert main(["pretrain", "--eval-only", str(data)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "not a torch checkpoint" in err, err


def test_planted_checkpoint_metrics_are_bounded_before_anything_is_written(tmp_path, monkeypatch):
    from cropmix.train import run_files
    from cropmix.train.resume import resumed_rows

    row = {f"m{i}": "x" * 1000 for i in range(100)}  # ~100 KB as JSON, pickled once however often it is listed
    save_atomic({"epoch": 1, "metrics": [row] * 20_000}, tmp_path / "checkpoint.pt")
    assert (tmp_path / "checkpoint.pt").stat().st_size < 200_000  # 2 GB once written as metrics.jsonl
    with pytest.raises(ValueError, match=r"checkpoint\.pt: its metrics row 1 is over 65536 characters"):
        resumed_rows(load_checkpoint(tmp_path / "checkpoint.pt"), tmp_path, 1)
    small = {"loss": 0.5, "name": "x" * 100}
    monkeypatch.setattr(run_files, "MAX_METRICS_BYTES", 100_000)
    with pytest.raises(
        ValueError, match=r"checkpoint\.pt: its metrics rows 1\.\.\d+ are over 100000 characters in all"
    ):
        run_files.plain_rows([small] * 10_000, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match=r"checkpoint\.pt: its metrics rows name more than 256 distinct metrics"):
        run_files.plain_rows([{f"m{i}": 0} for i in range(300)], tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match=r"checkpoint\.pt: its metrics rows are not a list of dicts of numbers"):
        run_files.plain_rows([{"epoch": 10**5000}], tmp_path / "checkpoint.pt")  # json.dumps refuses it
    assert run_files.plain_rows([small] * 10, "checkpoint.pt") == [small] * 10
    assert run_files.plain_rows([{"step": 2**63}], "checkpoint.pt") == [{"step": 2**63}]
    assert not list(tmp_path.glob("metrics.*"))


def test_a_run_folder_given_for_its_checkpoint_names_the_file_to_pass(tmp_path, capsys):
    from helpers import base_args, make_npz

    from cropmix.cli import main

    data, run = make_npz(tmp_path / "d.npz"), tmp_path / "run"
    run.mkdir()
    torch.save({"model": {}}, run / "checkpoint.pt")
    assert main(base_args(data, tmp_path / "ft", "--epochs", "1", "--init", str(run))) == 2
    err = capsys.readouterr().err.strip()
    assert (
        "\n" not in err and "--init" in err and f"is a folder, not a checkpoint file: pass '{run}/checkpoint.pt'" in err
    )
    assert main(["pretrain", "--eval-only", str(run)]) == 2
    assert f"is a folder, not a checkpoint file: pass '{run}/checkpoint.pt'" in capsys.readouterr().err
    with pytest.raises(FileError, match="cropmix writes checkpoint.pt in a run folder"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("planted", ["0.5", [0.5] * 21, [1], [0.5, "x"], {"a": 0.5}])
def test_planted_recent_losses_of_a_pretrain_checkpoint_are_refused_naming_the_file(tmp_path, planted):
    from cropmix.ssl.pretrain import _saved_losses

    path = tmp_path / "checkpoint.pt"
    with pytest.raises(CheckpointError, match="checkpoint.pt.*'recent_losses'"):
        _saved_losses({"recent_losses": planted}, path)
    assert _saved_losses({}, path) == [] and _saved_losses({"recent_losses": [0.5] * 20}, path) == [0.5] * 20
