"""Detection data behind `--data`: the generated `shapes` set, `coco:DIR` and `voc:DIR` on disk.

Every sample is `(image [3, S, S] float in [0, 1], target)` with `target = {"boxes": [n, 4]
float xyxy in pixels of the S x S image, "labels": [n] int64 in 1..K, "iscrowd": [n] int64}`;
label 0 is the background (torchvision's convention), so a model gets `num_classes = K + 1`.
Images are resized to S x S (boxes scaled with them). Nothing is downloaded, and a folder is
validated completely when it is read: a missing image, a box outside its image, an empty
annotation file or an unknown category is a one-line PrunekitError naming the file and the fix.

Layouts:

- `coco:DIR`: `DIR/annotations/instances_train*.json` and `instances_val*.json` (COCO format),
  the images of each in `DIR/<json suffix>/` (`instances_val2017.json` -> `DIR/val2017/`),
  `DIR/<train|val>/`, `DIR/images/` or `DIR/`.
- `voc:DIR`: `DIR/Annotations/*.xml` and `DIR/JPEGImages/`, the split in
  `DIR/ImageSets/Main/{train,val}.txt` (else every fifth image, by name, is validation); the
  classes are the 20 Pascal VOC classes, or the lines of `DIR/classes.txt`.
- `shapes[:N]`: N training images (default 240, and N/4 validation) of 128 px with 1-3
  non-overlapping filled squares, circles and triangles on textured backgrounds; every box is
  the tight box of the object's drawn pixels, so it is exact. Deterministic (seed 0).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from prunekit.data import DataBundle, existing_dir, spec_count
from prunekit.errors import PrunekitError

SPEC_HELP = ("shapes[:N] (generated squares / circles / triangles, exact boxes, no download), "
             "coco:DIR (COCO JSON + images), voc:DIR (Pascal VOC XML + JPEGImages)")
SHAPE_CLASSES = ("square", "circle", "triangle")
SHAPES_SIZE = 128
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
Target = dict[str, torch.Tensor]


@dataclass
class Record:
    """One image: a tensor in memory or a file, its boxes (xyxy, its own pixels) and labels."""

    image: torch.Tensor | Path
    width: int
    height: int
    boxes: torch.Tensor
    labels: torch.Tensor
    iscrowd: torch.Tensor


class DetectionDataset(Dataset):
    """Images resized to `size` x `size`, boxes scaled with them."""

    def __init__(self, records: list[Record], size: int, class_names: tuple[str, ...]) -> None:
        self.records, self.size, self.class_names = records, size, class_names

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Target]:
        r = self.records[i]
        img = r.image if isinstance(r.image, torch.Tensor) else _read_image(r.image)
        if img.shape[-2:] != (self.size, self.size):
            img = F.interpolate(img[None], size=(self.size, self.size), mode="bilinear", align_corners=False)[0]
            img = img.clamp(0.0, 1.0)
        scale = torch.tensor([self.size / r.width, self.size / r.height] * 2, dtype=torch.float32)
        return img, {"boxes": r.boxes * scale, "labels": r.labels.clone(), "iscrowd": r.iscrowd.clone()}


def collate(batch: list[tuple[torch.Tensor, Target]]) -> tuple[torch.Tensor, list[Target]]:
    """Images stacked into one batch; targets kept as a list (their box counts differ)."""
    return torch.stack([b[0] for b in batch]), [b[1] for b in batch]


def _read_image(path: Path) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as im:
        rgb = im.convert("RGB")
        data = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8)
        return data.view(rgb.height, rgb.width, 3).permute(2, 0, 1).float() / 255.0


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return int(im.width), int(im.height)
    except (OSError, UnidentifiedImageError) as exc:
        raise PrunekitError(f"cannot read image {path}: {type(exc).__name__}", "replace the file with a valid image") from exc


def load_detection_data(spec: str, size: int | None, objective: Any) -> DataBundle:
    """Resolve a detection `--data` spec (see SPEC_HELP) into a DataBundle at `size` px."""
    kind, _, arg = spec.partition(":")
    size = size if size is not None else default_size(spec)
    if not 32 <= size <= 1024:
        raise PrunekitError(f"--input-size must be between 32 and 1024 for detection, got {size}")
    if kind == "shapes":
        n = spec_count(arg, 240, spec, example="shapes:240", most=100_000)
        classes = SHAPE_CLASSES
        train, val = shapes_records(n, seed=0), shapes_records(max(n // 4, 8), seed=1)
    elif kind == "coco":
        root = existing_dir(arg, spec, "DIR/annotations/instances_{train,val}*.json and the images")
        (train, classes), (val, classes_val) = read_coco(root, "train"), read_coco(root, "val")
        if classes != classes_val:
            raise PrunekitError(f"{root}/annotations: the train and val files list different categories",
                                "use one categories list in both files")
    elif kind == "voc":
        root = existing_dir(arg, spec, "DIR/Annotations/*.xml and DIR/JPEGImages/")
        train, val, classes = read_voc(root)
    else:
        raise PrunekitError(f"unknown detection --data spec '{spec}'", f"use one of: {SPEC_HELP}")
    return DataBundle(spec, DetectionDataset(train, size, classes), DetectionDataset(val, size, classes),
                      len(classes) + 1, size, collate=collate, objective=objective)


def default_size(spec: str) -> int:
    """Input size of a detection spec: 128 for the generated set, 320 for folders."""
    return SHAPES_SIZE if spec.split(":", 1)[0] == "shapes" else 320


# -- shapes ----------------------------------------------------------------------------------------
def shapes_records(n: int, seed: int, size: int = SHAPES_SIZE) -> list[Record]:
    """`n` generated images (deterministic by `seed`) with their exact boxes."""
    rng = np.random.default_rng(10_007 * seed + 17)
    centres = np.arange(size) + 0.5
    out = []
    for _ in range(n):
        img = _texture(size, rng)
        boxes: list[list[float]] = []
        labels: list[int] = []
        for _ in range(int(rng.integers(1, 4))):
            for _try in range(20):
                side = float(rng.integers(size // 6, size // 2))
                cx, cy = rng.random(2) * (size - side) + side / 2
                label = int(rng.integers(0, len(SHAPE_CLASSES)))
                mask = _shape_mask(SHAPE_CLASSES[label], centres[None, :], centres[:, None], cx, cy, side)
                box = _mask_box(mask)
                if box is None or any(_overlaps(box, b, margin=2) for b in boxes):
                    continue
                color = rng.random(3)
                # objects differ from the background: far from its mean colour
                color = np.where(img.mean((1, 2)) > 0.5, color * 0.4, 0.6 + color * 0.4)
                img[:, mask] = color[:, None]
                boxes.append(box)
                labels.append(label + 1)
                break
        out.append(Record(torch.from_numpy(img).float(), size, size,
                          torch.tensor(boxes, dtype=torch.float32).view(-1, 4),
                          torch.tensor(labels, dtype=torch.int64), torch.zeros(len(labels), dtype=torch.int64)))
    return out


def _texture(size: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth random colour field (bilinear over a 4 x 4 grid) with fine noise: not flat."""
    coarse = rng.random((3, 4, 4))
    t = np.linspace(0, 3, size)
    i0 = np.minimum(t.astype(int), 2)
    f = t - i0
    rows = coarse[:, i0] * (1 - f)[None, :, None] + coarse[:, i0 + 1] * f[None, :, None]
    base = rows[:, :, i0] * (1 - f) + rows[:, :, i0 + 1] * f
    return np.clip(0.8 * base + 0.1 * rng.random((3, size, size)), 0, 1)


