"""Detection data: the generated shapes set (exact boxes), COCO and VOC readers and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from detfiles import coco_doc, voc_xml, write_image
from typer.testing import CliRunner

from prunekit.cli import app
from prunekit.errors import PrunekitError
from prunekit.tasks.detection.data import SHAPE_CLASSES, collate, load_detection_data, shapes_records


def test_shapes_deterministic_and_boxes_exact() -> None:
    a, b = shapes_records(12, seed=3), shapes_records(12, seed=3)
    assert all(torch.equal(x.image, y.image) and torch.equal(x.boxes, y.boxes) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0].image, shapes_records(1, seed=4)[0].image)
    squares = 0
    for r in a:
        assert 1 <= len(r.labels) <= 3
        assert set(r.labels.tolist()) <= set(range(1, len(SHAPE_CLASSES) + 1))
        for box, label in zip(r.boxes.long().tolist(), r.labels.tolist(), strict=True):
            x0, y0, x1, y1 = box
            assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 128
            if label != 1:
                continue
            squares += 1
            inside = r.image[:, y0:y1, x0:x1]
            # a filled square is exactly its box: one colour inside, a different pixel just outside
            assert torch.equal(inside, inside[:, :1, :1].expand_as(inside))
            ring = [r.image[:, y0 - 1, x0] if y0 > 0 else None, r.image[:, y1, x0] if y1 < 128 else None]
            assert any(p is not None and not torch.equal(p, inside[:, 0, 0]) for p in ring)
    assert squares > 0


def test_shapes_bundle_resizes_boxes() -> None:
    data = load_detection_data("shapes:8", 64, None)
    assert data.num_classes == len(SHAPE_CLASSES) + 1 and data.input_size == 64
    img, t = data.train_set[0]
    raw = data.train_set.records[0]
    assert img.shape == (3, 64, 64)
    assert torch.allclose(t["boxes"], raw.boxes / 2)
    x, ys = collate([data.train_set[0], data.train_set[1]])
    assert x.shape == (2, 3, 64, 64) and len(ys) == 2


def test_coco_reader(coco_dir: Path) -> None:
    data = load_detection_data(f"coco:{coco_dir}", 60, None)
    assert data.num_classes == 3  # background + cat (id 5) + dog (id 9)
    assert data.train_set.class_names == ("cat", "dog")
    img, t = data.train_set[0]  # a.png, 40x20 -> 60x60: x * 1.5, y * 3
    assert img.shape == (3, 60, 60)
    assert torch.allclose(t["boxes"], torch.tensor([[6.0, 6.0, 21.0, 30.0]]))
    assert t["labels"].tolist() == [2]
    assert data.val_set[1][1]["labels"].tolist() == [1, 2]


def _rewrite(coco_dir: Path, **change: object) -> Path:
    path = coco_dir / "annotations" / "instances_val.json"
    doc = json.loads(path.read_text())
    doc.update(change)
    path.write_text(json.dumps(doc))
    return path


def test_coco_missing_image(coco_dir: Path) -> None:
    (coco_dir / "val" / "b.png").unlink()
    with pytest.raises(PrunekitError, match=r"image 'b.png' listed in .*instances_val.json was not found"):
        load_detection_data(f"coco:{coco_dir}", 64, None)


def test_coco_box_outside_image(coco_dir: Path) -> None:
    doc = coco_doc([(1, "a.png", 40, 20)], [(7, 1, 5, [30, 5, 20, 5])], [(5, "cat"), (9, "dog")])
    _rewrite(coco_dir, **doc)
    with pytest.raises(PrunekitError, match=r"annotation 7 in .*instances_val.json: box .* outside image 'a.png' \(40x20\)"):
        load_detection_data(f"coco:{coco_dir}", 64, None)


def test_coco_empty_file(coco_dir: Path) -> None:
    (coco_dir / "annotations" / "instances_val.json").write_text("")
    with pytest.raises(PrunekitError, match=r"instances_val.json is empty"):
        load_detection_data(f"coco:{coco_dir}", 64, None)
    _rewrite_empty = coco_dir / "annotations" / "instances_val.json"
    _rewrite_empty.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    with pytest.raises(PrunekitError, match=r"is empty \(no images or no categories\)"):
        load_detection_data(f"coco:{coco_dir}", 64, None)


def test_coco_unknown_category(coco_dir: Path) -> None:
    doc = coco_doc([(1, "a.png", 40, 20)], [(8, 1, 3, [1, 1, 5, 5])], [(5, "cat"), (9, "dog")])
    _rewrite(coco_dir, **doc)
    with pytest.raises(PrunekitError, match=r"annotation 8 in .*: category_id 3 is not in the file's categories \(5, 9\)"):
        load_detection_data(f"coco:{coco_dir}", 64, None)


def test_coco_bad_input_is_one_line_exit_2(coco_dir: Path, tmp_path: Path) -> None:
    (coco_dir / "val" / "a.png").unlink()
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["compress", "--task", "detection", "--data", f"coco:{coco_dir}",
                                      "--out", str(out)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "a.png" in lines[0] and "instances_val.json" in lines[0], result.output
    assert not out.exists()  # nothing half-written


def test_voc_reader(voc_dir: Path) -> None:
    data = load_detection_data(f"voc:{voc_dir}", 100, None)
    assert data.num_classes == 21 and len(data.train_set) == 4 and len(data.val_set) == 1
    _, t = data.train_set[0]  # VOC 1-based [1, 1, 25, 20] -> edges [0, 0, 25, 20], 50x40 -> 100x100
    assert torch.allclose(t["boxes"], torch.tensor([[0.0, 0.0, 50.0, 50.0]]))
    assert t["labels"].tolist() == [12]  # dog is the 12th VOC class


def test_voc_errors(voc_dir: Path) -> None:
    ann = voc_dir / "Annotations"
    (voc_dir / "JPEGImages" / "im2.jpg").unlink()
    with pytest.raises(PrunekitError, match=r"image 'im2.jpg' named by .*im2.xml was not found"):
        load_detection_data(f"voc:{voc_dir}", 64, None)
    write_image(voc_dir / "JPEGImages" / "im2.jpg", 50, 40)
    (ann / "im3.xml").write_text(voc_xml("im3.jpg", 50, 40, [("dog", 10, 10, 60, 20)]))
    with pytest.raises(PrunekitError, match=r"im3.xml: box \[10, 10, 60, 20\] of 'dog' lies outside image 'im3.jpg' \(50x40\)"):
        load_detection_data(f"voc:{voc_dir}", 64, None)
    (ann / "im3.xml").write_text("")
    with pytest.raises(PrunekitError, match=r"im3.xml is empty"):
        load_detection_data(f"voc:{voc_dir}", 64, None)
    (ann / "im3.xml").write_text(voc_xml("im3.jpg", 50, 40, [("unicorn", 1, 1, 5, 5)]))
    with pytest.raises(PrunekitError, match=r"im3.xml: object class 'unicorn' is not one of the 20 Pascal VOC classes"):
        load_detection_data(f"voc:{voc_dir}", 64, None)
    (voc_dir / "classes.txt").write_text("dog\nunicorn\n")
    data = load_detection_data(f"voc:{voc_dir}", 64, None)
    assert data.num_classes == 3


def test_missing_folder_and_unknown_spec(tmp_path: Path) -> None:
    with pytest.raises(PrunekitError, match="data directory not found"):
        load_detection_data(f"coco:{tmp_path / 'nope'}", 64, None)
    with pytest.raises(PrunekitError, match="unknown detection --data spec"):
        load_detection_data("digits", 64, None)
