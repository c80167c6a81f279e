"""mPC / rPC (Michaelis et al. 2019) on oracle detectors with known answers."""

from __future__ import annotations

import pytest
import torch

from prunekit.errors import PrunekitError
from prunekit.tasks.detection.data import load_detection_data
from prunekit.tasks.detection.robust import detection_robustness, val_batches


class Oracle:
    """Decodes "raw outputs" (the images themselves) to the ground truth of their batch: only when
    the images are the clean ones (`blind=False`), or always (`blind=True`: a perfectly robust
    detector). detection_robustness calls it once per (batch, cell), batches in order."""

    def __init__(self, batches: list, cells: int, blind: bool) -> None:
        self.batches, self.cells, self.blind, self.calls = batches, cells, blind, 0

    def decode(self, out: torch.Tensor, size: tuple[int, int]) -> list[dict[str, torch.Tensor]]:
        x, ys = self.batches[self.calls // self.cells]
        self.calls += 1
        right = self.blind or torch.equal(out, x)
        return [{"boxes": t["boxes"] if right else torch.zeros(0, 4),
                 "labels": t["labels"] if right else torch.zeros(0, dtype=torch.int64),
                 "scores": torch.ones(len(t["labels"]) if right else 0)} for t in ys]


def test_mpc_rpc_aggregation() -> None:
    data = load_detection_data("shapes:8", 64, None)
    batches = val_batches(data, 4, limit=8)
    assert sum(len(ys) for _, ys in batches) == 8
    cells = 1 + 2 * 2  # clean + 2 corruptions x 2 severities
    sees_clean_only = Oracle(batches, cells, blind=False)
    always_right = Oracle(batches, cells, blind=True)
    res = detection_robustness({"clean-only": (lambda x: x, sees_clean_only), "always": (lambda x: x, always_right)},
                               batches, data.num_classes, ["gaussian_noise", "contrast"], [1, 3], seed=0)
    a, b = res["models"]["clean-only"], res["models"]["always"]
    assert abs(a["map"] - 1.0) < 1e-9 and a["mpc"] == 0.0 and a["rpc"] == 0.0  # every corrupted image differs
    assert abs(b["mpc"] - 1.0) < 1e-9 and abs(b["rpc"] - 1.0) < 1e-9
    assert set(a["cells"]) == {"gaussian_noise", "contrast"} and set(a["cells"]["contrast"]) == {"1", "3"}
    assert res["n_images"] == 8


def test_unknown_corruption_refused() -> None:
    with pytest.raises(PrunekitError):
        detection_robustness({}, [], 4, ["not_a_corruption"], [1])
