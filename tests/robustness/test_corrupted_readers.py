"""Readers of the published CIFAR-10-C and ImageNet-C layouts, on tiny fixtures written here."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
import torchvision.io as tvio

from prunekit.errors import PrunekitError
from prunekit.robustness.readers import read_cifar_c, read_imagenet_c


@contextlib.contextmanager
def user_error(text: str):
    """Expect a PrunekitError whose one-line form (message + hint) contains `text`."""
    with pytest.raises(PrunekitError) as err:
        yield
    assert text in err.value.one_line()


def make_cifar_c(root, n=6, size=32, names=("fog", "contrast"), labels_per_severity=False):
    """CIFAR-10-C layout: <corruption>.npy uint8 [5 n, H, W, 3] and labels.npy."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for c, name in enumerate(names):
        arr = np.zeros((5 * n, size, size, 3), dtype=np.uint8)
        for s in range(5):
            for i in range(n):  # encode (corruption, severity, index) in the pixels
                arr[s * n + i] = [10 * c, 40 * s, i]
        arr[..., 0] += rng.integers(0, 3, size=arr.shape[:-1], dtype=np.uint8)
        np.save(root / f"{name}.npy", arr)
    labels = np.arange(n, dtype=np.uint8) % 10
    np.save(root / "labels.npy", labels if labels_per_severity else np.tile(labels, 5))
    return root


def test_cifar_c_yields_each_severity_block(tmp_path):
    root = make_cifar_c(tmp_path / "CIFAR-10-C")
    cells = list(read_cifar_c(root, severities=(1, 3, 5), batch_size=4, image_size=32))
    assert [(c.corruption, c.severity) for c in cells] == [
        ("fog", 1), ("fog", 3), ("fog", 5), ("contrast", 1), ("contrast", 3), ("contrast", 5),
    ]  # fmt: skip
    for cell in cells:
        batches = list(cell.loader)
        assert [b[0].shape[0] for b in batches] == [4, 2] and cell.size == 6
        x = torch.cat([b[0] for b in batches])
        y = torch.cat([b[1] for b in batches])
        assert x.shape == (6, 3, 32, 32) and x.dtype == torch.float32
        assert 0.0 <= x.min() and x.max() <= 1.0
        assert y.dtype == torch.int64 and y.tolist() == list(range(6))
        # green channel holds 40 * (severity - 1), blue the index: the right block was read
        assert torch.allclose(x[:, 1].mean((1, 2)), torch.full((6,), 40 * (cell.severity - 1) / 255))
        assert torch.allclose(x[:, 2, 0, 0], torch.arange(6) / 255)
    assert len(list(cells[0].loader)) == 2, "loaders are re-iterable"


def test_cifar_c_short_labels_and_limit(tmp_path):
    root = make_cifar_c(tmp_path / "c", labels_per_severity=True)
    (cell,) = list(read_cifar_c(root, ["contrast"], [2], limit=3))
    ((x, y),) = list(cell.loader)
    assert x.shape[0] == 3 and y.tolist() == [0, 1, 2]


def test_cifar_c_size_mismatch_is_a_clear_error(tmp_path):
    root = make_cifar_c(tmp_path / "c", size=32)
    with user_error("32x32 images but the model expects 224x224"):
        list(read_cifar_c(root, image_size=224))


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda r: None, "does not exist"),
        (lambda r: r.mkdir(), "labels.npy"),
        (
            lambda r: (make_cifar_c(r), (r / "fog.npy").unlink(), (r / "contrast.npy").unlink()),
            "no corruption files",
        ),
        (
            lambda r: (make_cifar_c(r), np.save(r / "fog.npy", np.zeros((7, 32, 32, 3), np.uint8))),
            "has shape",
        ),
        (lambda r: (make_cifar_c(r), np.save(r / "labels.npy", np.zeros(4, np.uint8))), "labels"),
    ],
)
def test_cifar_c_bad_folders(tmp_path, setup, message):
    root = tmp_path / "c"
    setup(root)
    with user_error(message):
        list(read_cifar_c(root))


def test_cifar_c_unknown_or_missing_corruption(tmp_path):
    root = make_cifar_c(tmp_path / "c")
    with user_error("valid names"):
        list(read_cifar_c(root, ["fogg"]))
    with user_error("no data for snow"):
        list(read_cifar_c(root, ["snow"]))
    with user_error("outside 1..5"):
        list(read_cifar_c(root, ["fog"], [9]))


def make_imagenet_c(root, grouped=False, size=24, wnids=("n01440764", "n01443537")):
    """ImageNet-C layout: <corruption>/<severity>/<wnid>/*.JPEG (optionally under a group folder)."""
    for name in ("gaussian_noise", "fog"):
        base = root / ("noise" if name == "gaussian_noise" else "weather") / name if grouped else root / name
        for sev in range(1, 6):
            for k, wnid in enumerate(wnids):
                d = base / str(sev) / wnid
                d.mkdir(parents=True)
                for i in range(2):
                    img = torch.full((3, size, size), 20 * sev + k, dtype=torch.uint8)
                    tvio.write_jpeg(img, str(d / f"ILSVRC2012_val_{k}{i}.JPEG"), quality=95)
    return root


@pytest.mark.parametrize("grouped", [False, True])
def test_imagenet_c_folder(tmp_path, grouped):
    root = make_imagenet_c(tmp_path / "imagenet-c", grouped=grouped)
    cells = list(read_imagenet_c(root, severities=(2, 4), batch_size=3, image_size=24))
    assert [(c.corruption, c.severity) for c in cells] == [
        ("gaussian_noise", 2), ("gaussian_noise", 4), ("fog", 2), ("fog", 4),
    ]  # fmt: skip
    for cell in cells:
        xs, ys = zip(*cell.loader, strict=True)
        x, y = torch.cat(xs), torch.cat(ys)
        assert x.shape == (4, 3, 24, 24) and y.tolist() == [0, 0, 1, 1]
        expected = torch.tensor([20 * cell.severity] * 2 + [20 * cell.severity + 1] * 2) / 255
        assert torch.allclose(x.mean((1, 2, 3)), expected, atol=2 / 255)


def test_imagenet_c_class_map_and_errors(tmp_path):
    root = make_imagenet_c(tmp_path / "inc")
    (cell,) = list(read_imagenet_c(root, ["fog"], [1], class_to_idx={"n01440764": 0, "n01443537": 7}))
    assert torch.cat([y for _, y in cell.loader]).tolist() == [0, 0, 7, 7]
    with user_error("expects 224x224"):
        list(read_imagenet_c(root, image_size=224))[0].loader.__iter__().__next__()
    with user_error("not in the class map"):
        list(read_imagenet_c(root, ["fog"], [1], class_to_idx={"n01440764": 0}))
    with user_error("no data for snow"):
        list(read_imagenet_c(root, ["snow"]))
