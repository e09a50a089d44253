"""Every command line the documentation shows runs: the `cropmix ...` lines of README.md and docs/*.md code
blocks and the examples in each subcommand's --help (JSON "e.g. '...'" values, `cropmix ...` templates).

Each one is run in this process against small data made here (a CIFAR-10 folder in torchvision's format,
an npz, image folders, CIFAR-10-C files, ImageNet-C folders), with only its paths (data/..., runs/...)
pointed at them.
Every documented line must have an entry in HANDLING, so a new example that nobody ran fails here:
  RUN     runs as written (a "..." in the docs is filled with the arguments given);
  CONFIG  a full-length recipe or long training run, or the cropmix part of a torchrun line: run with
          --print-config (the options resolve), since running it for real takes hours or 8 GPUs;
  SKIP    cannot run here at all (needs the network, say), with the reason; no line needs it today.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from helpers import make_images, make_npz, skip_if_for_want_of_package
from PIL import Image

from cropmix.cli import SUBCOMMANDS, build_parser, main

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TINY = '{"widths": [8, 16, 32, 64]}'  # fastnet's --model-kwargs example: the model every run here uses
TINY_TRAIN = ["--model", "fastnet", "--model-kwargs", TINY, "--epochs", "1", "--batch-size", "8", "--no-progress"]
TINY_MAE = '{"dim": 32, "depth": 1, "heads": 2, "decoder_dim": 16, "decoder_depth": 1, "decoder_heads": 2}'
TINY_MOCO = ["--backbone", "fastnet", "--backbone-kwargs", TINY, "--queue-size", "16", "--bn-splits", "1"]
SMALL_SSL = ["--epochs", "1", "--batch-size", "8", "--eval-train", "40", "--eval-test", "8", "--knn-k", "5"]
SMALL_SSL += ["--probe-epochs", "1", "--no-progress"]


@dataclass
class Run:
    """Run the line with its paths rewritten; `fill` replaces a "..." of the docs (or completes a --help
    example), `extra` is appended (options that shorten a long run, named where used)."""

    fill: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)


@dataclass
class Config:
    """Run the line with --print-config appended (a full-length run); `fill` as for Run."""

    why: str
    fill: list[str] = field(default_factory=list)


@dataclass
class Skip:
    """Do not run the line: `why` says what it needs that a test has not."""

    why: str


CIFAR = ["--dataset", "cifar10", "--data", "data/cifar10"]
MAE_INIT = "runs/mae/checkpoint.pt"  # as the docs name it; the workspace's own is runs/mae-init
# Appended to a run of the 5000-image example subset: a tiny model, one epoch of 64 images.
SHORTER = ["--model-kwargs", TINY, "--epochs", "1", "--max-train-images", "64", "--max-test-images", "64"]
SHORTER += ["--batch-size", "16", "--no-progress"]
# A test has neither 8 GPUs nor the cores for 8 processes: the cropmix part of a torchrun line runs in this
# process (torchrun itself, with 2 CPU processes, is run by tests/test_cli_train.py).
TORCHRUN = "8 processes (GPUs) under torchrun"
HANDLING = {
    # README.md and docs/index.md
    "cropmix recipes": Run(),
    "cropmix train --recipe cifar10-resnet18-paper-cropmix --data data/cifar10 --out runs/cm": Config(
        "300 epochs of ResNet-18"
    ),
    "cropmix eval runs/cm --corruptions --fgsm": Run(),
    "cropmix compare runs/baseline runs/cm --out runs/cmp": Run(),
    # docs/evaluation.md
    "cropmix eval runs/c10 --cifar-c data/CIFAR-10-C": Run(),
    "cropmix eval runs/in --imagenet-c data/ImageNet-C": Run(),
    "cropmix eval runs/in --data data/imagenet-r --dataset imagefolder --class-subset imagenet-r": Run(),
    "cropmix eval runs/in --data data/imagenet-a --dataset imagefolder --class-subset imagenet-a": Run(),
    "cropmix eval runs/in --data data/imagenet-sketch --dataset imagefolder": Run(),
    # docs/shards.md
    "cropmix shards /data/imagenet /data/imagenet-shards --shard-size 1000": Run(),
    "cropmix train --dataset webdataset --data /data/imagenet-shards --out runs/in1k-cropmix --model timm:resnet50 "
    "--aug cropmix --preset imagenet --image-size 224 --epochs 100 --batch-size 256 --workers 8": Config(
        "100 epochs of a ResNet-50 at 224 px"
    ),
    "torchrun --standalone --nproc_per_node 8 -m cropmix train --dataset webdataset --data /data/imagenet-shards "
    "--out runs/in1k-cropmix-8gpu --model timm:resnet50 --aug cropmix --preset imagenet --image-size 224 "
    "--epochs 100 --batch-size 128 --workers 6": Config(TORCHRUN),
    # docs/ssl.md
    "cropmix pretrain --method moco --aug cropmix --dataset cifar10 --data PATH --epochs 200 --out runs/moco": Config(
        "200 epochs of MoCo v2"
    ),
    "cropmix pretrain --method mae --aug mae-mixup --subset 0.1 ...": Run(
        fill=[
            *CIFAR,
            "--out",
            "runs/mae",
            "--mae-kwargs",
            TINY_MAE,
            "--image-size",
            "32",
            *SMALL_SSL,
            "--batch-size",
            "4",
        ]
    ),
    "cropmix pretrain --eval-only runs/moco/checkpoint.pt ...": Run(),
    "cropmix train ... --init runs/moco/checkpoint.pt": Run(fill=[*CIFAR, "--out", "runs/ft", *TINY_TRAIN]),
    "torchrun --nproc_per_node N -m cropmix pretrain ... --device cuda": Config(
        TORCHRUN, fill=["--method", "moco", *CIFAR, "--out", "runs/moco-ddp"]
    ),
    # docs/training.md
    "cropmix train --dataset cifar10 --data PATH --model resnet18 --aug cropmix --preset cifar --epochs 30 "
    "--out runs/a": Config("30 epochs of ResNet-18"),
    "cropmix eval runs/a --corruptions --fgsm": Run(),
    "cropmix compare runs/a runs/b --out runs/cmp": Run(),
    "torchrun --nproc_per_node 8 -m cropmix train ...": Config(TORCHRUN, fill=[*CIFAR, "--out", "runs/ddp"]),
    "cropmix train --recipe mae-finetune --init runs/mae/checkpoint.pt --data /imagenet --out runs/ft": Config(
        "100 epochs of a ViT-B/16 on ImageNet"
    ),
    "cropmix train --recipe cifar10-resnet18-paper-cropmix --data data/cifar10 --out runs/cm --epochs 30 "
    "--milestones 10 20": Config("30 epochs of ResNet-18"),
    # docs/integrations.md
    "cropmix train --dataset npz --data examples/cifar10_subset/cifar10_subset.npz --model fastnet --aug cropmix "
    "--out runs/tb --log tensorboard": Run(extra=SHORTER),
    "cropmix train --dataset hf --data PATH_OR_NAME --hf-image-key img --hf-label-key label --out runs/hf "
    "--model resnet18 --aug cropmix --preset cifar --image-size 32": Config("30 epochs of ResNet-18"),
    # --help examples
    f"cropmix train --model-kwargs '{TINY}' --model fastnet": Run(
        fill=[*CIFAR, "--out", "runs/kwargs", *TINY_TRAIN[4:]]
    ),
    'cropmix train --timm-aug \'{"auto_augment": "rand-m9-mstd0.5"}\'': Run(
        fill=[*CIFAR, "--out", "runs/timm-aug", "--aug", "cropmix", *TINY_TRAIN]
    ),
    'cropmix pretrain --mae-kwargs \'{"dim": 128, "depth": 4, "heads": 4}\'': Run(
        fill=["--method", "mae", *CIFAR, "--out", "runs/mae-kwargs", "--image-size", "32", "--steps", "2"]
        + SMALL_SSL[2:]
    ),
    "cropmix train --recipe NAME --data ... --out ...": Config("every recipe is a full-length run; each is checked"),
}


def _strip_comment(line: str) -> str:
    return re.split(r"\s+#\s", line, maxsplit=1)[0].strip()


def doc_lines() -> dict[str, str]:
    """The `cropmix` command lines of the docs' code blocks (continuations joined, comments cut) -> file."""
    found: dict[str, str] = {}
    for path in DOC_FILES:
        lines, inside, i = path.read_text().splitlines(), False, 0
        while i < len(lines):
            line = lines[i]
            if line.lstrip().startswith("```"):
                inside = not inside
            elif inside and re.match(r"^(cropmix|torchrun\s.*-m cropmix)\s", line.strip()):
                while line.rstrip().endswith("\\") and i + 1 < len(lines):
                    i += 1
                    line = line.rstrip()[:-1] + " " + lines[i].strip()
                found.setdefault(" ".join(_strip_comment(line).split()), path.name)
            i += 1
        # Inline commands: those with a run folder; the others are synopses (`cropmix compare RUN... [--out DIR]`).
        for span in re.findall(r"`(cropmix \w+ [^`]*)`", path.read_text()):
            if ("--out " in span or " runs/" in span) and "[" not in span:
                found.setdefault(" ".join(span.split()), path.name)
    return found


