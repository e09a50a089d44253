"""Evaluation of classifiers: accuracy, calibration (ECE, RMS), reliability diagrams, FGSM, corruptions.

Accuracies and calibration errors are in percent, as the CropMix paper reports them.
"""

from .classifier import evaluate_classifier
from .corruptions import CORRUPTIONS
from .fgsm import fgsm_accuracy, fgsm_attack
from .metrics import CalibrationBins, calibration_bins, calibration_errors, topk_accuracy
from .predict import predict, to_unit_float
from .reliability import save_reliability_diagram
from .robustness import corruption_accuracy

__all__ = [
    "CORRUPTIONS",
    "CalibrationBins",
    "calibration_bins",
    "calibration_errors",
    "corruption_accuracy",
    "evaluate_classifier",
    "fgsm_accuracy",
    "fgsm_attack",
    "predict",
    "save_reliability_diagram",
    "to_unit_float",
    "topk_accuracy",
]
