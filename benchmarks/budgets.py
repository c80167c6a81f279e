"""Budgets met as measured: the latency selection's measured ratio against the budget asked for.

    python benchmarks/budgets.py                                  # the issue's models x 0.7 / 0.5 / 0.3
    python benchmarks/budgets.py --models resnet18@32 --budgets 0.5

For each model (torchvision, untrained: latency does not depend on the weights; `name@size`,
10 classes at 32 px, 1000 at 224) on `--target local` (ONNX Runtime, 1 thread, this CPU; the
profile and each model's calibration are measured on first use into `--profile-dir`, default
benchmarks/results/budgets-profiles), magnitude importance and the HALP knapsack select for a
budget three ways:

    table        the target is budget x the table's dense prediction (`--subnets 0`)
    calibrated   the target is aimed through the model's 6 pruned copies (`latency.subnets`)
    refined      calibrated, then the copy at that aim timed and the aim corrected (up to 3 copies,
                 `select.calibrate.refine_calibration`: what compress on `local` does by default);
                 the copies it times join the stored calibration, so a later run's `calibrated`
                 rows aim through them too
    verify       calibrated, then timed and corrected (`--verify`, at most 4 tries)

and each selected model is timed against dense again, warm, in 5 fresh sessions of 20 runs
(what `check` does). A row is in the window when measured / budget is in [0.94, 1.03] (issue
15's acceptance). The importance is the same for every method; what differs between methods is
which channels they keep, not how the budget is met, so one method stands for all here.
Results: <out>/budgets.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
import warnings
from pathlib import Path

import torch

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from prunekit.latency.local import resolve_target  # noqa: E402
from prunekit.latency.measure import TimingOptions  # noqa: E402
from prunekit.latency.subnets import find_calibration, predicted_target  # noqa: E402
from prunekit.models import build_model  # noqa: E402
from prunekit.pruning import PruningGraph  # noqa: E402
from prunekit.runtimes import Execution, ModelRef, get_runtime  # noqa: E402
from prunekit.select.goal import Goal, select  # noqa: E402
from prunekit.select.latency import check_reachable, predict_current  # noqa: E402
from prunekit.select.verify import VerifyOptions, runtime_measure  # noqa: E402

MODELS = ["resnet18@224", "mobilenet_v2@224", "resnet50@224", "efficientnet_b0@224", "resnet18@32"]
LOW, HIGH = 0.94, 1.03


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=MODELS)
    ap.add_argument("--budgets", nargs="*", type=float, default=[0.7, 0.5, 0.3])
    ap.add_argument("--modes", nargs="*", default=["table", "calibrated", "refined", "verify"])
    ap.add_argument("--profile-dir", default=str(ROOT / "benchmarks" / "results" / "budgets-profiles"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args(argv)
    os.environ["PRUNEKIT_PROFILE_DIR"] = args.profile_dir
    torch.set_num_threads(1)
    timing = TimingOptions(repeats=100, sessions=5)
    rows = []
    for spec in args.models:
        name, size = spec.split("@")[0], int(spec.split("@")[1]) if "@" in spec else 224
        classes = 10 if size <= 64 else 1000
        shape = (1, 3, size, size)
        model = build_model(name, classes).eval()
        profile = resolve_target("local", model, name, shape, classes)
        rt = get_runtime(profile.runtime)
        ex = Execution.of_profile(profile, rt)
        graph = PruningGraph(copy.deepcopy(model), torch.zeros(shape), name)
        scores = graph.importance("magnitude")
        dense_ms = predict_current(graph, profile, shape).total_ms
        cal = find_calibration(profile, model, shape, dense_ms)
        if cal is None:
            from prunekit.latency.profiler import model_key
            from prunekit.latency.store import local_profile_path
            from prunekit.select.calibrate import calibrate_profile

            cal = calibrate_profile(local_profile_path(), profile, model, shape, model_key(name, (size, size), classes),
                                    6, model_name=name)
        dense_ref = ModelRef(module=copy.deepcopy(model))
        for budget in args.budgets:
            for mode in args.modes:
                started = time.perf_counter()
                aim = budget if mode == "table" or cal is None else predicted_target(cal, budget)
                if mode == "refined" and cal is not None:
                    from prunekit.latency.profiler import model_key
                    from prunekit.latency.store import local_profile_path
                    from prunekit.select.calibrate import refine_calibration

                    refined = find_calibration(resolve_target("local", model, name, shape, classes), model, shape,
                                               dense_ms) or cal
                    _, aim = refine_calibration(local_profile_path(), profile, model, shape,
                                                model_key(name, (size, size), classes), refined, budget,
                                                model_name=name)
                target = aim * dense_ms
                row = {"model": spec, "budget": budget, "mode": mode, "aimed_ratio": round(aim, 4)}
                try:
                    measure = runtime_measure(profile, shape, copy.deepcopy(model)) if mode == "verify" else None
                    target = check_reachable(graph, profile, shape, target, 8,
                                             measured=(measure, budget) if measure is not None else None)
                    goal = Goal(kind="latency", round_to=8, profile=profile, input_shape=shape, target_ms=target,
                                dense_ms=dense_ms, measure=measure, budget=budget if measure else None,
                                verify=VerifyOptions() if measure else None)
                    keep, info = select(graph, scores, goal)
                except Exception as exc:  # an unreachable budget is a row, not the end of the run
                    rows.append({**row, "error": str(exc).splitlines()[0]})
                    print(f"{spec:20s} {budget:.2f} {mode:10s} refused: {rows[-1]['error']}", flush=True)
                    continue
                pruned = copy.deepcopy(model)
                PruningGraph(pruned, torch.zeros(shape), name).prune(keep)
                pair = rt.time_pair(dense_ref, ModelRef(module=pruned.eval()), shape, ex, timing)
                ratio = pair.ratio
                row.update({
                    "predicted_ratio": round(float(info["predicted_ms"]) / dense_ms, 4),
                    "measured_ratio": round(ratio, 4),
                    "measured_over_budget": round(ratio / budget, 4),
                    "in_window": LOW <= ratio / budget <= HIGH,
                    "verify_tries": len(info.get("verify", [])),
                    "session_ratios": [round(r, 4) for r in pair.session_ratios],
                    "seconds": round(time.perf_counter() - started, 1),
                })
                rows.append(row)
                print(f"{spec:20s} {budget:.2f} {mode:10s} aimed {aim:.3f} predicted {row['predicted_ratio']:.3f} "
                      f"measured {ratio:.3f} ({ratio / budget:.2f} x budget){' in window' if row['in_window'] else ''}"
                      f"{'  tries ' + str(row['verify_tries']) if mode == 'verify' else ''}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "budgets.json").write_text(json.dumps({"rows": rows, "load_average": os.getloadavg()[0]}, indent=2) + "\n")
    lines = ["| model | budget | " + " | ".join(f"{m}: measured / budget" for m in args.modes) + " |",
             "|---|---|" + "---|" * len(args.modes)]
    for spec in args.models:
        for budget in args.budgets:
            cells = []
            for mode in args.modes:
                r = next((r for r in rows if r["model"] == spec and r["budget"] == budget and r["mode"] == mode), None)
                if r is None or "error" in r:
                    cells.append("refused" if r else "")
                else:
                    cells.append(f"{r['measured_over_budget']:.2f}" + (" ok" if r["in_window"] else ""))
            lines.append(f"| {spec} | {budget:.2f} | " + " | ".join(cells) + " |")
    for mode in args.modes:
        done = [r for r in rows if r["mode"] == mode and "error" not in r]
        lines.append(f"\n{mode}: {sum(r['in_window'] for r in done)} of {len(done)} in [{LOW}, {HIGH}] x budget")
    (out / "budgets.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
