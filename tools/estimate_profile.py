"""Regenerate the shipped, roofline-ESTIMATED jetson-orin profile.

    python tools/estimate_profile.py --out profiles/jetson-orin.json

Writes `prunekit.latency.estimate.estimate_profile()` (public Jetson AGX Orin figures, the models
in `DEFAULT_MODELS`); only the provenance date differs from the shipped file when nothing else
changed. See profiles/README.md, "How the Jetson estimate is computed".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from prunekit.latency.estimate import estimate_profile  # noqa: E402
from prunekit.latency.store import save_profile  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "profiles" / "jetson-orin.json"), help="profile file to (over)write")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.unlink(missing_ok=True)  # a fresh file, not a merge with the old one
    prof = estimate_profile()
    save_profile(prof, out)
    print(f"wrote {out}: {len(prof.table)} signatures, models {sorted(prof.models)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
