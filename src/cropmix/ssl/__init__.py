"""Self-supervised pre-training with CropMix inputs: MoCo v2 and MAE, kNN and linear-probe evaluation."""

from cropmix.models.weights import backbone_state_dict, load_pretrained  # re-exported: loading lives in models

from .checkpoint_eval import evaluate_checkpoint
from .config import PretrainConfig
from .knn import extract_features, knn_accuracy, knn_predict
from .linear_probe import ProbeOptions, linear_probe
from .mae import MAE, random_masking
from .moco import MoCo
from .pretrain import build_ssl_model, pretrain
from .representation import RepresentationOptions, evaluate_representation
from .views import MAEView, TwoViews, cropmix_query_view, moco_view

__all__ = [
    "MAE",
    "MAEView",
    "MoCo",
    "PretrainConfig",
    "ProbeOptions",
    "RepresentationOptions",
    "TwoViews",
    "backbone_state_dict",
    "build_ssl_model",
    "cropmix_query_view",
    "evaluate_checkpoint",
    "evaluate_representation",
    "extract_features",
    "knn_accuracy",
    "knn_predict",
    "linear_probe",
    "load_pretrained",
    "moco_view",
    "pretrain",
    "random_masking",
]
