"""Datasets behind `--data SPEC`: built-in digits, CIFAR folders, ImageFolder trees, synthetic.

Every loader yields float32 NCHW images in [0, 1] with 3 channels, and int64 labels. Nothing is
ever downloaded: a missing directory is an error that names the expected layout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from prunekit.errors import PrunekitError

SPEC_HELP = (
    "digits (built-in scikit-learn handwritten digits, no download), cifar10:DIR, cifar100:DIR "
    "(torchvision layout, on disk), imagefolder:DIR (DIR/train/<class>/*, DIR/val/<class>/*), "
    "or synthetic[:N] (random class templates, for tests)"
)


@dataclass
class DataBundle:
    """Train and validation datasets of one `--data` spec, plus what a model needs to fit them."""

    spec: str
    train_set: Dataset
    val_set: Dataset
    num_classes: int
    input_size: int
    # How samples batch (None: torch's default stacking) and how a model fits them (None: the
    # classifier's cross-entropy; a task with other targets, detection, sets both: prunekit.tasks).
    collate: Callable[[list[Any]], Any] | None = None
    objective: Any = None

    def loader(
        self,
        split: str,
        batch_size: int,
        seed: int = 0,
        shuffle: bool | None = None,
        distributed: bool = False,
        num_workers: int = 0,
    ) -> DataLoader:
        """A DataLoader whose order depends only on (seed, epoch): call `loader.sampler.set_epoch(e)`."""
        dataset = self.train_set if split == "train" else self.val_set
        shuffle = (split == "train") if shuffle is None else shuffle
        sampler: Sampler[int]
        if distributed:
            from torch.utils.data.distributed import DistributedSampler

            sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=False)
        else:
            sampler = EpochSampler(len(dataset), shuffle=shuffle, seed=seed)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                          collate_fn=self.collate)


class EpochSampler(Sampler[int]):
    """Deterministic per-epoch permutation (like DistributedSampler for one process), so a run
    resumed at epoch e sees exactly the batches an uninterrupted run would."""

    def __init__(self, n: int, shuffle: bool, seed: int) -> None:
        self.n, self.shuffle, self.seed, self.epoch = n, shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.n))
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


class ResizedTensorDataset(Dataset):
    """Small images held in memory, resized to `size` on access (keeps 224 px digits cheap)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, size: int) -> None:
        self.images, self.labels, self.size = images, labels, size

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = self.images[i]
        if img.shape[-1] != self.size or img.shape[-2] != self.size:
            img = F.interpolate(img[None], size=(self.size, self.size), mode="bilinear", align_corners=False)[0]
            img = img.clamp(0.0, 1.0)
        return img, self.labels[i]


def default_input_size(spec: str) -> int:
    """The input resolution a dataset is usually trained at."""
    kind = spec.split(":", 1)[0]
    return 224 if kind == "imagefolder" else 32


def load_data(spec: str, input_size: int | None = None, num_classes: int | None = None) -> DataBundle:
    """Resolve a `--data` spec into train/val datasets at `input_size` (see SPEC_HELP)."""
    if not isinstance(spec, str) or not spec.strip():
        raise PrunekitError("empty --data spec", f"use one of: {SPEC_HELP}")
    kind, _, arg = spec.partition(":")
    size = input_size if input_size is not None else default_input_size(spec)
    if not 8 <= size <= 1024:
        raise PrunekitError(f"--input-size must be between 8 and 1024, got {size}")
    if kind == "digits":
        return _digits(spec, size)
    if kind == "synthetic":
        n = spec_count(arg, 256, spec)
        return _synthetic(spec, size, num_classes or 10, n)
    if kind in ("cifar10", "cifar100"):
        return _cifar(spec, kind, arg, size)
    if kind == "imagefolder":
        return _imagefolder(spec, arg, size)
    raise PrunekitError(f"unknown --data spec '{spec}'", f"use one of: {SPEC_HELP}")


def spec_count(arg: str, default: int, spec: str, example: str = "synthetic:256", most: int = 1_000_000) -> int:
    """The N of a `name:N` data spec (`default` when left out), between 8 and `most`."""
    if not arg:
        return default
    try:
        n = int(arg)
    except ValueError:
        raise PrunekitError(f"bad --data spec '{spec}': '{arg}' is not a number", f"use {example}") from None
    if not 8 <= n <= most:
        raise PrunekitError(f"bad --data spec '{spec}': size must be between 8 and {most}")
    return n


