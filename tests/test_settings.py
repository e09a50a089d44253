"""Declared settings: the command line, the conflict rules and config.json all come from the fields."""

from __future__ import annotations

import argparse
import json

import pytest

from cropmix.cli import build_parser
from cropmix.cli.config_options import config_values
from cropmix.ssl import PretrainConfig
from cropmix.train import EvalOptions, TrainConfig
from cropmix.train.settings import by_key, declared

CONFIGS = {"train": TrainConfig, "pretrain": PretrainConfig, "eval": EvalOptions}


def _subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser([command])
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[command]


@pytest.mark.parametrize("command", CONFIGS)
def test_every_setting_is_one_option_with_help(command):
    options = {a.dest: a for a in _subparser(command)._actions}
    for entry in declared(CONFIGS[command]):
        action = options[entry.key]
        assert entry.flag in action.option_strings, entry.key
        assert action.help and action.help.split("(default:")[0].strip(), f"{entry.key} has no help beyond its default"


def test_the_command_line_defaults_are_the_config_defaults():
    args = build_parser(["train"]).parse_args(["train", "--data", "d.npz", "--out", "o"])
    assert TrainConfig.from_dict(config_values(args, TrainConfig)) == TrainConfig.from_dict(
        {"data": "d.npz", "out": "o"}
    )
    args = build_parser(["eval"]).parse_args(["eval", "runs/a"])
    assert EvalOptions(**config_values(args, EvalOptions)) == EvalOptions()
    args = build_parser(["pretrain"]).parse_args(["pretrain", "--method", "mae"])
    assert PretrainConfig.from_dict(config_values(args, PretrainConfig)) == PretrainConfig(method="mae")


def test_options_arrive_in_their_parts():
    argv = ["train", "--data", "d", "--out", "o", "--aug", "cropmix", "--num-crops", "2", "3", "--scale", "0.2",
            "1", "--no-channel-permute", "--lr", "0.3", "--no-nesterov", "--eval-every", "2"]  # fmt: skip
    config = TrainConfig.from_dict(config_values(build_parser(argv).parse_args(argv), TrainConfig))
    assert config.aug.num_crops == (2, 3) and config.aug.scale == (0.2, 1.0) and config.aug.channel_permute is False
    assert config.optim.lr == 0.3 and config.optim.nesterov is False and config.run.eval_every == 2
    one = build_parser(["train"]).parse_args(["train", "--data", "d", "--out", "o", "--num-crops", "4"])
    assert config_values(one, TrainConfig)["cropmix_num_crops"] == 4  # one value: a plain int, as in recipes


# A value for every setting that only applies with another, given without that other (the defaults, and
# the optimizer AdamW).
ALONE = {
    "hf_image_key": "img", "hf_label_key": "y", "shuffle_buffer": 10, "cropmix_scale": (0.2, 1.0),
    "cropmix_num_crops": 3, "cropmix_mix": "cutmix", "cropmix_alpha": 0.3, "cropmix_channel_permute": False,
    "rrc_scale": (0.2, 1.0), "timm_aug": {}, "mix_alpha": 0.5, "momentum": 0.5, "nesterov": False,
    "milestones": (1,), "gamma": 0.5,
}  # fmt: skip


def test_the_table_covers_every_declared_rule():
    assert {key for key, entry in by_key(TrainConfig).items() if entry.meta("only_with")} == set(ALONE)


@pytest.mark.parametrize("key", sorted(ALONE))
def test_a_setting_without_the_one_it_applies_with_names_both(key, tmp_path):
    values = {"dataset": "npz", "data": str(tmp_path / "d.npz"), "optimizer": "adamw", "epochs": 4}
    config = TrainConfig.from_dict({**values, key: ALONE[key]})
    rule = by_key(TrainConfig)[key].meta("only_with")
    other = by_key(TrainConfig)[rule.key]
    with pytest.raises(ValueError, match="only applies with") as error:
        config.validate(cuda_available=False)
    assert by_key(TrainConfig)[key].label in str(error.value) and other.label in str(error.value)


def test_config_json_is_flat_and_round_trips():
    values = {"dataset": "npz", "aug": "cropmix+mixup", "cropmix_num_crops": (2, 3), "lr": 0.05}
    config = TrainConfig.from_dict({**values, "milestones": [3], "schedule": "step", "model_kwargs": {"a": 1}})
    flat = json.loads(json.dumps(config.to_dict()))
    assert all(not isinstance(v, dict) or k in ("model_kwargs",) for k, v in flat.items())
    assert TrainConfig.from_dict(flat) == config
    assert config.replace(seed=3).run.seed == 3 and config.run.seed == 0


