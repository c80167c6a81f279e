"""Throughput of the corruption suite next to plain evaluation, in one run.

For each image size (32 px with the CIFAR-10-C table, 224 px with the ImageNet-C table) it times,
on the same batch of natural photographs:

* plain evaluation: a forward pass of a small model (torchvision resnet18, 10 classes);
* every corruption at severities 1..5 (``prunekit.robustness.corrupt``, batched on the device);
* optionally the published per-image NumPy implementation (``imagecorruptions-imaug``), on a few
  images, for reference.

"ratio" is corruption images/s divided by evaluation images/s: above 1 the suite is faster than
the model it feeds, i.e. not the bottleneck of `prunekit eval` / `check`. "suite share" is the
fraction of a full 15 x 5 corruption evaluation spent corrupting rather than in the model.

    python benchmarks/robustness.py                      # CPU, all threads
    python benchmarks/robustness.py --device cuda --json results.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from rich.console import Console
from rich.table import Table

from prunekit.robustness.corruptions import ALL_CORRUPTIONS, CORRUPTIONS, corrupt


def photo_batch(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """n random crops of scikit-learn's two bundled photographs, resized to size x size."""
    from sklearn.datasets import load_sample_image

    photos = [
        torch.from_numpy(load_sample_image(f).copy()).permute(2, 0, 1).float() / 255
        for f in ("china.jpg", "flower.jpg")
    ]
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        p = photos[i % 2]
        side = int(torch.randint(160, 400, (1,), generator=g))
        top = int(torch.randint(0, p.shape[1] - side + 1, (1,), generator=g))
        left = int(torch.randint(0, p.shape[2] - side + 1, (1,), generator=g))
        crop = p[:, top : top + side, left : left + side]
        out.append(F.interpolate(crop[None], size=(size, size), mode="area")[0])
    return torch.stack(out).clamp(0, 1)


def timed(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median wall time of fn() in seconds after one warm-up call."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def reference_rate(name: str, images: np.ndarray) -> float | None:
    """Images/s of imagecorruptions-imaug (per image, NumPy) over severities 1..5, or None."""
    try:
        import imagecorruptions
    except ImportError:
        return None
    imagecorruptions.corrupt(images[0], corruption_name=name, severity=1)  # warm-up (numba compile)
    t0 = time.perf_counter()
    for sev in range(1, 6):
        for img in images:
            imagecorruptions.corrupt(img, corruption_name=name, severity=sev)
    return 5 * len(images) / (time.perf_counter() - t0)


def run(
    sizes: list[int],
    batches: dict[int, int],
    repeats: int,
    device: torch.device,
    names: list[str],
    ref_images: int,
) -> dict:
    model = torchvision.models.resnet18(num_classes=10).eval().to(device)
    results: dict = {"device": str(device), "threads": torch.get_num_threads(), "sizes": {}}
    for size in sizes:
        n = batches[size]
        x = photo_batch(n, size).to(device)
        # The model is timed again after every corruption, and the median of all its timings is
        # used, so that load changes on a shared machine hit both sides of each ratio alike.
        with torch.inference_mode():
            eval_times = [timed(lambda x=x: model(x), repeats, device)]
        ref_np = (photo_batch(ref_images, size, seed=1).permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
        corrupt_times: dict[str, float] = {}
        refs: dict[str, float | None] = {}
        for name in names:
            corrupt_times[name] = (
                sum(
                    timed(lambda s=s, x=x, c=name: corrupt(x, c, s, seed=s), repeats, device)
                    for s in range(1, 6)
                )
                / 5
            )
            with torch.inference_mode():
                eval_times.append(timed(lambda x=x: model(x), 1, device))
            refs[name] = reference_rate(name, ref_np) if ref_images else None
        t_eval = statistics.median(eval_times)
        row: dict = {"batch": n, "eval_img_s": n / t_eval, "corruptions": {}}
        for name, t in corrupt_times.items():
            row["corruptions"][name] = {"img_s": n / t, "ratio": t_eval / t, "reference_img_s": refs[name]}
        total_corrupt = sum(5 * t for c, t in corrupt_times.items() if c in CORRUPTIONS)
        cells = 5 * len([c for c in names if c in CORRUPTIONS])
        row["suite_share"] = total_corrupt / (total_corrupt + cells * t_eval) if cells else None
        results["sizes"][str(size)] = row
    return results


def table(results: dict) -> Table:
    sizes = list(results["sizes"])
    t = Table(
        title=f"Corruption suite vs plain evaluation (resnet18) on {results['device']}, {results['threads']} threads"
    )
    t.add_column("corruption")
    for s in sizes:
        b = results["sizes"][s]["batch"]
        t.add_column(f"{s}px img/s\n(batch {b})", justify="right")
        t.add_column(f"{s}px ratio\nvs eval", justify="right")
        t.add_column(f"{s}px NumPy\nref img/s", justify="right")
    t.add_row(
        "plain evaluation",
        *[x for s in sizes for x in (f"{results['sizes'][s]['eval_img_s']:.0f}", "1.00", "")],
        end_section=True,
    )
    names = list(results["sizes"][sizes[0]]["corruptions"])
    for name in names:
        cells = []
        for s in sizes:
            c = results["sizes"][s]["corruptions"][name]
            ratio = f"{c['ratio']:.2f}"
            cells += [f"{c['img_s']:.0f}", f"[red]{ratio}[/]" if c["ratio"] < 1 else ratio,
                      "-" if c["reference_img_s"] is None else f"{c['reference_img_s']:.0f}"]  # fmt: skip
        t.add_row(name.replace("_", " "), *cells)
    shares = [results["sizes"][s]["suite_share"] for s in sizes]
    t.add_section()
    t.add_row(
        "suite share of a 15x5 eval",
        *[x for v in shares for x in ("", "-" if v is None else f"{100 * v:.0f} %", "")],
    )
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="32,224")
    ap.add_argument("--batch-32", type=int, default=256, help="batch size for 32 px")
    ap.add_argument("--batch-224", type=int, default=32, help="batch size for 224 px")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--extra", action="store_true", help="also time the 4 extra corruptions")
    ap.add_argument(
        "--reference-images", type=int, default=4, help="images for the NumPy reference (0: skip)"
    )
    ap.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    batches = {s: (args.batch_32 if s < 128 else args.batch_224) for s in sizes}
    names = list(ALL_CORRUPTIONS if args.extra else CORRUPTIONS)
    results = run(sizes, batches, args.repeats, torch.device(args.device), names, args.reference_images)
    Console(width=150).print(table(results))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
