"""Robust accuracy: corruption suite, pre-corrupted data readers, metrics, PGD and certification.

Submodules: `corruptions` (the ImageNet-C / CIFAR-10-C suite on tensors), `readers` (CIFAR-10-C
.npy and ImageNet-C folders), `metrics` (clean / corruption accuracy, R_C, mCE), `pgd` (L-inf PGD),
`certify` (probabilistic certified accuracy with a Clopper-Pearson bound).
"""

from prunekit.robustness.certify import CertifyReport, certify, clopper_pearson_upper
from prunekit.robustness.corruptions import (
    ALL_CORRUPTIONS,
    CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    SEVERITIES,
    corrupt,
)
from prunekit.robustness.metrics import (
    CorruptionReport,
    corruption_errors,
    evaluate_clean,
    evaluate_corrupted_sets,
    evaluate_corruptions,
    mce,
    torch_predictor,
)
from prunekit.robustness.pgd import AdversarialReport, adversarial_accuracy, pgd_attack
from prunekit.robustness.readers import CorruptedSet, read_cifar_c, read_imagenet_c

__all__ = [
    "ALL_CORRUPTIONS",
    "CORRUPTIONS",
    "EXTRA_CORRUPTIONS",
    "SEVERITIES",
    "AdversarialReport",
    "CertifyReport",
    "CorruptedSet",
    "CorruptionReport",
    "adversarial_accuracy",
    "certify",
    "clopper_pearson_upper",
    "corrupt",
    "corruption_errors",
    "evaluate_clean",
    "evaluate_corrupted_sets",
    "evaluate_corruptions",
    "mce",
    "pgd_attack",
    "read_cifar_c",
    "read_imagenet_c",
    "torch_predictor",
]
