"""The paper's RMS calibration error (bins of 100 examples, as Hendrycks et al.'s reference computes it),
and the CIFAR-C mean over the 15 standard corruptions only."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import CIFAR_C_EXTRAS, MeanColour, fake_cifar_c

from cropmix.evaluate import calibration_errors
from cropmix.evaluate.cifar_c import cifar_c_accuracy
from cropmix.evaluate.corruptions import CORRUPTIONS
from cropmix.evaluate.metrics import rms_calibration_error


def reference_rms(confidence: np.ndarray, correct: np.ndarray, beta: int = 100) -> float:
    """A plain re-statement of the reference: sorted bins of beta, the remainder in the last bin, which the
    loop then leaves out; weights n_b / N; square root of the sum."""
    order = np.argsort(confidence, kind="stable")
    confidence, correct = confidence[order], correct[order]
    bins = [[i * beta, (i + 1) * beta] for i in range(len(confidence) // beta)]
    bins[-1][1] = len(confidence)
    total = 0.0
    for lo, hi in bins[:-1]:
        gap = abs(confidence[lo:hi].mean() - correct[lo:hi].mean())
        total += (hi - lo) / len(confidence) * gap**2
    return math.sqrt(total)


def overconfident(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, 10, generator=g)
    targets = torch.where(
        torch.rand(n, generator=g) < 0.7, logits.argmax(dim=1), torch.randint(0, 10, (n,), generator=g)
    )
    return F.softmax(4 * logits, dim=1), targets


@pytest.mark.parametrize("n", [10_000, 10_057])
def test_rms_is_the_reference_calib_err(n: int) -> None:
    probs, targets = overconfident(n)
    confidence, predicted = probs.double().max(dim=1)
    expected = 100 * reference_rms(confidence.numpy(), (predicted == targets).double().numpy())
    errors = calibration_errors(probs, targets)
    assert errors["rms"] == pytest.approx(expected, abs=1e-6)
    # the 15 equal-width bins give another figure, kept under its own name
    assert abs(errors["rms_equal_width"] - errors["rms"]) > 0.05


def test_rms_leaves_out_the_last_bin_and_needs_two_bins() -> None:
    # 300 predictions: bins [0,100), [100,200), [200,300); the last (most confident) is not scored
    confidence = torch.cat([torch.full((100,), 0.5), torch.full((100,), 0.6), torch.full((100,), 0.99)])
    correct = torch.cat([torch.ones(100), torch.ones(100), torch.zeros(100)])
    expected = 100 * math.sqrt(100 / 300 * 0.5**2 + 100 / 300 * 0.4**2)
    assert rms_calibration_error(confidence, correct) == pytest.approx(expected)
    assert rms_calibration_error(confidence[:199], correct[:199]) is None
    with pytest.raises(ValueError, match="bin_size"):
        rms_calibration_error(confidence, correct, bin_size=0)


def test_cifar_c_mean_is_over_the_15_standard_corruptions(tmp_path) -> None:
    fake_cifar_c(tmp_path, 0)
    summary = cifar_c_accuracy(MeanColour(), tmp_path, "cpu", progress=False)
    assert summary["mean"] == pytest.approx(100.0)
    assert set(summary["per_corruption"]) == set(CORRUPTIONS) and summary["missing"] == []
    assert set(summary["extras"]["per_corruption"]) == set(CIFAR_C_EXTRAS)
    assert summary["extras"]["mean"] == pytest.approx(50.0)


def test_cifar_c_negative_labels_are_refused_naming_the_file(tmp_path) -> None:
    fake_cifar_c(tmp_path, 0)
    np.save(tmp_path / "labels.npy", np.tile(np.array([0, -1, 0, 1]), 5))
    with pytest.raises(ValueError, match=r"labels\.npy.*negative"):
        cifar_c_accuracy(MeanColour(), tmp_path, "cpu", progress=False)


def test_plots_replace_a_planted_link_instead_of_writing_through_it(tmp_path) -> None:
    from cropmix.evaluate.reliability import save_reliability_diagram
    from cropmix.viz.curves import save_training_curves

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    probs, targets = overconfident(300)
    for name in ("reliability.png", "curves.png"):
        (tmp_path / name).symlink_to(victim)
    save_reliability_diagram(probs, targets, tmp_path / "reliability.png")
    rows = [{"epoch": 1, "train_loss": 1.0, "test_top1": 50.0, "lr": 0.1}]
    save_training_curves(rows, tmp_path / "curves.png")
    assert victim.read_text() == "keep me"
    for name in ("reliability.png", "curves.png"):
        assert not (tmp_path / name).is_symlink()
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
