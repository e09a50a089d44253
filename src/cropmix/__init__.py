"""cropmix: CropMix (Han et al., 2022) for PyTorch, a drop-in replacement for RandomResizedCrop."""

from .transforms import Crop, CropMix, CropMixParams, MixStep, preset

__version__ = "0.1.0"

__all__ = ["Crop", "CropMix", "CropMixParams", "MixStep", "__version__", "preset"]
