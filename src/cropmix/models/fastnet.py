"""FastNet: a small residual net that trains CIFAR-10 in minutes on a CPU.

In the spirit of the DAWNBench ResNet-9 (Page 2018) and airbench (Jordan 2024), scaled
down to ~0.3M parameters: a conv-BN-ReLU stem, three stages of conv -> 2x2 max-pool ->
BN-ReLU followed by one residual block, a global max-pool and a linear head whose logits
are scaled down (see `LOGIT_SCALE`), which makes one-cycle SGD with a high rate stable.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

LOGIT_SCALE = 0.125
DEFAULT_WIDTHS = (12, 24, 48, 96)


def _conv_bn_relu(cin: int, cout: int, pool: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=False)]
    if pool:
        # Pooling before BN/ReLU does those at a quarter of the pixels; the result is the same for max-pool.
        layers.append(nn.MaxPool2d(2))
    layers += [nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class Residual(nn.Module):
    """x + f(x), with f two conv-BN-ReLU layers of the same width."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv_bn_relu(width, width), _conv_bn_relu(width, width))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class FastNet(nn.Module):
    """Backbone (B, C, H, W) -> (B, widths[-1]) features; `widths` = (stem, stage 1, stage 2, stage 3)."""

    def __init__(self, widths: Sequence[int] = DEFAULT_WIDTHS, in_channels: int = 3) -> None:
        super().__init__()
        if len(widths) != 4 or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
            raise ValueError(f"widths must be 4 positive ints (stem, stage1, stage2, stage3), got {widths!r}")
        stem, *stages = widths
        layers: list[nn.Module] = [_conv_bn_relu(in_channels, stem)]
        cin = stem
        for width in stages:
            layers += [_conv_bn_relu(cin, width, pool=True), Residual(width)]
            cin = width
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.feature_dim = cin
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.layers(x)).flatten(1)
