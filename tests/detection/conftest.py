"""Fixtures of the detection tests: hand-built COCO and VOC folders with tiny images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from detfiles import coco_doc, voc_xml, write_image


@pytest.fixture
def coco_dir(tmp_path: Path) -> Path:
    """A valid COCO folder: sparse category ids 5 (cat) and 9 (dog), 40x20 and 30x30 images."""
    root = tmp_path / "coco"
    for split in ("train", "val"):
        write_image(root / split / "a.png", 40, 20)
        write_image(root / split / "b.png", 30, 30)
        doc = coco_doc([(1, "a.png", 40, 20), (2, "b.png", 30, 30)],
                       [(10, 1, 9, [4, 2, 10, 8]), (11, 2, 5, [0, 0, 30, 30]), (12, 2, 9, [5, 5, 5, 5])],
                       [(9, "dog"), (5, "cat")])
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc))
    return root


@pytest.fixture
def voc_dir(tmp_path: Path) -> Path:
    """A valid VOC folder of 5 images (image 4, by name, becomes the validation split)."""
    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    for i in range(5):
        write_image(root / "JPEGImages" / f"im{i}.jpg", 50, 40)
        (root / "Annotations" / f"im{i}.xml").write_text(voc_xml(f"im{i}.jpg", 50, 40, [("dog", 1, 1, 25, 20)]))
    return root
