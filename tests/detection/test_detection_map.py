"""mAP by pycocotools on hand-built predictions with known answers."""

from __future__ import annotations

import torch

from prunekit.tasks.detection.metrics import mean_ap

GT = [{"boxes": torch.tensor([[10.0, 10.0, 50.0, 50.0], [60.0, 60.0, 90.0, 100.0]]), "labels": torch.tensor([1, 2])},
      {"boxes": torch.tensor([[0.0, 0.0, 20.0, 40.0]]), "labels": torch.tensor([1])}]


def _pred(boxes: list[list[float]], labels: list[int], scores: list[float]) -> dict[str, torch.Tensor]:
    return {"boxes": torch.tensor(boxes).view(-1, 4), "labels": torch.tensor(labels, dtype=torch.int64),
            "scores": torch.tensor(scores)}


def test_perfect_predictions_score_one() -> None:
    preds = [_pred(t["boxes"].tolist(), t["labels"].tolist(), [0.9] * len(t["labels"])) for t in GT]
    assert mean_ap(preds, GT, num_classes=3) == {"map": 1.0, "map_50": 1.0}


def test_iou_between_thresholds() -> None:
    # each box shifted so that IoU = 0.62: a hit at .5, .55 and .6, a miss from .65 up (3 of 10 thresholds)
    preds = []
    for t in GT:
        boxes = []
        for x0, y0, x1, y1 in t["boxes"].tolist():
            w = x1 - x0
            d = w * (1 - 0.62) / (1 + 0.62)  # shift along x giving IoU 0.62
            boxes.append([x0 + d, y0, x1 + d, y1])
        preds.append(_pred(boxes, t["labels"].tolist(), [0.9] * len(boxes)))
    out = mean_ap(preds, GT, num_classes=3)
    assert abs(out["map_50"] - 1.0) < 1e-9
    assert abs(out["map"] - 0.3) < 1e-6


def test_wrong_class_and_no_predictions() -> None:
    wrong = [_pred(t["boxes"].tolist(), [3 - v for v in t["labels"].tolist()], [0.9] * len(t["labels"])) for t in GT]
    assert mean_ap(wrong, GT, num_classes=3)["map_50"] == 0.0
    empty = [_pred([], [], []) for _ in GT]
    assert mean_ap(empty, GT, num_classes=3) == {"map": 0.0, "map_50": 0.0}


def test_crowd_boxes_are_ignored() -> None:
    gt = [{**GT[0], "iscrowd": torch.tensor([0, 1])}]
    # only the non-crowd box predicted: AP 1 (the crowd box is not a missed object)
    assert abs(mean_ap([_pred([[10.0, 10.0, 50.0, 50.0]], [1], [0.9])], gt, num_classes=3)["map"] - 1.0) < 1e-9
    # without the crowd flag, the unpredicted box of class 2 is a miss: class 2 AP is 0
    assert mean_ap([_pred([[10.0, 10.0, 50.0, 50.0]], [1], [0.9])], GT[:1], num_classes=3)["map"] < 0.51
