"""Helpers of the detection tests: tiny images, COCO documents and VOC XML written by hand."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from prunekit.tasks.detection.data import shapes_records


def write_image(path: Path, w: int, h: int, color: tuple[int, int, int] = (40, 90, 160)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), color).save(path)


def coco_doc(images: list[tuple[int, str, int, int]], anns: list[tuple[int, int, int, list[float]]],
             cats: list[tuple[int, str]]) -> dict:
    return {
        "images": [{"id": i, "file_name": f, "width": w, "height": h} for i, f, w, h in images],
        "annotations": [{"id": a, "image_id": i, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
                        for a, i, c, b in anns],
        "categories": [{"id": c, "name": n} for c, n in cats],
    }


VOC_XML = """<annotation><filename>{name}</filename><size><width>{w}</width><height>{h}</height><depth>3</depth></size>
{objects}</annotation>"""
VOC_OBJ = "<object><name>{cls}</name><difficult>{d}</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>" \
          "<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"


def voc_xml(name: str, w: int, h: int, objs: list[tuple[str, int, int, int, int]], difficult: int = 0) -> str:
    return VOC_XML.format(name=name, w=w, h=h, objects="".join(
        VOC_OBJ.format(cls=c, d=difficult, x0=a, y0=b, x1=x, y1=y) for c, a, b, x, y in objs))




def shapes_images(n: int, size: int = 64, seed: int = 5) -> torch.Tensor:
    """`n` images of the built-in shapes set, resized to size x size."""
    x = torch.stack([r.image for r in shapes_records(n, seed=seed)])
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def shapes_targets(n: int, size: int = 64, seed: int = 5) -> list[dict[str, torch.Tensor]]:
    """The boxes and labels of `shapes_images(n, size, seed)` (the set is drawn at 128 px)."""
    return [{"boxes": r.boxes * size / 128, "labels": r.labels} for r in shapes_records(n, seed=seed)]