def help_examples() -> dict[str, str]:
    """Each subcommand's --help examples as command lines: "cropmix CMD --option 'VALUE'" for an option whose
    help says e.g. 'VALUE', and the `cropmix ...` templates (with an option) of its description."""
    found: dict[str, str] = {}
    for name in SUBCOMMANDS:
        parser = build_parser([name])
        sub = next(a for a in parser._actions if a.dest == "command").choices[name]
        for action in sub._actions:
            for value, also in re.findall(r"e\.g\. '([^']+)'(?: with (--[\w-]+ \S+))?", action.help or ""):
                line = f"cropmix {name} {action.option_strings[-1]} '{value}' {also}"
                found[line.strip()] = f"cropmix {name} --help"
        for text in (sub.description or "", sub.epilog or ""):
            for template in re.findall(r"`(cropmix \w+ [^`]*--[^`]*)`", text):
                found[" ".join(template.split())] = f"cropmix {name} --help"
    return found


def _cifar_folder(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A CIFAR-10 folder in torchvision's format (40 train, 8 test images), its md5 sums made the expected ones."""
    from torchvision import datasets

    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    images, targets = make_images(48, size=32, classes=10)
    flat = images.transpose(0, 3, 1, 2).reshape(48, -1)
    md5 = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        entry = {"data": flat[8 * i : 8 * i + 8], "labels": targets[8 * i : 8 * i + 8].tolist()}
        (base / name).write_bytes(pickle.dumps(entry))
        md5[name] = hashlib.md5((base / name).read_bytes()).hexdigest()
    (base / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"class{i}" for i in range(10)]}))
    monkeypatch.setattr(
        datasets.CIFAR10, "train_list", [[f"data_batch_{k}", md5[f"data_batch_{k}"]] for k in range(1, 6)]
    )
    monkeypatch.setattr(datasets.CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    meta_md5 = hashlib.md5((base / "batches.meta").read_bytes()).hexdigest()
    monkeypatch.setattr(datasets.CIFAR10, "meta", {**datasets.CIFAR10.meta, "md5": meta_md5})
    return root


def _class_folder(root: Path, classes: list[str], per_class: int = 2, size: int = 16) -> Path:
    images, targets = make_images(per_class * len(classes), size, classes=len(classes))
    for i, (image, target) in enumerate(zip(images, targets, strict=True)):
        folder = root / classes[target]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i}.png")
    return root


