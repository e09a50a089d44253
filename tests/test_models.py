"""Models: every name builds, gives logits and features of the right shapes, and normalises inside."""

from __future__ import annotations

import pytest
import torch
from helpers import installed

from cropmix.models import (
    CIFAR10_MEAN,
    MODEL_NAMES,
    Block,
    PatchEmbed,
    VisionTransformer,
    build_model,
    wide_resnet,
)

torch.set_num_threads(2)

NEEDS_TIMM = pytest.mark.skipif(not installed("timm"), reason="needs the optional package timm")
FAST_NAMES = ["resnet18", "preact_resnet18", "fastnet", "vit_tiny", pytest.param("timm:resnet18", marks=NEEDS_TIMM)]


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", FAST_NAMES)
def test_logits_and_features_shapes(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=10)
    x = torch.rand(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 10)
        feats = model.features(x)
        assert feats.shape == (2, model.feature_dim)
        assert isinstance(model.classifier, torch.nn.Linear)
        assert model.classifier.in_features == model.feature_dim
        assert model.classifier.out_features == 10
        # logits come from the features through the head (times fastnet's logit scale)
        torch.testing.assert_close(model(x), model.classifier(feats) * model.logit_scale, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["fastnet", "vit_tiny"])
def test_trains_end_to_end(name: str) -> None:
    model = build_model(name, num_classes=10).train()
    model(torch.rand(4, 3, 32, 32)).logsumexp(dim=1).sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_wrn28_10_builds_and_runs() -> None:
    model = build_model("wrn28_10", num_classes=100).eval()
    assert 36e6 < _count(model) < 37e6  # WRN-28-10 has 36.5M parameters
    with torch.no_grad():
        assert model(torch.rand(1, 3, 32, 32)).shape == (1, 100)
    assert model.feature_dim == 640


def test_wide_resnet_depth_and_width() -> None:
    small = wide_resnet(16, 2)
    assert small.feature_dim == 128 and len(small.layers) == 6
    with pytest.raises(ValueError, match="depth"):
        wide_resnet(27, 10)


def test_fastnet_parameter_count() -> None:
    n = _count(build_model("fastnet", num_classes=10))
    assert 0.2e6 <= n <= 0.6e6, n


def test_model_names_listed_and_unknown_name_rejected() -> None:
    assert set(FAST_NAMES[:-1]) | {"wrn28_10"} <= set(MODEL_NAMES)
    with pytest.raises(ValueError, match="resnet18.*fastnet"):
        build_model("resnet1000", num_classes=10)


@NEEDS_TIMM
def test_an_unknown_timm_model_is_rejected() -> None:
    with pytest.raises(ValueError, match="timm"):
        build_model("timm:not_a_model_xyz", num_classes=10)


@NEEDS_TIMM
def test_timm_vit_gets_img_size_and_in_channels() -> None:
    model = build_model("timm:vit_tiny_patch16_224", num_classes=5, image_size=32, in_channels=1, mean=[0.5], std=[0.5])
    with torch.no_grad():
        assert model(torch.rand(2, 1, 32, 32)).shape == (2, 5)
        assert model.features(torch.rand(2, 1, 32, 32)).shape == (2, model.feature_dim)


def test_normalisation_is_inside_the_model() -> None:
    model = build_model("fastnet", num_classes=10).eval()
    x = torch.rand(2, 3, 32, 32)
    normalised = model.normalize(x)
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    assert torch.allclose(model.normalize(mean.expand(1, 3, 4, 4)), torch.zeros(1, 3, 4, 4), atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(model.features(x), model.backbone(normalised))


def test_mean_std_length_checked() -> None:
    with pytest.raises(ValueError, match="mean"):
        build_model("fastnet", num_classes=10, in_channels=1, mean=(0.1, 0.2), std=(0.3,))


def test_grayscale_and_other_sizes() -> None:
    model = build_model("resnet18", num_classes=7, in_channels=1, mean=(0.5,), std=(0.25,)).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 1, 40, 24)).shape == (2, 7)
    vit = build_model("vit_tiny", num_classes=3, image_size=64).eval()
    with torch.no_grad():
        assert vit(torch.rand(1, 3, 64, 64)).shape == (1, 3)


def test_vit_parts_and_kept_tokens() -> None:
    torch.manual_seed(0)
    vit = VisionTransformer(img_size=32, patch_size=8, dim=32, depth=2, num_heads=2).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens = vit.forward_tokens(x)
        assert tokens.shape == (2, 1 + 16, 32)
        keep = torch.tensor([[0, 5, 9], [1, 2, 15]])
        assert vit.forward_tokens(x, keep).shape == (2, 4, 32)
        # keeping every patch in order is the full forward
        torch.testing.assert_close(vit.forward_tokens(x, torch.arange(16).expand(2, -1)), tokens)
    assert PatchEmbed(32, 4, 3, 16)(x).shape == (2, 64, 16)
    assert Block(16, 4)(torch.randn(2, 5, 16)).shape == (2, 5, 16)
    with pytest.raises(ValueError, match="must be a multiple of the patch size"):
        PatchEmbed(30, 4)


def test_mean_pool_vit() -> None:
    vit = build_model("vit_tiny", num_classes=10, pool="mean", depth=1).eval()
    with torch.no_grad():
        x = torch.rand(2, 3, 32, 32)
        tokens = vit.backbone.forward_tokens(vit.normalize(x))
        torch.testing.assert_close(vit.features(x), tokens[:, 1:].mean(dim=1))
