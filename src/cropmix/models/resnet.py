"""CIFAR ResNets as backbones returning pooled features: ResNet-18, PreAct ResNet-18, WideResNet.

All use a 3x3 stem without max-pool, as is usual for 32x32 inputs (He et al. 2016;
Zagoruyko & Komodakis 2016). Each backbone has a `feature_dim` attribute.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Post-activation residual block: conv-BN-ReLU-conv-BN, plus (projected) shortcut, then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = _conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class PreActBlock(nn.Module):
    """Pre-activation residual block: BN-ReLU-conv-BN-ReLU-(dropout)-conv, plus shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = _conv3x3(cin, cout, stride)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = _conv3x3(cout, cout)
        self.drop_rate = drop_rate
        self.shortcut: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = F.relu(self.bn2(out))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        return self.conv2(out) + shortcut


class CifarResNet(nn.Module):
    """ResNet for small images: 3x3 stem, stages of residual blocks, global average pooling.

    `preact=True` uses pre-activation blocks and ends with BN-ReLU before pooling.
    """

    def __init__(
        self,
        blocks: Sequence[int] = (2, 2, 2, 2),
        widths: Sequence[int] = (64, 128, 256, 512),
        *,
        stem_width: int | None = None,
        in_channels: int = 3,
        preact: bool = False,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if len(blocks) != len(widths) or not blocks:
            raise ValueError(f"blocks and widths must be non-empty and of equal length, got {blocks!r}, {widths!r}")
        stem_width = widths[0] if stem_width is None else stem_width
        self.preact = preact
        self.stem = _conv3x3(in_channels, stem_width)
        self.stem_bn = None if preact else nn.BatchNorm2d(stem_width)
        layers: list[nn.Module] = []
        cin = stem_width
        for i, (n, width) in enumerate(zip(blocks, widths, strict=True)):
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                if preact:
                    layers.append(PreActBlock(cin, width, stride, drop_rate))
                else:
                    layers.append(BasicBlock(cin, width, stride))
                cin = width
        self.layers = nn.Sequential(*layers)
        self.final_bn = nn.BatchNorm2d(cin) if preact else None
        self.feature_dim = cin
        _init_conv_bn(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        if self.stem_bn is not None:
            x = F.relu(self.stem_bn(x))
        x = self.layers(x)
        if self.final_bn is not None:
            x = F.relu(self.final_bn(x))
        return x.mean(dim=(2, 3))


def _init_conv_bn(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def resnet18(in_channels: int = 3) -> CifarResNet:
    """CIFAR ResNet-18: BasicBlocks [2, 2, 2, 2], widths 64..512, 512-d features."""
    return CifarResNet((2, 2, 2, 2), (64, 128, 256, 512), in_channels=in_channels)


def preact_resnet18(in_channels: int = 3) -> CifarResNet:
    """PreAct ResNet-18 for CIFAR (He et al. 2016, identity mappings), 512-d features."""
    return CifarResNet((2, 2, 2, 2), (64, 128, 256, 512), in_channels=in_channels, preact=True)


def wide_resnet(depth: int = 28, width: int = 10, in_channels: int = 3, drop_rate: float = 0.0) -> CifarResNet:
    """WideResNet-depth-width: three stages of (depth - 4) / 6 pre-activation blocks, widths 16k, 32k, 64k."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
        raise ValueError(f"depth must be an int of the form 6n + 4 with n >= 1 (e.g. 16, 28, 40), got {depth!r}")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be an int >= 1, got {width!r}")
    n = (depth - 4) // 6
    return CifarResNet(
        (n, n, n),
        (16 * width, 32 * width, 64 * width),
        stem_width=16,
        in_channels=in_channels,
        preact=True,
        drop_rate=drop_rate,
    )