def test_an_older_config_json_loads_and_unknown_keys_are_named(tmp_path):
    old = {"dataset": "npz", "data": "d.npz", "aug": "cropmix", "cropmix_num_crops": [2], "extra": {}, "epochs": 2}
    (tmp_path / "config.json").write_text(json.dumps(old))
    assert TrainConfig.load(tmp_path / "config.json").aug.num_crops == (2,)
    with pytest.raises(ValueError, match=r"unknown TrainConfig fields \['bogus'\]; accepted: .*'cropmix_alpha'"):
        TrainConfig.from_dict({"bogus": 1})


def test_parts_are_typed():
    with pytest.raises(TypeError, match="TrainConfig.data must be a TrainData.*from_dict"):
        TrainConfig(data="d.npz")
    with pytest.raises(TypeError, match=r"cropmix_alpha \(--alpha\) must be"):
        TrainConfig.from_dict({"cropmix_alpha": "0.3"})


def test_pretrain_shares_the_data_and_run_parts():
    config = PretrainConfig.from_dict({"method": "moco", "dataset": "cifar10", "data": "c", "out": "o", "seed": 2})
    assert type(config.data).__name__ == "DataSettings" and config.data.path == "c"
    assert config.run.seed == 2 and config.run.workers == 0  # pretrain's own default
    with pytest.raises(ValueError, match=r"image_size \(--image-size\) must be an int from 8 to 1024"):
        PretrainConfig.from_dict({"image_size": None})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("knn_temperature", 0.0, r"knn_temperature \(--knn-temperature\) must be > 0"),
     ("knn_k", 0, r"knn_k \(--knn-k\) must be >= 1"), ("moco_momentum", 1.0, r"must be in \[0, 1\)"),
     ("workers", -1, r"workers \(--workers\) must be >= 0"), ("steps", 0, r"steps \(--steps\) must be >= 1"),
     ("seed", 2**42, r"seed \(--seed\) must be an int in \(-2\*\*42, 2\*\*42\), got 4398046511104")],
)  # fmt: skip
def test_pretrain_numbers_are_checked_before_any_work(key, value, message):
    with pytest.raises(ValueError, match=message):
        PretrainConfig.from_dict({"method": "moco", key: value})
    assert PretrainConfig.from_dict({"method": "moco", "steps": None, "eval_train": None}).steps is None


def test_a_value_outside_the_declared_choices_is_named_with_them(tmp_path):
    base = {"dataset": "npz", "data": str(tmp_path / "d.npz")}
    with pytest.raises(ValueError, match=r"schedule \(--schedule\) must be one of \('cosine', 'step'.*got 'linear'"):
        TrainConfig.from_dict({**base, "schedule": "linear"}).validate(cuda_available=False)
    with pytest.raises(ValueError, match=r"normalisation \(--normalisation\) must be None or one of .*got 'svhn'"):
        TrainConfig.from_dict({**base, "normalisation": "svhn"}).validate(cuda_available=False)
    with pytest.raises(ValueError, match=r"'vit_tiny', 'timm:<name>'\) \(a timm model as 'timm:resnet50'\), got"):
        TrainConfig.from_dict({**base, "model": "resnet50"}).validate(cuda_available=False)


def test_a_received_pretrain_config_cannot_ask_for_a_huge_queue():
    with pytest.raises(ValueError, match=r"moco_dim x queue_size must be at most 268435456 .*128 x 1073741824"):
        PretrainConfig.from_dict({"method": "moco", "queue_size": 1 << 30})
    assert PretrainConfig.from_dict({"method": "moco", "queue_size": 65536}).queue_size == 65536


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"aug": "cropmix", "cropmix_num_crops": 0}, "cropmix_num_crops (--num-crops) 0: num_crops must be"),
        ({"aug": "cropmix", "cropmix_scale": (0.9, 0.1)}, "cropmix_scale (--scale) [0.9, 0.1]: scale must"),
        ({"aug": "rrc", "rrc_scale": (2.0, 3.0)}, "rrc_scale (--rrc-scale) [2.0, 3.0]: scale must"),
    ],
)
def test_a_bad_augmentation_value_names_its_option(tmp_path, changes, said):
    from helpers import tiny_config

    with pytest.raises(ValueError) as info:
        tiny_config(tmp_path, **changes).validate(False)
    assert str(info.value).startswith(said), info.value


@pytest.mark.parametrize(
    ("method", "changes", "said", "when_made"),
    [
        (
            "moco",
            {"backbone_kwargs": {"x": 1}},
            "backbone (--backbone) 'fastnet' with backbone_kwargs (--backbone-kwargs)",
            True,
        ),
        ("mae", {"mae_kwargs": {"x": 1}}, 'mae_kwargs (--mae-kwargs) {"x": 1}: got an unexpected keyword', True),
        (
            "mae",
            {"mae_kwargs": {"dim": 63, "heads": 4}},
            'mae_kwargs (--mae-kwargs) {"dim": 63, "heads": 4}: dim',
            False,
        ),
    ],
)
def test_a_bad_pretrain_model_argument_names_its_option(tmp_path, method, changes, said, when_made):
    # A keyword the model does not take fails when the config is made, before any data is read.
    from helpers import make_npz, pretrain_config

    from cropmix.ssl.pretrain import build_ssl_model

    changes = {"backbone": "fastnet", **changes} if method == "moco" else changes
    data = make_npz(tmp_path / "d.npz")
    with pytest.raises((TypeError, ValueError)) as info:
        config = pretrain_config(tmp_path, data, method, "standard", **changes)
        assert not when_made, "the config should have been refused when made"
        build_ssl_model(config)
    assert str(info.value).startswith(said), info.value