def _shape_mask(kind: str, xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, side: float) -> np.ndarray:
    """Pixels (by their centres) inside one shape of width `side` centred at (cx, cy)."""
    h = side / 2
    if kind == "square":
        return (np.abs(xs - cx) <= h) & (np.abs(ys - cy) <= h)
    if kind == "circle":
        return (xs - cx) ** 2 + (ys - cy) ** 2 <= h * h
    # an upright isosceles triangle: apex at the top, base at the bottom
    top, bottom = cy - h, cy + h
    frac = np.clip((ys - top) / side, 0, 1)
    return (ys >= top) & (ys <= bottom) & (np.abs(xs - cx) <= frac * h)


def _mask_box(mask: np.ndarray) -> list[float] | None:
    """The tight xyxy box of a pixel mask (pixel edges: a pixel at column c spans [c, c + 1])."""
    if int(mask.sum()) < 16:
        return None
    rows = np.flatnonzero(mask.any(1))
    cols = np.flatnonzero(mask.any(0))
    return [float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)]


def _overlaps(a: list[float], b: list[float], margin: float = 0.0) -> bool:
    return not (a[2] + margin <= b[0] or b[2] + margin <= a[0] or a[3] + margin <= b[1] or b[3] + margin <= a[1])


# -- COCO ------------------------------------------------------------------------------------------
def coco_file(root: Path, split: str) -> Path:
    """The COCO annotation file of `split` in `root/annotations/`."""
    ann = root / "annotations"
    found = sorted(ann.glob(f"instances_{split}*.json")) if ann.is_dir() else []
    if not found:
        raise PrunekitError(f"{root} has no annotations/instances_{split}*.json",
                            "coco:DIR expects DIR/annotations/instances_train*.json and instances_val*.json")
    return found[0]


