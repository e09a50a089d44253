"""Models for cropmix: CIFAR ResNets, a small fast net, a small ViT and any timm model.

Every model takes float images in [0, 1] (B, C, H, W), normalises inside, and exposes
`features(x)`, `classifier` and `feature_dim`.
"""

from .classifier import Classifier
from .fastnet import FastNet
from .normalize import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Normalize,
)
from .registry import MODEL_NAMES, build_model
from .resnet import CifarResNet, preact_resnet18, resnet18, wide_resnet
from .timm_bridge import TimmBackbone
from .vit import Attention, Block, PatchEmbed, VisionTransformer, sincos_pos_embed_2d, vit_tiny

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MODEL_NAMES",
    "Attention",
    "Block",
    "CifarResNet",
    "Classifier",
    "FastNet",
    "Normalize",
    "PatchEmbed",
    "TimmBackbone",
    "VisionTransformer",
    "build_model",
    "preact_resnet18",
    "resnet18",
    "sincos_pos_embed_2d",
    "vit_tiny",
    "wide_resnet",
]