def _digits(spec: str, size: int) -> DataBundle:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32) / 16.0  # 8x8 scans, values 0..16
    images = images[:, None].expand(-1, 3, -1, -1).contiguous()
    labels = torch.tensor(digits.target, dtype=torch.int64)
    # A fixed stratified split, independent of --seed: every run is evaluated on the same images.
    idx_train, idx_val = train_test_split(
        list(range(len(labels))), test_size=0.2, random_state=0, stratify=digits.target
    )
    return DataBundle(
        spec=spec,
        train_set=ResizedTensorDataset(images[idx_train], labels[idx_train], size),
        val_set=ResizedTensorDataset(images[idx_val], labels[idx_val], size),
        num_classes=10,
        input_size=size,
    )


def _synthetic(spec: str, size: int, num_classes: int, n: int) -> DataBundle:
    g = torch.Generator().manual_seed(1234)
    base = 8
    templates = torch.rand(num_classes, 3, base, base, generator=g)

    def make(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(0, num_classes, (count,), generator=g)
        noise = 0.15 * torch.randn(count, 3, base, base, generator=g)
        return (templates[labels] + noise).clamp(0, 1), labels

    x_train, y_train = make(n)
    x_val, y_val = make(max(n // 4, 8))
    return DataBundle(
        spec=spec,
        train_set=ResizedTensorDataset(x_train, y_train, size),
        val_set=ResizedTensorDataset(x_val, y_val, size),
        num_classes=num_classes,
        input_size=size,
    )


def existing_dir(arg: str, spec: str, expected: str) -> Path:
    """The directory of a `name:DIR` data spec; one-line errors when it is left out or missing."""
    if not arg:
        raise PrunekitError(f"--data '{spec}' needs a directory", f"use {spec.split(':')[0]}:DIR with {expected}")
    path = Path(arg).expanduser()
    if not path.is_dir():
        raise PrunekitError(f"data directory not found: {path}", f"expected {expected}; nothing is downloaded")
    return path


def _cifar(spec: str, kind: str, arg: str, size: int) -> DataBundle:
    import torchvision
    from torchvision import transforms as T

    folder = "cifar-10-batches-py" if kind == "cifar10" else "cifar-100-python"
    root = existing_dir(arg, spec, f"DIR/{folder}/ (the torchvision {kind} layout)")
    if not (root / folder).is_dir():
        raise PrunekitError(
            f"{root} has no {folder}/ folder",
            f"point {kind}:DIR at the folder that contains {folder}/ (torchvision layout); nothing is downloaded",
        )
    cls = torchvision.datasets.CIFAR10 if kind == "cifar10" else torchvision.datasets.CIFAR100
    tf = [T.ToTensor()] + ([T.Resize(size, antialias=True)] if size != 32 else [])
    try:
        train = cls(str(root), train=True, download=False, transform=T.Compose(tf))
        val = cls(str(root), train=False, download=False, transform=T.Compose(tf))
    except (RuntimeError, OSError, ValueError) as exc:
        raise PrunekitError(f"cannot read {kind} from {root / folder}: {exc}", "check the files are complete") from exc
    return DataBundle(spec, train, val, 10 if kind == "cifar10" else 100, size)


def _imagefolder(spec: str, arg: str, size: int) -> DataBundle:
    import torchvision
    from torchvision import transforms as T

    root = existing_dir(arg, spec, "DIR/train/<class>/*.jpg and DIR/val/<class>/*.jpg")
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise PrunekitError(
                f"{root} has no {split}/ folder", "expected DIR/train/<class>/*.jpg and DIR/val/<class>/*.jpg"
            )
    tf = T.Compose([T.Resize(int(size * 256 / 224), antialias=True), T.CenterCrop(size), T.ToTensor()])

    def load(split: str) -> Dataset:
        try:
            return torchvision.datasets.ImageFolder(str(root / split), transform=tf)
        except (FileNotFoundError, OSError) as exc:
            raise PrunekitError(f"cannot read {root / split}: {exc}", "each class needs its own folder of images") from exc

    train, val = load("train"), load("val")
    if train.classes != val.classes:
        raise PrunekitError(f"{root}: train/ and val/ have different class folders")
    return DataBundle(spec, train, val, len(train.classes), size)
