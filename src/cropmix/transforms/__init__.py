"""The CropMix method: settings, parameter sampling, kernels and the transforms. Imports nothing else of cropmix.

config.py      CropMixConfig, make_config, the paper's presets as plain data
params.py      BatchParams (canonical, one row per image) and its one-image view CropMixParams
sampling.py    the draw layout, declared once; sample_one (plain Python) and sample_batch (numpy)
functional/    kernels per backend (tensor, PIL, batched) behind one dispatcher, render()
cropmix.py     CropMix (a torchvision v2 Transform) and preset()
batch.py       BatchCropMix and CropMixCollate
memory.py      retain_freed_memory: glibc keeps freed memory (batched CPU calls stop faulting pages in)
"""

from .batch import BatchCropMix, CropMixCollate
from .config import PRESETS, CropMixConfig, make_config, preset_kwargs
from .cropmix import CropMix, preset
from .functional import BATCH_MODES, cpu_batch_passes, render, render_batch, resized_crop
from .memory import retain_freed_memory
from .params import BatchParams, Crop, CropMixParams, MixStep
from .sampling import sample_batch, sample_one

__all__ = [
    "BATCH_MODES",
    "PRESETS",
    "BatchCropMix",
    "BatchParams",
    "Crop",
    "CropMix",
    "CropMixCollate",
    "CropMixConfig",
    "CropMixParams",
    "MixStep",
    "cpu_batch_passes",
    "make_config",
    "preset",
    "preset_kwargs",
    "render",
    "render_batch",
    "resized_crop",
    "retain_freed_memory",
    "sample_batch",
    "sample_one",
]