def read_coco(root: Path, split: str) -> tuple[list[Record], tuple[str, ...]]:
    """Records and class names (by category id order) of one COCO split, fully validated."""
    path = coco_file(root, split)
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise PrunekitError(f"annotation file {path} is empty", "write the COCO JSON (images, annotations, categories)")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PrunekitError(f"annotation file {path} is not valid JSON (line {exc.lineno}: {exc.msg})",
                            "fix or re-export the COCO JSON") from None
    if not isinstance(doc, dict) or not doc.get("images") or not doc.get("categories"):
        raise PrunekitError(f"annotation file {path} is empty (no images or no categories)",
                            "a COCO file needs non-empty 'images' and 'categories' lists")
    try:
        cats = sorted((int(c["id"]), str(c["name"])) for c in doc["categories"])
        images = {int(im["id"]): im for im in doc["images"]}
        anns = list(doc.get("annotations") or [])
    except (KeyError, TypeError, ValueError) as exc:
        raise PrunekitError(f"annotation file {path}: malformed entry ({type(exc).__name__}: {exc})",
                            "every category needs id and name, every image id and file_name") from None
    label_of = {cid: i + 1 for i, (cid, _) in enumerate(cats)}
    dirs = [root / path.stem.removeprefix("instances_"), root / split, root / "images", root]
    per_image: dict[int, list[tuple[list[float], int, int]]] = {i: [] for i in images}
    sizes: dict[int, tuple[int, int, Path]] = {}
    for iid, im in images.items():
        name = str(im.get("file_name", ""))
        file = next((d / name for d in dirs if name and (d / name).is_file()), None)
        if file is None:
            raise PrunekitError(f"image '{name}' listed in {path} was not found (looked in "
                                f"{', '.join(str(d) for d in dirs[:3])})", "add the image, or remove its entry and annotations")
        w, h = (int(im["width"]), int(im["height"])) if "width" in im and "height" in im else _image_size(file)
        sizes[iid] = (w, h, file)
    for a in anns:
        try:
            aid, iid, cid = a.get("id", "?"), int(a["image_id"]), int(a["category_id"])
            x, y, w, h = (float(v) for v in a["bbox"])
        except (KeyError, TypeError, ValueError):
            raise PrunekitError(f"annotation {str(a)[:60]} in {path} is malformed",
                                "each annotation needs image_id, category_id and bbox [x, y, w, h]") from None
        if cid not in label_of:
            raise PrunekitError(f"annotation {aid} in {path}: category_id {cid} is not in the file's categories "
                                f"({', '.join(str(c) for c, _ in cats)})", "add the category to 'categories' or fix the id")
        if iid not in sizes:
            raise PrunekitError(f"annotation {aid} in {path}: image_id {iid} is not in the file's images",
                                "add the image entry or remove the annotation")
        W, H, file = sizes[iid]
        if w <= 0 or h <= 0 or x < -0.5 or y < -0.5 or x + w > W + 0.5 or y + h > H + 0.5:
            raise PrunekitError(f"annotation {aid} in {path}: box [x={x:g}, y={y:g}, w={w:g}, h={h:g}] lies outside "
                                f"image '{file.name}' ({W}x{H}) or is empty", "clip the box to the image or fix it")
        box = [max(x, 0.0), max(y, 0.0), min(x + w, float(W)), min(y + h, float(H))]
        per_image[iid].append((box, label_of[cid], int(a.get("iscrowd", 0) or 0)))
    records = [_record(sizes[i][2], sizes[i][0], sizes[i][1], per_image[i]) for i in sorted(images)]
    return records, tuple(n for _, n in cats)


def _record(file: Path, w: int, h: int, objs: list[tuple[list[float], int, int]]) -> Record:
    return Record(file, w, h, torch.tensor([o[0] for o in objs], dtype=torch.float32).view(-1, 4),
                  torch.tensor([o[1] for o in objs], dtype=torch.int64),
                  torch.tensor([o[2] for o in objs], dtype=torch.int64))


