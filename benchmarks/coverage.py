"""Model coverage: every torchvision classifier (and popular timm models, when timm is installed)
through prune -> reload from a saved plan -> ONNX export with parity, one subprocess per model.

    python benchmarks/coverage.py                                  # all torchvision classifiers (hours on 2 cores)
    python benchmarks/coverage.py --models resnext50_32x4d swin_t vit_b_16
    python benchmarks/coverage.py --resume                         # skip models already in the CSV

Per model, in its own process (forked from one that imported everything once, or a fresh
interpreter with `--isolation subprocess`) limited to `--memory-gb` (prunekit's guard on graph
building and pruning, plus RLIMIT_AS as a backstop) and `--timeout` seconds:

    build (10 classes, untrained)  -> dense MACs / params at the model's input size
    prune   PruningGraph, magnitude importance pooled over units, `--ratio` of every group's
            channels (widths on multiples of 8 and of the group's unit), physically removed
    reload  plan.json + pruned.safetensors -> apply_plan on a freshly built model, no pickles;
            logits must equal the pruned model's
    export  prunekit's release exporter (dynamo, onnxslim, onnx.checker), parity with ONNX Runtime
            on `--parity-images` random images

A model *passes* when every step does. A PrunekitError is a *refusal* (its one line is the reason);
anything else (a traceback, a timeout, the memory backstop) is a *failure*. Models run at
`--input-size` (64 by default, so 2 CPU cores get through the list) except where the architecture
fixes the input (ViT and MaxViT: 224; Inception v3: at least 96). The table says the size used.

Results: <out>/coverage.csv (one row per model, written as it goes) and <out>/coverage.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

TIMM_MODELS = (
    "resnet50", "efficientnet_b0", "mobilenetv3_large_100", "convnext_tiny", "regnety_016",
    "deit_tiny_patch16_224", "vit_small_patch16_224", "swin_tiny_patch4_window7_224", "levit_128",
    "ghostnet_100", "repvgg_a0",
)
FIELDS = (
    "model", "status", "input", "groups", "fixed", "dense_mmacs", "pruned_mmacs", "macs_ratio",
    "dense_mparams", "pruned_mparams", "convert_diff", "reload_diff", "logit_scale", "parity_diff", "parity_tol",
    "graph_s", "prune_s", "reload_s", "export_s", "seconds", "peak_gb", "reason",
)
GB = 1024**3


def input_size(name: str, default: int) -> int:
    """The input side a model needs: ViT / MaxViT fix it at 224; Inception v3 needs >= 75."""
    base = name.removeprefix("timm:")
    if base.startswith(("vit_", "maxvit", "deit", "swin_tiny_patch4_window7_224", "levit")):
        return 224
    if base.startswith("inception"):
        return max(default, 96)
    return default


def model_list(args: argparse.Namespace) -> list[str]:
    if args.models:
        return list(args.models)
    from prunekit.models import torchvision_classifiers

    names = torchvision_classifiers()
    if not args.no_timm:
        try:
            import timm  # noqa: F401

            names += [f"timm:{n}" for n in TIMM_MODELS]
        except ImportError:
            pass
    return names


# --------------------------------------------------------------------------------------- worker
def trained_like(model: Any) -> None:
    """Give every norm layer random affine parameters and statistics, and scale the classifier up.

    Untrained models (zero-initialised last BatchNorms, tiny classifier weights) output logits of
    1e-16, against which any ONNX export "matches"; these weights make parity mean something.
    """
    import torch
    from torch import nn

    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine and m.track_running_stats:
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
        last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1:]
        for m in last:
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.in_features**0.5)


def run_one(name: str, size: int, ratio: float, parity_images: int) -> dict[str, Any]:
    """Every step on one model, in this process; returns a row (status pass / refused)."""
    import torch

    from prunekit.deploy.onnx import to_onnx
    from prunekit.deploy.parity import check_parity
    from prunekit.models import build_model, load_weights
    from prunekit.pruning import PruningGraph, apply_plan, count_macs_params, select_by_ratio
    from prunekit.runs import save_weights

    torch.manual_seed(0)
    row: dict[str, Any] = {"model": name, "input": size}
    example = torch.zeros(1, 3, size, size)
    x = torch.rand(max(1, parity_images), 3, size, size, generator=torch.Generator().manual_seed(0))
    model = build_model(name, 10).eval()
    trained_like(model)
    with torch.no_grad():
        original = model(x)
    clock = time.perf_counter()
    graph = PruningGraph(model, example, name)
    row["graph_s"] = round(time.perf_counter() - clock, 1)
    with torch.no_grad():  # attention blocks are converted by now: the same function?
        row["convert_diff"] = float((model(x) - original).abs().max())
    if not torch.allclose(model(x), original, atol=1e-4, rtol=1e-4):
        raise RuntimeError(f"the converted model differs from the original by {row['convert_diff']:.3g}")
    # Counted after the graph is built: attention blocks are converted then (same function, but
    # torch-pruning's counter only sees their projections once they are Linear modules).
    macs, params = count_macs_params(model, example)
    row.update(dense_mmacs=round(macs / 1e6, 2), dense_mparams=round(params / 1e6, 3))
    scores = graph.pool_units(graph.importance("magnitude"))
    keep = select_by_ratio(scores, ratio, round_to=8, steps={g.name: g.step for g in graph.groups})
    clock = time.perf_counter()
    graph.prune(keep)
    row["prune_s"] = round(time.perf_counter() - clock, 1)
    row.update(groups=len(graph.groups), fixed=len(graph.fixed))
    macs_p, params_p = count_macs_params(model, example)
    row.update(pruned_mmacs=round(macs_p / 1e6, 2), pruned_mparams=round(params_p / 1e6, 3),
               macs_ratio=round(macs_p / macs, 3))
    with torch.no_grad():
        expected = model(x)
    plan = graph.plan()
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "pruned.safetensors"
        save_weights(model, weights)
        (Path(tmp) / "plan.json").write_text(json.dumps(plan))
        del graph, model
        clock = time.perf_counter()
        rebuilt = apply_plan(build_model(name, 10), json.loads((Path(tmp) / "plan.json").read_text()), example, name)
        load_weights(rebuilt, weights)
        row["reload_s"] = round(time.perf_counter() - clock, 1)
    rebuilt.eval()
    with torch.no_grad():
        got = rebuilt(x)
    row["reload_diff"] = float((got - expected).abs().max())
    if not torch.allclose(got, expected, atol=1e-5, rtol=1e-4):
        raise RuntimeError(f"reloaded model differs from the pruned one by {row['reload_diff']:.3g}")
    clock = time.perf_counter()
    exported = to_onnx(rebuilt, (1, 3, size, size), exporter="release")
    parity = check_parity(rebuilt, exported.data, x)
    row["export_s"] = round(time.perf_counter() - clock, 1)
    row.update(parity_diff=float(parity.max_abs_diff), parity_tol=float(parity.tolerance),
               logit_scale=float(parity.logit_scale))
    if not parity.passed:
        raise RuntimeError(f"ONNX parity failed: max |diff| {parity.max_abs_diff:.3g} > {parity.tolerance:.3g}")
    row["status"] = "pass"
    return row


def one_row(name: str, size: int, ratio: float, parity_images: int) -> dict[str, Any]:
    """`run_one` with its outcome classified: pass, refused (PrunekitError) or fail (anything else)."""
    warnings.filterwarnings("ignore")
    from prunekit.errors import PrunekitError

    started = time.perf_counter()
    row: dict[str, Any] = {"model": name, "input": size}
    try:
        row.update(run_one(name, size, ratio, parity_images))
    except PrunekitError as exc:
        row.update(status="refused", reason=exc.one_line())
    except Exception as exc:  # recorded as a failure: a traceback is a bug to fix, not to hide
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        row.update(status="fail", reason=f"{type(exc).__name__}: {text}"[:300])
    row["seconds"] = round(time.perf_counter() - started, 1)
    row["peak_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB, 2)
    return row


def worker_main(args: argparse.Namespace) -> None:
    """`--worker NAME`: one model; prints one JSON row on the last stdout line."""
    row = one_row(args.worker, args.size, args.ratio, args.parity_images)
    sys.stdout.write("\n" + json.dumps(row) + "\n")
    sys.stdout.flush()


def preload() -> None:
    """Import what every model needs once, in the parent: forked children then start in a second
    instead of re-importing torch, torchvision, torch-pruning and the ONNX exporter (tens of
    seconds each on a busy 2-core machine). Nothing here starts a thread pool, so fork is safe."""
    import onnxruntime  # noqa: F401
    import torch._dynamo  # noqa: F401
    import torch.onnx  # noqa: F401
    from torch.onnx._internal.exporter import _core  # noqa: F401

    import prunekit.deploy.onnx  # noqa: F401
    import prunekit.deploy.parity  # noqa: F401
    import prunekit.pruning  # noqa: F401
    import prunekit.runs  # noqa: F401


def _forked_child(conn: Any, name: str, size: int, args: argparse.Namespace) -> None:
    limit = int((args.memory_gb + args.address_slack_gb) * GB)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))  # the backstop; prunekit's guard fires first
    os.environ.update(PRUNEKIT_MAX_MEMORY_GB=str(args.memory_gb), PRUNEKIT_MAX_GRAPH_SECONDS=str(args.graph_seconds))
    import torch

    torch.set_num_threads(args.threads)
    conn.send(one_row(name, size, args.ratio, args.parity_images))
    conn.close()


def run_forked(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """One model in a forked child (memory-limited, killed at the timeout)."""
    import multiprocessing as mp

    size = input_size(name, args.input_size)
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_forked_child, args=(send, name, size, args), daemon=True)
    started = time.perf_counter()
    child.start()
    send.close()
    row = None
    if recv.poll(args.timeout):
        try:
            row = recv.recv()
        except EOFError:
            row = None
    child.join(5 if row is not None else 0.1)
    if child.is_alive():
        child.kill()
        child.join()
    if row is not None:
        return row
    took = round(time.perf_counter() - started, 1)
    why = f"timed out after {args.timeout} s" if took >= args.timeout else f"worker died (exit {child.exitcode})"
    return {"model": name, "input": size, "status": "fail", "seconds": took, "reason": why}


# --------------------------------------------------------------------------------------- parent
def run_isolated(name: str, args: argparse.Namespace) -> dict[str, Any]:
    size = input_size(name, args.input_size)
    limit = int((args.memory_gb + args.address_slack_gb) * GB)

    def limit_memory() -> None:  # the backstop; prunekit's own guard should fire first
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    env = dict(os.environ, PRUNEKIT_MAX_MEMORY_GB=str(args.memory_gb),
               PRUNEKIT_MAX_GRAPH_SECONDS=str(args.graph_seconds), OMP_NUM_THREADS=str(args.threads))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--size", str(size),
           "--ratio", str(args.ratio), "--parity-images", str(args.parity_images)]
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env,
                              preexec_fn=limit_memory, cwd=str(ROOT))
    except subprocess.TimeoutExpired:
        return {"model": name, "input": size, "status": "fail", "seconds": round(time.perf_counter() - started, 1),
                "reason": f"timed out after {args.timeout} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if lines:
        return json.loads(lines[-1])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"model": name, "input": size, "status": "fail", "seconds": round(time.perf_counter() - started, 1),
            "reason": f"worker died (exit {proc.returncode}): {tail}"[:300]}


def read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in FIELDS})
    tmp.replace(path)


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """The README table: counts, then one line per model."""
    tv = [r for r in rows if not str(r["model"]).startswith("timm:")]
    tm = [r for r in rows if str(r["model"]).startswith("timm:")]
    passed = sum(r["status"] == "pass" for r in tv)
    lines = [
        f"torchvision classifiers passing every step: **{passed} / {len(tv)}**"
        + (f" ({100 * passed / len(tv):.0f} %)" if tv else ""),
        "",
    ]
    if tm:
        lines += [f"timm models passing every step: **{sum(r['status'] == 'pass' for r in tm)} / {len(tm)}**", ""]
    lines += [
        f"prune ratio {args.ratio} of every group's channels (magnitude, widths on multiples of 8 and of each "
        f"group's unit), reload from plan + safetensors, ONNX export (dynamo + onnxslim + checker) with parity on "
        f"{args.parity_images} images; input {args.input_size}x{args.input_size} unless the `input` column says "
        "otherwise (ViT/MaxViT fix 224); untrained weights with random norm statistics and classifier (so that "
        "logits are not ~0 and parity means something), 10 classes; MACs in millions (attention matmuls not "
        "counted).",
        "",
        "| model | status | input | groups (fixed) | MACs dense -> pruned | ratio | max logit | parity max diff | s | peak GB | reason |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        def f(key: str, fmt: str = "{}", r: dict[str, Any] = r) -> str:
            v = r.get(key, "")
            if v in ("", None):
                return ""
            try:
                return fmt.format(float(v)) if fmt != "{}" else str(v)
            except (TypeError, ValueError):
                return str(v)

        groups = f"{f('groups')} ({f('fixed')})" if f("groups") else ""
        macs = f"{f('dense_mmacs')} -> {f('pruned_mmacs')}" if f("pruned_mmacs") else f("dense_mmacs")
        reason = str(r.get("reason", "") or "").replace("|", "/")
        lines.append(
            f"| {r['model']} | {r['status']} | {f('input')} | {groups} | {macs} | {f('macs_ratio')} | "
            f"{f('logit_scale', '{:.2g}')} | {f('parity_diff', '{:.1e}')} | {f('seconds')} | {f('peak_gb')} | {reason} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", help="model names (default: every torchvision classifier, + timm list)")
    p.add_argument("--no-timm", action="store_true", help="skip the timm models even when timm is installed")
    p.add_argument("--input-size", type=int, default=64)
    p.add_argument("--ratio", type=float, default=0.3)
    p.add_argument("--parity-images", type=int, default=4)
    p.add_argument("--memory-gb", type=float, default=8.0, help="prunekit's memory ceiling per model")
    p.add_argument("--address-slack-gb", type=float, default=8.0,
                   help="RLIMIT_AS backstop = memory + this (torch maps far more address space than it uses)")
    p.add_argument("--graph-seconds", type=float, default=300.0)
    p.add_argument("--timeout", type=int, default=1800, help="seconds per model, everything included")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--resume", action="store_true", help="keep the rows already in the CSV, run the rest")
    p.add_argument("--isolation", choices=("fork", "subprocess"), default="fork" if os.name == "posix" else "subprocess",
                   help="fork: children of one process that imported everything once (fast); subprocess: a fresh "
                   "interpreter per model")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker_main(args)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = args.out / "coverage.csv", args.out / "coverage.md"
    names = model_list(args)
    run = run_isolated
    if args.isolation == "fork":
        preload()
        run = run_forked
    rows = [r for r in read_rows(csv_path) if args.resume or r["model"] not in names]
    done = {r["model"] for r in rows}
    for i, name in enumerate(names, 1):
        if name in done:
            continue
        row = run(name, args)
        rows = [r for r in rows if r["model"] != name] + [row]
        order = {n: k for k, n in enumerate(names)}
        rows.sort(key=lambda r: order.get(r["model"], len(order)))
        write_csv(csv_path, rows)
        md_path.write_text(markdown(rows, args))
        print(f"[{i}/{len(names)}] {name}: {row['status']} {row.get('seconds', '')} s {row.get('reason', '') or ''}",
              flush=True)
    print(markdown(rows, args).splitlines()[0])


if __name__ == "__main__":
    main()
