"""`Classifier`: normalisation + backbone features + linear head, the shape of every cropmix model."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from .normalize import CIFAR10_MEAN, CIFAR10_STD, Normalize


class Classifier(nn.Module):
    """Wrap a backbone mapping normalised images to pooled features (B, D) into a classifier.

    Exposes what self-supervised code and linear probes need: `features(x)` (input in
    [0, 1]), `classifier` (the final `nn.Linear`), `feature_dim`, and `backbone`.
    `logit_scale` multiplies the logits (small fast nets train better with scaled-down logits).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        mean: Sequence[float] = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD,
        *,
        feature_dim: int | None = None,
        in_channels: int = 3,
        logit_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
        dim = feature_dim if feature_dim is not None else getattr(backbone, "feature_dim", None)
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"feature_dim must be given or be an int attribute of the backbone, got {dim!r}")
        self.normalize = Normalize(mean, std, in_channels)
        self.backbone = backbone
        self.feature_dim = dim
        self.num_classes = num_classes
        self.logit_scale = float(logit_scale)
        self.classifier = nn.Linear(dim, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Pooled features (B, feature_dim) of images in [0, 1]."""
        return self.backbone(self.normalize(x))

    def forward(self, x: Tensor) -> Tensor:
        logits = self.classifier(self.features(x))
        return logits * self.logit_scale if self.logit_scale != 1.0 else logits
