from __future__ import annotations

import pytest
import torch

from prunekit.data import load_data
from prunekit.errors import PrunekitError


def test_digits_split_is_deterministic_and_in_range():
    a, b = load_data("digits", 32), load_data("digits", 32)
    assert len(a.train_set) == 1437 and len(a.val_set) == 360 and a.num_classes == 10
    x, y = a.val_set[0]
    assert x.shape == (3, 32, 32) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert torch.equal(a.val_set[5][0], b.val_set[5][0]) and int(a.val_set[5][1]) == int(b.val_set[5][1])


def test_loader_order_depends_only_on_seed_and_epoch():
    data = load_data("synthetic:64", 16, 4)
    first = [y.tolist() for _, y in data.loader("train", 16, seed=3)]
    again = data.loader("train", 16, seed=3)
    assert [y.tolist() for _, y in again] == first
    again.sampler.set_epoch(1)
    assert [y.tolist() for _, y in again] != first


def test_synthetic_any_classes_and_size():
    data = load_data("synthetic:32", 40, 13)
    assert data.num_classes == 13 and data.train_set[0][0].shape == (3, 40, 40)


@pytest.mark.parametrize(
    "spec, match",
    [
        ("cifar10:/no/such/dir", "not found"),
        ("imagefolder:/no/such/dir", "not found"),
        ("cifar10", "needs a directory"),
        ("mnist", "unknown --data"),
        ("", "empty"),
        ("synthetic:abc", "not a number"),
    ],
)
def test_bad_specs(spec, match):
    with pytest.raises(PrunekitError, match=match):
        load_data(spec)


def test_wrong_layouts_name_what_was_expected(tmp_path):
    with pytest.raises(PrunekitError, match="cifar-10-batches-py"):
        load_data(f"cifar10:{tmp_path}")
    (tmp_path / "train").mkdir()
    with pytest.raises(PrunekitError, match="val/"):
        load_data(f"imagefolder:{tmp_path}")


def test_imagefolder_reads_class_folders(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(2):
                Image.new("L", (40, 30), color=50 * i).save(tmp_path / split / cls / f"{i}.png")
    data = load_data(f"imagefolder:{tmp_path}", 32)
    assert data.num_classes == 2 and data.train_set[0][0].shape == (3, 32, 32)
