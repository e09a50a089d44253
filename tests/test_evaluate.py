"""Evaluation: accuracy and calibration by hand, reliability PNG, FGSM, corruptions, the one-call summary."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cropmix.evaluate import (
    CORRUPTIONS,
    ClassifierEval,
    CorruptionOptions,
    calibration_errors,
    corruption_accuracy,
    evaluate_classifier,
    fgsm_accuracy,
    predict,
    save_reliability_diagram,
    topk_accuracy,
)

torch.set_num_threads(2)


# ---------------------------------------------------------------- accuracy and calibration


def test_topk_on_a_hand_example() -> None:
    logits = torch.tensor(
        [
            [0.1, 0.5, 0.2, 0.0, 0.0, 0.0],  # target 1: top-1 hit
            [0.9, 0.1, 0.8, 0.7, 0.6, 0.5],  # target 2: second, top-5 hit
            [0.9, 0.8, 0.7, 0.6, 0.5, 0.0],  # target 5: last, miss both
            [0.0, 0.1, 0.2, 0.3, 0.4, 0.5],  # target 1: fifth, top-5 hit
        ]
    )
    targets = torch.tensor([1, 2, 5, 1])
    assert topk_accuracy(logits, targets) == {"top1": 25.0, "top5": 75.0}
    assert topk_accuracy(logits[:, :3], torch.tensor([1, 2, 0, 1]), ks=(1, 5)) == {"top1": 50.0}
    assert topk_accuracy(logits[:3], targets[:3], ks=(1,))["top1"] == pytest.approx(100 / 3, rel=1e-12)  # not float32
    with pytest.raises(ValueError, match="logits"):
        topk_accuracy(logits, targets[:2])


def test_ece_near_zero_when_perfectly_calibrated() -> None:
    g = torch.Generator().manual_seed(0)
    n = 200_000
    conf = 0.5 + 0.5 * torch.rand(n, generator=g)  # binary task, confidence in [0.5, 1]
    predicted = torch.randint(0, 2, (n,), generator=g)
    correct = torch.rand(n, generator=g) < conf  # correct with probability = confidence
    targets = torch.where(correct, predicted, 1 - predicted)
    probs = torch.stack([torch.where(predicted == 0, conf, 1 - conf), torch.where(predicted == 1, conf, 1 - conf)], 1)
    errors = calibration_errors(probs, targets)
    assert errors["ece"] < 0.6 and errors["rms_equal_width"] < 0.8  # sampling error only
    assert errors["rms"] < 6  # bins of 100: sampling noise of about sqrt(p (1 - p) / 100) per bin
    # the same predictions made overconfident are clearly miscalibrated
    sharp = F.softmax(3 * probs.log(), dim=1)
    assert calibration_errors(sharp, targets)["ece"] > 5


def test_ece_and_rms_by_hand_two_bins() -> None:
    # 2 bins: (0, 0.5] and (0.5, 1]. 3-class probs so that a max of 0.4 is possible.
    probs = torch.tensor(
        [
            [0.4, 0.3, 0.3],  # bin 0, conf 0.4, correct
            [0.4, 0.35, 0.25],  # bin 0, conf 0.4, wrong
            [0.9, 0.05, 0.05],  # bin 1, conf 0.9, correct
            [0.9, 0.05, 0.05],  # bin 1, conf 0.9, wrong
            [0.05, 0.9, 0.05],  # bin 1, conf 0.9, wrong
            [0.1, 0.1, 0.8],  # bin 1, conf 0.8, correct
        ]
    )
    targets = torch.tensor([0, 2, 0, 1, 0, 2])
    # bin 0: acc 1/2, conf 0.4 -> gap 0.1, weight 2/6; bin 1: acc 2/4, conf 0.875 -> gap 0.375, weight 4/6
    ece = 2 / 6 * 0.1 + 4 / 6 * 0.375
    rms = math.sqrt(2 / 6 * 0.1**2 + 4 / 6 * 0.375**2)
    errors = calibration_errors(probs, targets, n_bins=2)
    assert errors["ece"] == pytest.approx(100 * ece)
    assert errors["rms_equal_width"] == pytest.approx(100 * rms)
    assert errors["rms"] is None  # the paper's RMS needs 200 predictions (bins of 100, the last one unscored)
    with pytest.raises(ValueError, match="n_bins"):
        calibration_errors(probs, targets, n_bins=0)
    with pytest.raises(ValueError, match="logits"):
        calibration_errors(probs * 5, targets)


def test_mass_binning_puts_equal_counts_in_each_bin() -> None:
    from cropmix.evaluate import calibration_bins

    g = torch.Generator().manual_seed(0)
    probs = F.softmax(torch.randn(1000, 4, generator=g), dim=1)
    targets = torch.randint(0, 4, (1000,), generator=g)
    bins = calibration_bins(probs, targets, n_bins=10, binning="mass")
    assert bins.counts.tolist() == [100.0] * 10
    assert bool((bins.confidence[1:] >= bins.confidence[:-1]).all())
    errors = calibration_errors(probs, targets, n_bins=10, binning="mass")
    assert errors["rms_equal_mass"] >= errors["ece"] >= 0  # RMS >= mean absolute gap (Jensen)


def test_reliability_diagram_writes_png(tmp_path) -> None:
    g = torch.Generator().manual_seed(0)
    probs = F.softmax(2 * torch.randn(500, 10, generator=g), dim=1)
    targets = torch.randint(0, 10, (500,), generator=g)
    path = save_reliability_diagram(probs, targets, tmp_path / "sub" / "rel.png", title="test")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    from PIL import Image

    with Image.open(path) as image:
        assert image.size[0] > 300 and image.size[1] > 300


# ---------------------------------------------------------------- models on synthetic data


class Linear(nn.Module):
    """A linear classifier on flattened pixels in [0, 1]."""

    def __init__(self, shape=(1, 4, 4), num_classes: int = 2) -> None:
        super().__init__()
        self.fc = nn.Linear(math.prod(shape), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def _separable_data(n: int = 512, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes of 1x4x4 images: class 1 brighter in the left half, with a margin of ~0.1 per pixel."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = 0.5 + 0.1 * torch.randn(n, 1, 4, 4, generator=g)
    x[:, :, :, :2] += torch.where(y == 1, 0.12, -0.12).view(-1, 1, 1, 1)
    return x.clamp(0, 1), y


@pytest.fixture(scope="module")
def trained_linear() -> tuple[nn.Module, DataLoader]:
    torch.manual_seed(0)
    x, y = _separable_data()
    model = Linear()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    test_x, test_y = _separable_data(seed=1)
    return model, DataLoader(TensorDataset(test_x, test_y), batch_size=100)


def test_predict_returns_cpu_logits_and_restores_mode(trained_linear) -> None:
    model, loader = trained_linear
    model.train()
    logits, targets = predict(model, loader, "cpu", progress=False)
    assert logits.shape == (512, 2) and logits.dtype == torch.float32 and targets.shape == (512,)
    assert model.training
    assert topk_accuracy(logits, targets, ks=(1,))["top1"] > 90


def test_predict_converts_uint8() -> None:
    images = torch.randint(0, 256, (6, 1, 4, 4), dtype=torch.uint8)
    model = Linear()
    loader = DataLoader(TensorDataset(images, torch.zeros(6, dtype=torch.long)), batch_size=4)
    logits, _ = predict(model, loader, "cpu", progress=False)
    with torch.no_grad():
        torch.testing.assert_close(logits, model(images.float() / 255))


def test_fgsm_zero_eps_is_clean_and_accuracy_drops_with_eps(trained_linear) -> None:
    model, loader = trained_linear
    logits, targets = predict(model, loader, "cpu", progress=False)
    clean = topk_accuracy(logits, targets, ks=(1,))["top1"]
    assert fgsm_accuracy(model, loader, "cpu", eps=0.0, progress=False) == pytest.approx(clean)
    accs = [fgsm_accuracy(model, loader, "cpu", eps=e, progress=False) for e in (0.02, 0.05, 0.1)]
    assert clean >= accs[0] >= accs[1] >= accs[2]
    assert accs[2] < clean - 30
    with pytest.raises(ValueError, match="eps"):
        fgsm_accuracy(model, loader, "cpu", eps=-1.0)


# ---------------------------------------------------------------- corruptions


def _test_images() -> torch.Tensor:
    """Smooth structure plus a little texture, like small natural images."""
    g = torch.Generator().manual_seed(0)
    smooth = F.interpolate(torch.rand(8, 3, 8, 8, generator=g), size=32, mode="bilinear", align_corners=False)
    return (0.9 * smooth + 0.1 * torch.rand(8, 3, 32, 32, generator=g)).clamp(0, 1)


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corruption_shape_range_determinism_and_severity(name: str) -> None:
    fn = CORRUPTIONS[name]
    x = _test_images()
    changes = []
    for severity in range(1, 6):
        out = fn(x, severity, torch.Generator().manual_seed(3))
        again = fn(x, severity, torch.Generator().manual_seed(3))
        assert out.shape == x.shape and out.dtype == x.dtype
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
        assert torch.equal(out, again)
        changes.append(float((out - x).abs().mean()))
    assert changes[0] > 1e-3, "severity 1 must change the images"
    # the reference's elastic transform (large affine jitter at severity 1) and frost (the image weight falls
    # as the frost weight rises) are not monotone in the mean change; all others are stronger at severity 5
    if name not in ("elastic_transform", "frost"):
        assert changes[-1] > changes[0], changes
    with pytest.raises(ValueError, match="severity"):
        fn(x, 6, None)


def test_the_fifteen_standard_corruptions_in_reference_order() -> None:
    assert list(CORRUPTIONS) == [
        "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
        "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
    ]  # fmt: skip


def test_constants_follow_the_image_size() -> None:
    from cropmix.evaluate.corruptions import severity_constants

    small, large = torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 224, 224)
    assert severity_constants("gaussian_noise", small, 5) == 0.10  # CIFAR-10-C
    assert severity_constants("gaussian_noise", large, 5) == 0.38  # ImageNet-C
    assert severity_constants("gaussian_noise", small, 5, table="imagenet") == 0.38
    # np.arange as the reference calls it: float rounding makes arange(1, 1.06, 0.01) 7 long, not 6
    assert len(severity_constants("zoom_blur", small, 1)) == 7 and len(severity_constants("zoom_blur", large, 5)) == 11
    with pytest.raises(ValueError, match="table"):
        severity_constants("contrast", small, 1, table="tiny")
    # the constants reach the output: contrast at 32 px (0.75) keeps more than at 224 px with the ImageNet table
    x = _test_images()
    cifar = CORRUPTIONS["contrast"](x, 1)
    imagenet = CORRUPTIONS["contrast"](x, 1, table="imagenet")
    assert float((cifar - x).abs().mean()) < float((imagenet - x).abs().mean())


def test_corruptions_work_on_one_channel_and_tiny_images() -> None:
    x = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    for name, fn in CORRUPTIONS.items():
        out = fn(x, 5, torch.Generator().manual_seed(0))
        assert out.shape == x.shape and bool(torch.isfinite(out).all()), name


def _local_shuffle_one_move_at_a_time(images: torch.Tensor, delta: int, iterations: int, offsets) -> torch.Tensor:
    """The reference glass blur's pixel moves written as it runs them: pixel by pixel, in order."""
    out = images.clone()
    b, _, h, w = images.shape
    for it in range(iterations):
        k = 0
        for y in range(h - delta, delta, -1):
            for x in range(w - delta, delta, -1):
                for i in range(b):
                    dx, dy = offsets[it, k, i].tolist()
                    out[i, :, y, x] = out[i, :, y + dy, x + dx]
                k += 1
    return out


