"""Readers for the published pre-corrupted test sets, when a user has them on disk.

Nothing is downloaded. Two layouts are understood:

* **CIFAR-10-C / CIFAR-100-C**: ``DIR/<corruption>.npy`` (uint8, [5 * n, H, W, 3]; severity s
  occupies rows ``(s - 1) * n .. s * n``) and ``DIR/labels.npy`` (length 5 * n, or n);
* **ImageNet-C**: ``DIR/<corruption>/<severity>/<wnid>/*.JPEG``, optionally grouped as
  ``DIR/<group>/<corruption>/...`` (the published archives use noise/, blur/, weather/, digital/,
  extra/).

Both yield one `CorruptedSet` per (corruption, severity); its ``loader`` is a re-iterable of
(images [B, 3, H, W] float in [0, 1], labels [B] int64) batches, which `metrics` consumes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision.io as tvio

from prunekit.errors import PrunekitError
from prunekit.robustness.corruptions import ALL_CORRUPTIONS, validate_names, validate_severity

_IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}


@dataclass(frozen=True)
class CorruptedSet:
    """One (corruption, severity) cell of a pre-corrupted test set."""

    corruption: str
    severity: int
    size: int
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]]


class _NpyBatches:
    """Re-iterable batches over a slice of a memory-mapped uint8 NHWC array."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int) -> None:
        self.images, self.labels, self.batch_size = images, labels, batch_size

    def __len__(self) -> int:
        return (len(self.images) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self.images), self.batch_size):
            chunk = np.ascontiguousarray(self.images[start : start + self.batch_size])
            x = torch.from_numpy(chunk).permute(0, 3, 1, 2).float().div_(255.0)
            y = torch.from_numpy(np.asarray(self.labels[start : start + self.batch_size], dtype=np.int64))
            yield x.contiguous(), y


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise PrunekitError(f"batch size must be at least 1, got {batch_size}")


def _pick(available: Sequence[str], wanted: Sequence[str] | None, where: Path) -> list[str]:
    if wanted is None:
        found = [c for c in ALL_CORRUPTIONS if c in available]
        if not found:
            raise PrunekitError(
                f"no corruption files found in {where}",
                f"expected files or folders named after corruptions, e.g. {ALL_CORRUPTIONS[0]}",
            )
        return found
    validate_names(wanted)
    missing = [c for c in wanted if c not in available]
    if missing:
        raise PrunekitError(
            f"{where} has no data for {', '.join(missing)}",
            f"available there: {', '.join(a for a in available if a in ALL_CORRUPTIONS) or 'none'}",
        )
    return list(wanted)


def read_cifar_c(
    root: str | Path,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    *,
    batch_size: int = 256,
    image_size: int | None = None,
    limit: int | None = None,
) -> Iterator[CorruptedSet]:
    """Yield the cells of a CIFAR-10-C / CIFAR-100-C folder.

    `image_size` is the side the model expects; a file with another size raises PrunekitError
    (the published files are 32 x 32). `limit` keeps the first images of every cell.
    """
    root = Path(root)
    _check_batch_size(batch_size)
    if not root.is_dir():
        raise PrunekitError(
            f"CIFAR-C folder {root} does not exist", "pass the folder holding <corruption>.npy"
        )
    labels_path = root / "labels.npy"
    if not labels_path.is_file():
        raise PrunekitError(
            f"{labels_path} is missing", "the CIFAR-10-C layout has labels.npy next to the images"
        )
    available = sorted(p.stem for p in root.glob("*.npy") if p.stem != "labels")
    names = _pick(available, corruptions, root)
    sevs = [validate_severity(s) for s in severities]
    labels_all = np.load(labels_path, mmap_mode="r")
    for name in names:
        path = root / f"{name}.npy"
        try:
            arr = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise PrunekitError(f"cannot read {path}: {exc}") from exc
        if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8 or arr.shape[0] % 5:
            raise PrunekitError(
                f"{path} has shape {tuple(arr.shape)} and dtype {arr.dtype}",
                "expected uint8 [5 * n, H, W, 3] (five severities stacked)",
            )
        if image_size is not None and (arr.shape[1] != image_size or arr.shape[2] != image_size):
            raise PrunekitError(
                f"{path} holds {arr.shape[1]}x{arr.shape[2]} images but the model expects "
                f"{image_size}x{image_size}",
                "use a model trained at the data's resolution, or pass the matching --input-size",
            )
        per = arr.shape[0] // 5
        if len(labels_all) not in (per, 5 * per):
            raise PrunekitError(
                f"{labels_path} has {len(labels_all)} labels but {path} has {arr.shape[0]} images",
                "labels.npy must hold n or 5 * n labels",
            )
        take = per if limit is None else min(per, max(int(limit), 0))
        for sev in sevs:
            start = (sev - 1) * per
            lab_start = start if len(labels_all) == 5 * per else 0
            images = arr[start : start + take]
            labels = labels_all[lab_start : lab_start + take]
            yield CorruptedSet(name, sev, take, _NpyBatches(images, labels, batch_size))