def _cifar_c(root: Path, n: int = 8) -> Path:
    from cropmix.evaluate.corruptions import CORRUPTIONS

    root.mkdir(parents=True)
    images, targets = make_images(5 * n, size=32, classes=10)
    for name in CORRUPTIONS:
        np.save(root / f"{name}.npy", images)
    np.save(root / "labels.npy", np.tile(targets[:n], 5))
    return root


def _wnid_npz(path: Path) -> Path:
    """An npz whose 1000 classes are ImageNet's wnids, so a run on it can score ImageNet-R/-A folders."""
    from cropmix.evaluate.ood import wnids

    make_npz(path, n_train=1000, n_test=100, size=16, classes=1000)
    with np.load(path) as data:
        arrays = dict(data)
    arrays["classes"] = np.array(wnids("imagenet"))
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Data for every documented path, and the runs the eval/compare/--init lines read."""
    ws = tmp_path_factory.mktemp("documented")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(ws)
        cifar = _cifar_folder(ws / "data" / "cifar10", monkeypatch)
        from cropmix.evaluate.ood import wnids

        _class_folder(ws / "data" / "imagenet-r", wnids("imagenet-r")[:2])
        _class_folder(ws / "data" / "imagenet-a", wnids("imagenet-a")[:2])
        _class_folder(ws / "data" / "imagenet-sketch", wnids("imagenet")[:2])
        _cifar_c(ws / "data" / "CIFAR-10-C")
        for corruption in ("gaussian_noise", "fog"):  # two of the 15, at one severity
            _class_folder(ws / "data" / "ImageNet-C" / corruption / "3", wnids("imagenet")[:2])
        for split in ("train", "val"):
            _class_folder(ws / "imagenet" / split, ["n01440764", "n01443537"], per_class=3)
        from cropmix.data.shards import write_shards

        write_shards(ws / "imagenet", ws / "imagenet-shards", progress=False)
        data = ["--dataset", "cifar10", "--data", str(cifar)]
        for name, aug in (("cm", "cropmix"), ("baseline", "baseline")):
            assert main(["train", *data, "--out", f"runs/{name}", "--aug", aug, *TINY_TRAIN]) == 0
        for copy, original in (("a", "cm"), ("b", "baseline"), ("c10", "baseline")):
            shutil.copytree(ws / "runs" / original, ws / "runs" / copy)
        wnid_data = ["--dataset", "npz", "--data", str(_wnid_npz(ws / "wnids.npz"))]
        assert main(["train", *wnid_data, "--out", "runs/in", *TINY_TRAIN, "--batch-size", "100"]) == 0
        moco = ["pretrain", "--method", "moco", *data, "--out", "runs/moco", *TINY_MOCO, *SMALL_SSL]
        assert main(moco) == 0
        # What the documented fine-tuning line initialises from, made here (not by the documented MAE line, which
        # would make that test depend on another having run first).
        mae = ["pretrain", "--method", "mae", *data, "--out", "runs/mae-init", "--mae-kwargs", TINY_MAE]
        assert main([*mae, "--image-size", "32", *SMALL_SSL, "--batch-size", "4"]) == 0
        yield ws


def _argv(ws: Path, line: str, fill: list[str]) -> list[str]:
    """The documented line as main()'s argv: "..." filled, the documented paths pointed at the workspace."""
    words = shlex.split(line)
    words = words[words.index("cropmix") + 1 :] if "cropmix" in words else words
    shards = "imagenet-shards-doc" if words[0] == "shards" else "imagenet-shards"  # a new folder to write
    paths = {"PATH": "data/cifar10", "/data/imagenet-shards": str(ws / shards), MAE_INIT: "runs/mae-init/checkpoint.pt"}
    paths |= dict.fromkeys(("/data/imagenet", "/imagenet"), str(ws / "imagenet"))
    out = []
    for word in words:
        out += fill if word == "..." else [paths.get(word, word)]
    out += [] if "..." in words else fill  # a --help example: the rest of a command line around it
    out = [str(ROOT / w) if w.startswith("examples/") else w for w in out]  # the repository's own example data
    return [str(ws / w) if re.match(r"^(data|runs)/", w) else w for w in out]


