"""Any timm model as a cropmix backbone (pooled pre-logit features, no classifier, nothing downloaded)."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn


class TimmBackbone(nn.Module):
    """A timm model created with num_classes=0, so that its forward returns pooled pre-logit features."""

    def __init__(self, name: str, image_size: int = 224, in_channels: int = 3, **kwargs: Any) -> None:
        super().__init__()
        try:
            import timm
        except ImportError as error:  # pragma: no cover - timm is a dev dependency here
            raise ImportError("timm models need the `timm` package: pip install timm") from error
        if not timm.is_model(name):
            raise ValueError(f"unknown timm model {name!r}; see timm.list_models() for the accepted names")
        self.name = name
        kwargs = {"pretrained": False, "num_classes": 0, "in_chans": in_channels, **kwargs}
        try:
            self.model = timm.create_model(name, img_size=image_size, **kwargs)
        except TypeError as error:
            # Convolutional nets take any input size and have no img_size argument.
            if "img_size" not in str(error):
                raise
            self.model = timm.create_model(name, **kwargs)
        dim = getattr(self.model, "head_hidden_size", None) or self.model.num_features
        self.feature_dim = int(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)