def test_the_api_names_what_it_takes_when_given_the_wrong_kind(tmp_path):
    from cropmix.train import compare_runs, evaluate_run, train

    for cls in (TrainConfig, PretrainConfig):
        with pytest.raises(TypeError, match=rf"{cls.__name__}.from_dict values must be a dict.*got a str"):
            cls.from_dict("abc")
    with pytest.raises(TypeError, match=r"config must be a TrainConfig, got a dict: pass TrainConfig.from_dict"):
        train({"dataset": "npz"})
    with pytest.raises(TypeError, match=r"options must be an EvalOptions, got a dict: pass EvalOptions\(\*\*"):
        evaluate_run(tmp_path / "run", {"fgsm": True})
    with pytest.raises(TypeError, match=r"run_dirs must be a list of run folders, got the str 'runs/a'"):
        compare_runs("runs/a", "runs/b")
    with pytest.raises(TypeError, match="run_dirs must be a list"):
        compare_runs(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()


def test_loading_a_config_nested_too_deep_is_an_error_naming_the_file(tmp_path) -> None:
    path = tmp_path / "config.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match=f"{path} is not a config or results file: its JSON is nested too deep"):
        TrainConfig.load(path)
    path.write_text('{"epochs": ' + "9" * 5000 + "}")  # json refuses integers of over 4300 digits
    with pytest.raises(ValueError, match=f"{path} is not valid JSON: Exceeds the limit"):
        TrainConfig.load(path)


def test_a_metrics_line_holding_a_huge_integer_is_named_by_file_and_line(tmp_path) -> None:
    from cropmix.train.run_files import read_metrics

    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": ' + "9" * 5000 + "}\n")
    with pytest.raises(ValueError, match=r"metrics\.jsonl line 2 is not a JSON object"):
        read_metrics(tmp_path)


@pytest.mark.parametrize(
    "option, value, message",
    [("--threads", "0", "threads (--threads) must be an int >= 1, or unset (torch's), got 0"),
     ("--lr", "-1", "lr (--lr) must be > 0, or unset (by optimizer: sgd 0.1, adamw 0.001), got -1.0"),
     ("--max-test-images", "0", "max_test_images (--max-test-images) must be an int > 0, or unset, got 0"),
     ("--name", " ", "name (--name) must be a label that is not blank, or unset (the augmentation), got ' '")],
)  # fmt: skip
def test_a_setting_that_may_be_unset_says_so_in_the_command_lines_words(tmp_path, capsys, option, value, message):
    from cropmix.cli import main

    assert main(["train", "--dataset", "npz", "--data", "d.npz", "--out", str(tmp_path / "o"), option, value]) == 2
    error = capsys.readouterr().err
    assert message in error and "None" not in error, error


@pytest.mark.parametrize(
    "argv, option",
    [(["train", "--dataset", "npz", "--data", "d.npz", "--out", "o", "--seed", str(10**14)], "seed (--seed)"),
     (["show", "a.jpg", "--seed", str(-(2**42))], "argument --seed"),
     (["shards", "src", "out", "--shuffle-seed", str(2**64)], "argument --shuffle-seed")],
)  # fmt: skip
def test_a_seed_beyond_torchs_generators_is_named_before_any_work(tmp_path, monkeypatch, capsys, argv, option):
    """A seed of 10**14 passed torch.manual_seed, then the epoch's seed (seed x 1_000_003 + epoch) overflowed."""
    from cropmix.cli import main

    monkeypatch.chdir(tmp_path)
    try:
        code = main(argv)
    except SystemExit as done:  # argparse's own error
        code = done.code
    error = capsys.readouterr().err
    assert code == 2 and option in error and "must be an int in (-2**42, 2**42)" in error, error
    assert not any(tmp_path.iterdir())


def test_every_accepted_seed_gives_epoch_seeds_torch_takes():
    """The bound is the scheme's: seed x 1_000_003 + epoch x 1009 + rank within torch's signed 64 bits."""
    import torch

    from cropmix.train.config_parts import SEED_LIMIT

    for seed in (SEED_LIMIT - 1, 1 - SEED_LIMIT, 20240601123):
        torch.manual_seed(seed * 1_000_003 + 100_000 * 1009 + 4095)