def test_every_documented_line_is_handled() -> None:
    documented = {**doc_lines(), **help_examples()}
    missing = sorted(set(documented) - set(HANDLING))
    assert not missing, f"documented command lines this test does not run or skip: {missing}"
    stale = sorted(set(HANDLING) - set(documented))
    assert not stale, f"lines no longer documented: {stale}"


def _recipe_argvs(ws: Path) -> list[list[str]]:
    from cropmix.recipes import load_recipe, recipe_names

    argvs = []
    for name in recipe_names():
        kind = load_recipe(name).command
        data = ["--data", str(ws / "data" / "cifar10")]
        argvs.append([kind, "--recipe", name, *data, "--out", str(ws / "runs" / name), "--print-config"])
    return argvs


@pytest.mark.parametrize("line", sorted(HANDLING))
def test_documented_line_runs(line, workspace, capsys, monkeypatch) -> None:
    handling = HANDLING[line]
    if isinstance(handling, Skip):
        pytest.skip(handling.why)
    monkeypatch.chdir(workspace)
    if line.startswith("cropmix train --recipe NAME"):
        argvs = _recipe_argvs(workspace)
    else:
        argv = _argv(workspace, line, handling.fill)
        argvs = [argv + ["--print-config"] if isinstance(handling, Config) else argv + getattr(handling, "extra", [])]
    for argv in argvs:
        code = main(argv)
        captured = capsys.readouterr()
        if code != 0:
            skip_if_for_want_of_package(captured.err)
        assert code == 0, f"{' '.join(argv)} failed: {captured.err[-2000:]}"
        if "--print-config" in argv:
            json.loads(captured.out)
