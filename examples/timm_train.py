"""Train a timm model with CropMix in timm's own training transform, loader-style data, optimizer and scheduler.

CropMix takes the place of timm's random-resized crop (cropmix.integrations.timm.create_transform); the
rest is timm as usual: `create_model`, `create_optimizer_v2`, `create_scheduler_v2`. The data is the
CIFAR-10 subset shipped beside this script (examples/cifar10_subset), read as PIL images.

    pip install cropmix[timm]
    python examples/timm_train.py --model resnet18 --epochs 1
    python examples/timm_train.py --auto-augment rand-m9-mstd0.5 --re-prob 0.25 --max-steps 20
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import PIL.Image
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from cropmix.data import load_npz
from cropmix.integrations.timm import create_transform
from cropmix.models import CIFAR10_MEAN, CIFAR10_STD

DEFAULT_DATA = Path(__file__).resolve().parent / "cifar10_subset" / "cifar10_subset.npz"


class PILImages(Dataset):
    """An in-memory uint8 split served as (transform(PIL image), target), as an image-folder dataset would."""

    def __init__(self, split, transform) -> None:
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int):
        image = PIL.Image.fromarray(self.split.images[index].permute(1, 2, 0).numpy())
        return self.transform(image), int(self.split.targets[index])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="an .npz file (cropmix.data.arrays format)")
    p.add_argument("--model", default="resnet18", help="a timm model name (default: resnet18)")
    p.add_argument("--preset", default="cifar", help="CropMix preset (default: cifar)")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--auto-augment", default=None, help="timm's auto_augment, e.g. rand-m9-mstd0.5")
    p.add_argument("--re-prob", type=float, default=0.0, help="timm's random erasing probability")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=None, help="stop each epoch after this many steps")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--opt", default="sgd", help="timm optimizer name (default: sgd)")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--sched", default="cosine", help="timm scheduler name (default: cosine)")
    p.add_argument("--eval-images", type=int, default=None, help="test images to evaluate on (default: all)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def make_loaders(args: argparse.Namespace) -> tuple[DataLoader, DataLoader, int]:
    """Training data through timm's transform with CropMix; test data through timm's evaluation transform."""
    train, test = load_npz(args.data, "train"), load_npz(args.data, "test")
    if args.eval_images:
        test = type(test)(test.images[: args.eval_images], test.targets[: args.eval_images], test.classes)
    common = dict(mean=CIFAR10_MEAN, std=CIFAR10_STD)
    train_tf = create_transform(
        args.image_size, cropmix=args.preset, auto_augment=args.auto_augment, re_prob=args.re_prob, **common
    )
    test_tf = create_transform(args.image_size, is_training=False, crop_pct=1.0, **common)
    options = dict(batch_size=args.batch_size, num_workers=args.workers)
    train_loader = DataLoader(PILImages(train, train_tf), shuffle=True, drop_last=True, **options)
    test_loader = DataLoader(PILImages(test, test_tf), shuffle=False, **options)
    return train_loader, test_loader, len(train.classes)


@torch.no_grad()
def accuracy(model: torch.nn.Module, loader: DataLoader) -> float:
    model.eval()
    correct = count = 0
    for images, targets in loader:
        correct += int((model(images).argmax(1) == targets).sum())
        count += len(targets)
    return 100.0 * correct / max(count, 1)


def main(argv: list[str] | None = None) -> dict:
    import timm
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2

    args = parse_args(argv)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    train_loader, test_loader, num_classes = make_loaders(args)
    model = timm.create_model(args.model, pretrained=False, num_classes=num_classes)
    optimizer = create_optimizer_v2(model, opt=args.opt, lr=args.lr, weight_decay=args.weight_decay, momentum=0.9)
    steps = min(len(train_loader), args.max_steps or len(train_loader))
    scheduler, epochs = create_scheduler_v2(
        optimizer, sched=args.sched, num_epochs=args.epochs, updates_per_epoch=steps, step_on_epochs=False
    )
    start, updates, losses = time.time(), 0, []
    images = len(train_loader.dataset)
    print(f"{args.model}: {images} training images, {num_classes} classes, {epochs} epochs of {steps} steps")
    for epoch in range(epochs):
        model.train()
        bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{epochs}", unit="step", dynamic_ncols=True)
        for step, (images, targets) in enumerate(train_loader):
            if step >= steps:
                break
            loss = F.cross_entropy(model(images), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            updates += 1
            scheduler.step_update(num_updates=updates)
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{losses[-1]:.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
            bar.update()
        bar.close()
        scheduler.step(epoch + 1)
    print("evaluating on the test split ...")
    result = {
        "model": args.model,
        "steps": updates,
        "final_loss": sum(losses[-10:]) / max(len(losses[-10:]), 1),
        "lr": optimizer.param_groups[0]["lr"],
        "test_top1": accuracy(model, test_loader),
        "seconds": time.time() - start,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
