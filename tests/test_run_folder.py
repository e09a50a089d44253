"""Run folders of `cropmix train` / `pretrain`: used only as asked,
one writer at a time, nothing lost on a crash, Ctrl-C or a diverging loss."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import subprocess
import sys

import pytest
from helpers import (
    base_args,
    ctrl_c_at_epoch,
    last_line,
    make_folder,
    make_npz,
    pretrain_config,
    tiny_mae,
    trained,
)

from cropmix.cli import main
from cropmix.data.safe_files import FileError
from cropmix.models.weights import load_checkpoint
from cropmix.ssl import MAE, PretrainConfig, pretrain
from cropmix.train import loop, resume
from cropmix.train.config import TrainConfig
from cropmix.train.run_files import read_metrics
from cropmix.train.run_folder import run_folder


def test_a_folder_with_metrics_but_no_checkpoint_is_refused(tmp_path, capsys):
    data = make_npz(tmp_path / "d.npz")
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"epoch": 1}\n')
    assert main(base_args(data, out, "--epochs", "1")) == 2
    assert "metrics.jsonl from an earlier run" in capsys.readouterr().err
    assert (out / "metrics.jsonl").read_text() == '{"epoch": 1}\n'  # untouched


def test_a_file_as_out_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    data = make_npz(tmp_path / "d.npz")
    (tmp_path / "file").write_text("x")
    monkeypatch.setattr(loop, "build_run", lambda *a: pytest.fail("data loaded before --out was checked"))
    assert main(base_args(data, tmp_path / "file", "--epochs", "1")) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


@pytest.mark.parametrize("inside", ["train/class0/run", "train/run", "val", "linked/run"])
def test_an_out_where_the_data_is_read_is_refused_before_any_work(tmp_path, capsys, monkeypatch, inside):
    data = make_folder(tmp_path / "data")
    elsewhere = make_folder(tmp_path / "full") / "train" / "class0"
    (data / "train" / "class9").symlink_to(elsewhere, target_is_directory=True)  # a class linked in
    monkeypatch.setattr(loop, "build_run", lambda *a: pytest.fail("data loaded before --out was checked"))
    out = elsewhere / "run" if inside == "linked/run" else data / inside
    args = base_args(data, out, "--epochs", "1")
    args[args.index("npz")] = "imagefolder"
    assert main(args) == 2  # its plots, in a class folder, would be the next run's training images
    assert "which reading --data" in capsys.readouterr().err
    assert sorted(p.name for p in (data / "train" / "class0").iterdir()) == ["0.png", "2.png", "4.png"]


def test_formats_that_read_only_their_own_files_may_hold_the_run_inside_the_data_folder(tmp_path):
    from cropmix.train.run_files import check_out_path

    data = make_folder(tmp_path / "data")
    for dataset in ("cifar10", "webdataset", "hf", "imagefolder"):  # an image folder reads only its splits
        check_out_path(data / "runs" / "r", data, dataset)  # no error
    with pytest.raises(ValueError, match="which reading --data"):
        check_out_path(data / "train" / "r", data, "imagefolder")


def test_pretrain_refuses_an_out_inside_its_data_folder(tmp_path, npz_path):
    data = make_folder(tmp_path / "data")
    config = pretrain_config(tmp_path, npz_path, "mae", "mae-mixup", steps=1)
    config = config.replace(dataset="imagefolder", data=str(data), out=str(data / "train" / "run"))
    with pytest.raises(ValueError, match=r"--out .*train/run' is inside .*which reading --data"):
        pretrain(config, model=tiny_mae())
    assert not (data / "train" / "run").exists()


def test_an_empty_out_is_refused_not_taken_as_the_working_folder(tmp_path, capsys, monkeypatch):
    data = make_npz(tmp_path / "d.npz")
    monkeypatch.chdir(tmp_path)
    assert main(base_args(data, "", "--epochs", "1")) == 2
    assert "--out '' is empty" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["d.npz"]


def test_resuming_a_finished_run_keeps_what_eval_added(tmp_path):
    data, out = trained(tmp_path)
    assert main(["eval", str(out), "--fgsm"]) == 0
    before = (out / "final.json").read_text()
    assert "fgsm_top1" in before
    assert main(base_args(data, out, "--epochs", "1", "--resume")) == 0
    assert (out / "final.json").read_text() == before


HOLD_THE_FOLDER = """
import sys, time
from cropmix.train.run_folder import run_folder
with run_folder(sys.argv[1], resume=False):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_writer_is_refused_while_the_first_holds_the_folder(tmp_path, monkeypatch):
    monkeypatch.setattr("cropmix.train.run_folder.LOCK_WAIT_S", 0.2)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_FOLDER, str(tmp_path / "run")], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"held\n"
        with pytest.raises(FileError, match=f"in use by another process \\(pid {holder.pid}\\)"):
            with run_folder(tmp_path / "run", resume=False):
                pass
    finally:
        holder.kill()
        holder.wait()
    with run_folder(tmp_path / "run", resume=False):  # its holder killed: the lock went with it
        pass