@pytest.mark.parametrize(
    "shape, delta, iterations", [((2, 3, 12, 11), 1, 2), ((3, 1, 14, 16), 2, 3), ((1, 3, 4, 4), 2, 1)]
)
def test_local_shuffle_matches_the_moves_one_at_a_time(shape, delta, iterations) -> None:
    """Resolving the sequential moves by chains of already-moved partners gives what moving pixel by
    pixel gives (the last case has no position to move)."""
    from cropmix.evaluate import corruption_ops as ops

    b, _, h, w = shape
    g = torch.Generator().manual_seed(sum(shape) + delta)
    images = torch.rand(shape, generator=g)
    positions = max(0, h - 2 * delta) * max(0, w - 2 * delta)
    offsets = torch.randint(-delta, delta, (iterations, positions, b, 2), generator=g)
    expected = _local_shuffle_one_move_at_a_time(images, delta, iterations, offsets)
    assert torch.equal(ops.local_shuffle(images, delta, iterations, offsets), expected)


def test_random_corruptions_depend_on_the_seed() -> None:
    x = _test_images()
    random_ones = ("gaussian_noise", "shot_noise", "impulse_noise", "glass_blur", "motion_blur", "snow", "frost")
    for name in random_ones + ("fog", "elastic_transform"):
        a = CORRUPTIONS[name](x, 3, torch.Generator().manual_seed(0))
        b = CORRUPTIONS[name](x, 3, torch.Generator().manual_seed(1))
        assert not torch.equal(a, b), name


