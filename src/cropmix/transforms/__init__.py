"""The CropMix method: parameter sampling, kernels and the transforms. Imports nothing else of cropmix."""

from .batch import BatchCropMix, CropMixCollate, render_batch
from .cropmix import CropMix
from .params import Crop, CropMixConfig, CropMixParams, MixStep, make_config, sample_batch
from .presets import PRESETS, preset, preset_kwargs
from .sample_one import sample_one

__all__ = [
    "PRESETS",
    "BatchCropMix",
    "Crop",
    "CropMix",
    "CropMixCollate",
    "CropMixConfig",
    "CropMixParams",
    "MixStep",
    "make_config",
    "preset",
    "preset_kwargs",
    "render_batch",
    "sample_batch",
    "sample_one",
]