# -- Pascal VOC ------------------------------------------------------------------------------------
def read_voc(root: Path) -> tuple[list[Record], list[Record], tuple[str, ...]]:
    """Train and val records and class names of a VOC folder, fully validated."""
    ann, imgs = root / "Annotations", root / "JPEGImages"
    if not ann.is_dir() or not imgs.is_dir():
        raise PrunekitError(f"{root} has no Annotations/ or JPEGImages/ folder",
                            "voc:DIR expects DIR/Annotations/*.xml and DIR/JPEGImages/")
    listing = root / "classes.txt"
    classes = tuple(line.strip() for line in listing.read_text().splitlines() if line.strip()) if listing.is_file() \
        else VOC_CLASSES
    label_of = {c: i + 1 for i, c in enumerate(classes)}
    xmls = sorted(ann.glob("*.xml"))
    if not xmls:
        raise PrunekitError(f"{ann} holds no .xml annotation files", "put one Pascal VOC XML file per image there")
    records = {x.stem: _voc_record(x, imgs, label_of, listing) for x in xmls}
    sets = root / "ImageSets" / "Main"
    if (sets / "train.txt").is_file() and (sets / "val.txt").is_file():
        def ids(split: str) -> list[str]:
            names = [line.split()[0] for line in (sets / f"{split}.txt").read_text().splitlines() if line.strip()]
            missing = [n for n in names if n not in records]
            if missing:
                raise PrunekitError(f"{sets / (split + '.txt')} lists '{missing[0]}', which has no "
                                    f"Annotations/{missing[0]}.xml", "add the annotation or remove the line")
            return names
        train, val = ids("train"), ids("val")
    else:
        names = sorted(records)
        val = names[4::5]
        train = [n for n in names if n not in set(val)]
    if not train or not val:
        raise PrunekitError(f"{root}: the train or val split is empty", "give at least 2 annotated images")
    return [records[n] for n in train], [records[n] for n in val], classes


def _voc_record(xml: Path, imgs: Path, label_of: dict[str, int], listing: Path) -> Record:
    if xml.stat().st_size == 0:
        raise PrunekitError(f"annotation file {xml} is empty", "write the Pascal VOC XML for that image or remove it")
    try:
        root = ET.parse(xml).getroot()
    except ET.ParseError as exc:
        raise PrunekitError(f"annotation file {xml} is not valid XML ({exc})", "fix or re-export it") from None
    name = (root.findtext("filename") or f"{xml.stem}.jpg").strip()
    file = imgs / name
    if not file.is_file():
        raise PrunekitError(f"image '{name}' named by {xml} was not found in {imgs}", "add the image or remove the XML")
    size = root.find("size")
    try:
        w, h = (int(float(size.findtext("width"))), int(float(size.findtext("height")))) if size is not None \
            else _image_size(file)
    except (TypeError, ValueError):
        w, h = _image_size(file)
    if w <= 0 or h <= 0:
        w, h = _image_size(file)
    objs = []
    for obj in root.findall("object"):
        cls = (obj.findtext("name") or "").strip()
        if cls not in label_of:
            where = f"the classes in {listing}" if listing.is_file() else "the 20 Pascal VOC classes"
            raise PrunekitError(f"{xml}: object class '{cls}' is not one of {where}",
                                f"list every class, one per line, in {listing}")
        bb = obj.find("bndbox")
        try:
            box = [float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]  # type: ignore[union-attr, arg-type]
        except (AttributeError, TypeError, ValueError):
            raise PrunekitError(f"{xml}: object '{cls}' has no complete bndbox", "give xmin, ymin, xmax, ymax") from None
        # VOC boxes are 1-based inclusive pixel indices: [xmin - 1, xmax] in pixel edges.
        x0, y0, x1, y1 = box[0] - 1, box[1] - 1, box[2], box[3]
        if x0 < -0.5 or y0 < -0.5 or x1 > w + 0.5 or y1 > h + 0.5 or x1 <= x0 or y1 <= y0:
            raise PrunekitError(f"{xml}: box {[int(v) if v.is_integer() else v for v in box]} of '{cls}' lies outside "
                                f"image '{name}' ({w}x{h}) or is empty", "clip the box to the image or fix it")
        difficult = int(float(obj.findtext("difficult") or 0))
        objs.append(([max(x0, 0.0), max(y0, 0.0), min(x1, float(w)), min(y1, float(h))], label_of[cls], difficult))
    return _record(file, w, h, objs)


def count_objects(dataset: DetectionDataset) -> int:
    """Objects over all images (what an mAP is computed over)."""
    return sum(len(r.labels) for r in dataset.records)

