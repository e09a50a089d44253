"""Evaluation of classifiers: accuracy, calibration (ECE, RMS), reliability diagrams, FGSM, the 15 standard
corruptions (generated, or read from CIFAR-10-C / CIFAR-100-C files or the ImageNet-C folders, with mCE),
out-of-distribution folders.

Accuracies and calibration errors are in percent, as the CropMix paper reports them.
"""

from .cifar_c import cifar_c_accuracy, cifar_c_files
from .classifier import evaluate_classifier
from .corruptions import CORRUPTIONS
from .fgsm import fgsm_accuracy, fgsm_attack
from .imagenet_c import ALEXNET_ERRORS, imagenet_c_accuracy, imagenet_c_folders, mean_corruption_error
from .metrics import CalibrationBins, calibration_bins, calibration_errors, topk_accuracy
from .ood import CLASS_SUBSETS, class_mapping, ood_accuracy, output_classes, wnids
from .options import ClassifierEval, CorruptionOptions
from .predict import predict, to_unit_float
from .reliability import save_reliability_diagram
from .robustness import corruption_accuracy

__all__ = [
    "ALEXNET_ERRORS",
    "CLASS_SUBSETS",
    "CORRUPTIONS",
    "CalibrationBins",
    "ClassifierEval",
    "CorruptionOptions",
    "calibration_bins",
    "calibration_errors",
    "cifar_c_accuracy",
    "cifar_c_files",
    "class_mapping",
    "corruption_accuracy",
    "evaluate_classifier",
    "fgsm_accuracy",
    "fgsm_attack",
    "imagenet_c_accuracy",
    "imagenet_c_folders",
    "mean_corruption_error",
    "ood_accuracy",
    "output_classes",
    "predict",
    "save_reliability_diagram",
    "to_unit_float",
    "topk_accuracy",
    "wnids",
]
