"""Accuracy bookkeeping: clean, per corruption/severity, R_C, corruption error, file-based cells."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.robustness.metrics import (
    CorruptionReport,
    corruption_errors,
    evaluate_clean,
    evaluate_corrupted_sets,
    evaluate_corruptions,
    mce,
    torch_predictor,
)
from prunekit.robustness.readers import read_cifar_c


def brightness_classifier(images: torch.Tensor) -> torch.Tensor:
    """Class 1 when the mean intensity is above 0.5, else 0 (logits for 2 classes)."""
    m = images.mean(dim=(1, 2, 3))
    return torch.stack([0.5 - m, m - 0.5], dim=1)


def loader(n: int = 20, batch: int = 8):
    g = torch.Generator().manual_seed(0)
    level = torch.where(torch.arange(n) % 2 == 0, 0.35, 0.8)
    x = (level.view(-1, 1, 1, 1) + 0.05 * torch.randn(n, 3, 16, 16, generator=g)).clamp(0, 1)
    y = (level > 0.5).long()
    return [(x[i : i + batch], y[i : i + batch]) for i in range(0, n, batch)]


def test_evaluate_clean_counts_and_limits():
    data = loader()
    assert evaluate_clean(brightness_classifier, data) == 1.0
    flipped = [(x, 1 - y) for x, y in data]
    assert evaluate_clean(brightness_classifier, flipped) == 0.0
    half = [(x, torch.where(torch.arange(len(y)) < 4, y, 1 - y)) for x, y in data]
    assert evaluate_clean(brightness_classifier, half, limit=4) == 1.0
    assert evaluate_clean(brightness_classifier, half, limit=12) == pytest.approx(8 / 12)


def test_numpy_and_tuple_outputs_are_accepted():
    data = loader()
    assert evaluate_clean(lambda x: brightness_classifier(x).numpy(), data) == 1.0
    assert evaluate_clean(lambda x: [brightness_classifier(x).numpy()], data) == 1.0
    with pytest.raises(PrunekitError, match="logits"):
        evaluate_clean(lambda x: brightness_classifier(x)[:, 0], data)
    with pytest.raises(PrunekitError, match="empty"):
        evaluate_clean(brightness_classifier, [])


def test_evaluate_corruptions_report():
    data = loader()
    report = evaluate_corruptions(
        brightness_classifier, data, ["brightness", "gaussian_noise"], [1, 5], seed=0
    )
    assert report.clean_accuracy == 1.0 and report.n_images == 20
    assert report.corruptions == ["brightness", "gaussian_noise"] and report.severities == [1, 5]
    # +0.3 brightness (CIFAR table, severity 5) lifts the dark class over the threshold
    assert report.accuracy["brightness"][1] == 1.0
    assert report.accuracy["brightness"][5] == 0.5
    assert report.corruption_mean("brightness") == 0.75
    cells = [a for row in report.accuracy.values() for a in row.values()]
    assert report.mean_corruption_accuracy == pytest.approx(sum(cells) / 4)
    assert report.relative_robustness == pytest.approx(report.mean_corruption_accuracy)
    again = evaluate_corruptions(
        brightness_classifier, data, ["brightness", "gaussian_noise"], [1, 5], seed=0
    )
    assert again.accuracy == report.accuracy
    d = report.to_dict()
    assert d["accuracy"]["brightness"] == {"1": 1.0, "5": 0.5}
    assert d["per_corruption"]["brightness"] == 0.75


def test_evaluate_corruptions_rejects_bad_names_and_severities():
    with pytest.raises(PrunekitError) as err:
        evaluate_corruptions(brightness_classifier, loader(), ["snowy"], [1])
    assert "snow" in err.value.one_line()
    with pytest.raises(PrunekitError, match="outside 1..5"):
        evaluate_corruptions(brightness_classifier, loader(), ["snow"], [0])


def test_torch_predictor_and_progress():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 2))
    model.train()
    predict = torch_predictor(model)
    assert not model.training
    seen = []
    evaluate_corruptions(predict, loader(), ["contrast"], [2], progress=seen.append)
    assert sum(seen) == 20


def report(acc: dict[str, dict[int, float]], clean: float = 0.9) -> CorruptionReport:
    return CorruptionReport(clean_accuracy=clean, accuracy=acc, n_images=100)


def test_mce_known_values():
    ref = report({"fog": {1: 0.8, 2: 0.6}, "snow": {1: 0.9, 2: 0.7}})
    model = report({"fog": {1: 0.6, 2: 0.4}, "snow": {1: 0.9, 2: 0.7}})
    ces = corruption_errors(model, ref)
    assert ces == pytest.approx({"fog": (0.4 + 0.6) / (0.2 + 0.4), "snow": 1.0})
    assert mce(model, ref) == pytest.approx((1.0 / 0.6 + 1.0) / 2)
    assert mce(ref, ref) == pytest.approx(1.0)


def test_mce_edge_cases():
    perfect = report({"fog": {1: 1.0}})
    with pytest.raises(PrunekitError, match="no error"):
        mce(report({"fog": {1: 0.5}}), perfect)
    with pytest.raises(PrunekitError, match="share no corruption"):
        mce(report({"fog": {1: 0.5}}), report({"snow": {1: 0.5}}))
    with pytest.raises(PrunekitError, match="different severities"):
        mce(report({"fog": {1: 0.5}}), report({"fog": {2: 0.5}}))
    assert math.isnan(report({"fog": {1: 0.5}}, clean=0.0).relative_robustness)
    assert report({"fog": {1: 0.5}}, clean=0.0).to_dict()["relative_robustness"] is None


def test_evaluate_corrupted_sets_from_cifar_c_files(tmp_path):
    root = tmp_path / "CIFAR-10-C"
    root.mkdir()
    n = 8
    arr = np.zeros((5 * n, 16, 16, 3), dtype=np.uint8)
    for s in range(5):  # severity s darkens all images: fewer are predicted bright
        arr[s * n : s * n + n] = np.linspace(250 - 40 * s, 10, n, dtype=np.uint8).reshape(n, 1, 1, 1)
    np.save(root / "contrast.npy", arr)
    np.save(root / "labels.npy", np.tile(np.array([1] * 4 + [0] * 4, dtype=np.uint8), 5))
    rep = evaluate_corrupted_sets(brightness_classifier, read_cifar_c(root, batch_size=3), clean_accuracy=1.0)
    accs = [rep.accuracy["contrast"][s] for s in range(1, 6)]
    assert accs[0] == 1.0 and accs == sorted(accs, reverse=True) and accs[-1] < 1.0
    assert rep.source == "files" and rep.seed is None