def test_a_torn_last_line_is_dropped_and_a_bad_middle_line_named(tmp_path, caplog):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2}\n{"ste')
    with caplog.at_level(logging.WARNING, "cropmix.train"):
        assert read_metrics(tmp_path) == [{"step": 1}, {"step": 2}]
    assert "torn last line 3" in caplog.text and "metrics.jsonl" in caplog.text
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(ValueError, match="metrics.jsonl line 2 is not a JSON object"):
        read_metrics(tmp_path)


def test_planted_metrics_and_json_are_bounded_and_named(tmp_path, monkeypatch):
    from cropmix.train import run_files

    monkeypatch.setattr(run_files, "MAX_METRICS_ROWS", 100)
    (tmp_path / "metrics.jsonl").write_text("{}\n" * 101)
    with pytest.raises(ValueError, match=r"metrics\.jsonl holds more than 100 lines"):
        read_metrics(tmp_path)
    long_row = '{"a": "' + "x" * run_files.MAX_ROW_CHARS + '"}'
    (tmp_path / "metrics.jsonl").write_text(f'{{"step": 1}}\n{long_row}\n{{"step": 3}}\n')
    with pytest.raises(ValueError, match="metrics.jsonl line 2 is not a JSON object"):
        read_metrics(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n' + "[" * 60_000 + "\n")
    with pytest.raises(ValueError, match="metrics.jsonl line 2 is not a JSON object"):
        read_metrics(tmp_path)
    (tmp_path / "config.json").write_text("[" * 200_000)
    with pytest.raises(ValueError, match=r"config\.json .*nested too deep"):
        run_files.read_json(tmp_path / "config.json")


def test_planted_metrics_naming_a_column_per_row_are_refused(tmp_path):
    """metrics.csv has a column per metric named in any row, and every row a cell in each."""
    (tmp_path / "metrics.jsonl").write_text("".join(f'{{"m{i}": 0}}\n' for i in range(300)))
    with pytest.raises(ValueError, match=r"metrics\.jsonl: its metrics rows name more than 256 distinct metrics"):
        read_metrics(tmp_path)


def test_resume_compares_paths_resolved_and_lets_the_folder_move(tmp_path, monkeypatch):
    _, out = trained(tmp_path, "run", 1)
    moved = tmp_path / "elsewhere" / "run"
    shutil.move(out, moved)
    monkeypatch.chdir(tmp_path)
    config = TrainConfig.load(moved / "config.json")
    config.run.out, config.data.path = str(moved), "./d.npz"  # relative now, absolute when it was trained
    assert resume.check_resume(config, moved, resume=True)["epoch"] == 1
    with pytest.raises(ValueError, match="written by a run of 1"):
        resume.check_resume(config, moved, resume=True, world=2)
    config.optim.lr = 0.5
    with pytest.raises(
        ValueError, match=r"fields \['lr'\] differ .*\(lr \(--lr\): asked 0.5, the checkpoint has 0.2\)"
    ):
        resume.check_resume(config, moved, resume=True)


@pytest.mark.parametrize("option,value", [("--lr", "inf"), ("--weight-decay", "nan")])
def test_non_finite_options_are_refused(tmp_path, capsys, option, value):
    data = make_npz(tmp_path / "d.npz")
    assert main(base_args(data, tmp_path / "run", "--epochs", "1", option, value)) == 2
    assert f"{option}) must be a finite number" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="lr \\(--lr\\) must be a finite number"):
        PretrainConfig.from_dict(dict(method="moco", aug="cropmix", lr=float("inf")))


def test_a_diverging_loss_stops_the_run_and_keeps_the_last_checkpoint(tmp_path, capsys, monkeypatch):
    real = loop.finite_loss

    def nan_in_epoch_2(run, loss, where):
        return real(run, loss * float("nan") if where.startswith("epoch 2") else loss, where)

    monkeypatch.setattr(loop, "finite_loss", nan_in_epoch_2)
    data = make_npz(tmp_path / "d.npz")
    out = tmp_path / "run"
    assert main(base_args(data, out, "--epochs", "2")) == 1
    err = last_line(capsys)
    assert "training diverged: the loss is nan at epoch 2, step 1" in err and "checkpoint of epoch 1 is kept" in err
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1
    assert [r["epoch"] for r in read_metrics(out)] == [1]


def test_ctrl_c_says_what_is_kept_and_how_to_continue(tmp_path, capsys):
    data = make_npz(tmp_path / "d.npz")
    with ctrl_c_at_epoch(2):
        assert main(base_args(data, tmp_path / "run", "--epochs", "3")) == 130
    err = capsys.readouterr().err
    assert "checkpoint of epoch 1" in err and "--resume to continue" in err and "Traceback" not in err
    assert main(base_args(data, tmp_path / "run", "--epochs", "3", "--resume")) == 0
    assert [r["epoch"] for r in read_metrics(tmp_path / "run")] == [1, 2, 3]


def test_a_full_disk_at_the_checkpoint_leaves_metrics_behind_it_not_ahead(tmp_path, capsys, monkeypatch):
    real, calls = loop.save_atomic, []

    def full_on_the_second(obj, path):
        calls.append(path)
        if len(calls) == 2:
            raise FileError(errno.ENOSPC, f"no space left on device writing {path}")
        return real(obj, path)

    monkeypatch.setattr(loop, "save_atomic", full_on_the_second)
    data = make_npz(tmp_path / "d.npz")
    out = tmp_path / "run"
    assert main(base_args(data, out, "--epochs", "2")) == 2
    assert "no space left on device writing" in last_line(capsys)
    assert [r["epoch"] for r in read_metrics(out)] == [1] and load_checkpoint(out / "checkpoint.pt")["epoch"] == 1


def test_pretrain_follows_the_same_folder_rules(tmp_path, npz_path):
    config = pretrain_config(tmp_path, npz_path, "mae", "mae-mixup", steps=2, eval_train=16, eval_test=8)
    pretrain(config, model=tiny_mae())
    with pytest.raises(ValueError, match="already holds a checkpoint"):
        pretrain(config, model=tiny_mae())
    final = os.path.join(config.run.out, "final.json")
    with open(final) as handle:
        kept = handle.read()
    resumed = pretrain_config(tmp_path, npz_path, "mae", "mae-mixup", steps=2, eval_train=16, eval_test=8, resume=True)
    pretrain(resumed, model=tiny_mae())  # finished: nothing to do
    with open(final) as handle:
        assert handle.read() == kept
    other = pretrain_config(tmp_path, npz_path, "mae", "mae-mixup", steps=3, eval_train=16, eval_test=8, resume=True)
    with pytest.raises(
        ValueError, match=r"fields \['steps'\] differ .*steps \(--steps\): asked 3, the checkpoint has 2"
    ):
        pretrain(other, model=tiny_mae())
    fresh = pretrain_config(tmp_path / "new", npz_path, "mae", "mae-mixup", steps=2, resume=True)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        pretrain(fresh, model=tiny_mae())


@pytest.mark.parametrize("resume", [False, True])
def test_a_run_folder_of_the_other_command_is_named_as_such(tmp_path, npz_path, capsys, resume):
    flag = ["--resume"] if resume else []
    config = pretrain_config(tmp_path, npz_path, "mae", "mae-mixup", steps=1, eval_train=16, eval_test=8)
    pretrain(config, model=tiny_mae())
    assert main(base_args(npz_path, config.run.out, "--epochs", "1", *flag)) == 2
    error = last_line(capsys)
    assert "holds a `cropmix pretrain` run, not a `cropmix train` one" in error
    assert "`cropmix pretrain --resume` continues that run" in error
    _, trained_out = trained(tmp_path, "trained")
    other = pretrain_config(tmp_path, npz_path, "mae", "mae-mixup", steps=1, out=str(trained_out), resume=resume)
    with pytest.raises(ValueError, match="holds a `cropmix train` run, not a `cropmix pretrain` one"):
        pretrain(other, model=tiny_mae())


def test_a_huge_mae_decoder_is_refused_before_allocating():
    with pytest.raises(ValueError, match="MAE decoder .* more than the limit"):
        MAE(image_size=32, patch_size=4, dim=32, depth=1, heads=2, decoder_dim=100_000, decoder_depth=100)


# ---- what `cropmix eval` writes ----


def test_a_planted_final_json_chooses_nothing_written(tmp_path):
    _, out = trained(tmp_path)
    final = json.loads((out / "final.json").read_text())
    (out / "final.json").write_text(json.dumps({**final, "echo pwned >> ~/.bashrc": "x", "top1": -1}))
    assert main(["eval", str(out)]) == 0
    merged = json.loads((out / "final.json").read_text())
    assert "echo pwned >> ~/.bashrc" not in merged and merged["top1"] >= 0 and "epochs" in merged


@pytest.fixture
def small_disk(tmp_path):
    """A 96 KiB tmpfs at tmp_path/disk: a real full disk (needs root and a kernel that lets it mount)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_really_full_disk_is_named_and_leaves_no_temporary_files(tmp_path, capsys, small_disk):
    data = make_npz(tmp_path / "d.npz")
    out = small_disk / "run"
    args = base_args(data, out, "--epochs", "1")
    args[args.index("--model-kwargs") + 1] = '{"widths": [16, 32, 64, 64]}'  # a checkpoint larger than the disk
    assert main(args) == 2
    assert last_line(capsys).endswith(f"no space left on device writing {out / 'checkpoint.pt'}")
    # No temporary file, no metrics ahead of a checkpoint: nothing was kept, so the folder it made is gone.
    assert not os.path.lexists(out)


def test_pretrain_names_missing_data_before_making_its_folder(tmp_path, npz_path):
    config = pretrain_config(tmp_path, npz_path, "mae", "mae-mixup", steps=1).replace(data=str(tmp_path / "no.npz"))
    with pytest.raises(FileNotFoundError, match=r"data \(--data\) .*no\.npz' does not exist"):
        pretrain(config, model=tiny_mae())
    assert not os.path.exists(config.run.out)


def test_a_run_that_fails_before_writing_leaves_no_folder_behind(tmp_path, npz_path, capsys):
    data = make_npz(tmp_path / "d.npz")
    out = tmp_path / "new" / "run"
    assert main(base_args(data, out, "--epochs", "1", "--model-kwargs", '{"no_such_option": 1}')) == 2
    assert "no_such_option" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()  # the parent it made is gone too
    config = pretrain_config(tmp_path, npz_path, "mae", "mae-mixup", steps=1).replace(mae_kwargs={"mask_ratio": 1.5})
    with pytest.raises(ValueError, match="mask_ratio"):
        pretrain(config)
    assert not os.path.exists(config.run.out)


def test_a_failed_run_keeps_a_folder_it_did_not_make_or_wrote_into(tmp_path):
    given, written = tmp_path / "given", tmp_path / "written"
    given.mkdir()
    with pytest.raises(RuntimeError), run_folder(given, resume=False):
        raise RuntimeError("model build failed")
    assert given.is_dir()
    with pytest.raises(RuntimeError), run_folder(written, resume=False) as out:
        (out / "notes.txt").write_text("kept")
        raise RuntimeError("failed later")
    assert (written / "notes.txt").read_text() == "kept"


def test_a_lock_whose_folder_its_holder_removed_is_not_used(tmp_path, monkeypatch):
    # The holder failed before writing and removed its new folder while this process waited for the lock.
    from cropmix.train import run_folder as rf_module

    out = tmp_path / "run"

    def holder_removes_the_folder(fd, wait_s):
        os.unlink(out / ".lock")
        out.rmdir()
        return True

    monkeypatch.setattr(rf_module, "_try_lock", holder_removes_the_folder)
    with pytest.raises(FileError, match="was removed by the run that held it while this one waited: run again"):
        with run_folder(out, resume=False):
            pass
    assert not out.exists()


def test_a_dangling_link_as_the_run_folder_is_named_as_such(tmp_path) -> None:
    from cropmix.train.run_folder import check_reuse

    (tmp_path / "run").symlink_to(tmp_path / "nowhere")
    with pytest.raises(OSError, match="--out .*run is a link to nothing, not a folder: choose another --out"):
        check_reuse(tmp_path / "run", resume=False)


def test_temporaries_of_a_killed_writer_are_removed_when_the_run_folder_is_next_opened(tmp_path):
    """eval writes eval.json and reliability.png atomically too: a kill leaves their temporaries behind."""
    data, out = trained(tmp_path)
    stale = [out / ".eval.json.k1.tmp", out / ".reliability.png.k2.tmp", out / ".checkpoint.pt.k3.tmp"]
    for path in stale:
        path.write_bytes(b"partial")
    (out / "notes.tmp").write_text("the user's")
    assert main(base_args(data, out, "--epochs", "1", "--resume")) == 0
    assert not any(path.exists() for path in stale) and (out / "notes.tmp").read_text() == "the user's"