def test_corruption_accuracy_summary(trained_linear) -> None:
    model, loader = trained_linear
    names = ["gaussian_noise", "contrast"]
    options = CorruptionOptions(tuple(names), (1, 5))
    result = corruption_accuracy(model, loader, "cpu", options, max_images=250, progress=False)
    assert set(result["per_severity"]) == set(names) and all(len(v) == 2 for v in result["per_severity"].values())
    for name in names:
        assert result["per_corruption"][name] == pytest.approx(sum(result["per_severity"][name]) / 2)
    assert result["mean"] == pytest.approx(sum(result["per_corruption"].values()) / 2)
    # heavy noise hurts this pixel-level classifier more than light noise
    assert result["per_severity"]["gaussian_noise"][1] <= result["per_severity"]["gaussian_noise"][0]
    again = corruption_accuracy(model, loader, "cpu", options, max_images=250, progress=False)
    assert again == result
    with pytest.raises(ValueError, match="corruptions"):
        corruption_accuracy(model, loader, "cpu", CorruptionOptions(("nope",)))
    with pytest.raises(ValueError, match=r"severities must be a non-empty sequence of ints in 1..5, got \[0\]"):
        CorruptionOptions(severities=(0,))


def test_evaluate_classifier_all_metrics(trained_linear, tmp_path) -> None:
    model, loader = trained_linear
    png = tmp_path / "rel.png"
    few = DataLoader(TensorDataset(*next(iter(loader))), batch_size=50)  # the first 100 images
    options = ClassifierEval(fgsm=True, corruptions=CorruptionOptions(), progress=False)
    result = evaluate_classifier(model, loader, "cpu", options, reliability_png=png, corruption_loader=few)
    assert png.exists()
    assert {"top1", "ece", "rms", "fgsm_top1", "corruption_mean", "corruption"} <= set(result)
    assert "top5" not in result  # two classes only
    assert 0 <= result["fgsm_top1"] <= result["top1"] <= 100
    assert result["corruption"]["mean"] == result["corruption_mean"]
    assert set(result["corruption"]["per_corruption"]) == set(CORRUPTIONS)
    # the corruption pass scored `few`, not `loader`
    assert result["corruption"] == corruption_accuracy(model, few, "cpu", progress=False)


def test_progress_false_draws_no_bar_and_true_does(trained_linear, capfd) -> None:
    # training turns off the final predict bar with progress=False
    model, loader = trained_linear
    evaluate_classifier(model, loader, "cpu", ClassifierEval(fgsm=True, progress=False))
    assert capfd.readouterr().err == ""
    predict(model, loader, "cpu", progress=True)
    assert "predict" in capfd.readouterr().err