class _FolderBatches:
    """Re-iterable batches decoded from a list of (path, label) image files."""

    def __init__(self, items: list[tuple[Path, int]], batch_size: int, image_size: int | None) -> None:
        self.items, self.batch_size, self.image_size = items, batch_size, image_size

    def __len__(self) -> int:
        return (len(self.items) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self.items), self.batch_size):
            chunk = self.items[start : start + self.batch_size]
            imgs = [self._load(p) for p, _ in chunk]
            first = imgs[0].shape
            for (p, _), img in zip(chunk, imgs, strict=True):
                if img.shape != first:
                    raise PrunekitError(
                        f"{p} is {img.shape[2]}x{img.shape[1]} but {chunk[0][0]} is {first[2]}x{first[1]}",
                        "ImageNet-C images all have the same size (224x224); check the folder",
                    )
            x = torch.stack(imgs).float().div_(255.0)
            yield x, torch.tensor([lab for _, lab in chunk], dtype=torch.int64)

    def _load(self, path: Path) -> torch.Tensor:
        try:
            img = tvio.decode_image(tvio.read_file(str(path)), mode=tvio.ImageReadMode.RGB)
        except RuntimeError as exc:
            raise PrunekitError(f"cannot decode {path}: {exc}") from exc
        if self.image_size is not None and (
            img.shape[1] != self.image_size or img.shape[2] != self.image_size
        ):
            raise PrunekitError(
                f"{path} is {img.shape[2]}x{img.shape[1]} but the model expects {self.image_size}x{self.image_size}",
                "use a model trained at the data's resolution, or pass the matching --input-size",
            )
        return img


def _imagenet_c_dirs(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        if child.name in ALL_CORRUPTIONS:
            found[child.name] = child
        else:  # grouped layout: root/<group>/<corruption>
            for sub in sorted(p for p in child.iterdir() if p.is_dir()):
                if sub.name in ALL_CORRUPTIONS:
                    found.setdefault(sub.name, sub)
    return found


def read_imagenet_c(
    root: str | Path,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    *,
    batch_size: int = 64,
    image_size: int | None = None,
    class_to_idx: dict[str, int] | None = None,
    limit: int | None = None,
) -> Iterator[CorruptedSet]:
    """Yield the cells of an ImageNet-C folder.

    Labels come from `class_to_idx` (wnid -> index, e.g. from the clean validation folder); by
    default the sorted class folders of each cell are numbered 0..K-1, as torchvision's ImageFolder
    does. `limit` keeps the first images (in sorted order) of every cell.
    """
    root = Path(root)
    _check_batch_size(batch_size)
    if not root.is_dir():
        raise PrunekitError(
            f"ImageNet-C folder {root} does not exist",
            "pass the folder holding <corruption>/<severity>/<wnid>/",
        )
    dirs = _imagenet_c_dirs(root)
    names = _pick(sorted(dirs), corruptions, root)
    sevs = [validate_severity(s) for s in severities]
    for name in names:
        for sev in sevs:
            cell = dirs[name] / str(sev)
            if not cell.is_dir():
                raise PrunekitError(f"{cell} is missing", f"ImageNet-C keeps severity {sev} of {name} there")
            classes = sorted(p.name for p in cell.iterdir() if p.is_dir())
            mapping = class_to_idx or {c: i for i, c in enumerate(classes)}
            unknown = [c for c in classes if c not in mapping]
            if unknown:
                raise PrunekitError(
                    f"{cell} has class folders not in the class map: {', '.join(unknown[:5])}"
                )
            items = [
                (f, mapping[c])
                for c in classes
                for f in sorted((cell / c).iterdir())
                if f.suffix.lower() in _IMAGE_SUFFIXES
            ]
            if not items:
                raise PrunekitError(f"{cell} holds no images", "expected <wnid>/*.JPEG files")
            if limit is not None:
                items = items[: max(int(limit), 0)]
            yield CorruptedSet(name, sev, len(items), _FolderBatches(items, batch_size, image_size))
