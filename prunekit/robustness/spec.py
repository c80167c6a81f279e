"""The one parser of `--corruptions` and `--severities`, shared by `prunekit check` and `prunekit eval`.

    --corruptions   (left out)              the benchmark's 15 (ImageNet-C / CIFAR-10-C)
                    benchmark               the same 15
                    all                     all 19 (adds speckle_noise, gaussian_blur, spatter, saturate)
                    fog,snow                these, in this order (duplicates dropped)
    --severities    1,3,5                   these, sorted, duplicates dropped, each in 1..5

Unknown names, severities outside 1..5, non-numbers and empty lists are one-line PrunekitErrors.
"""

from __future__ import annotations

from prunekit.errors import PrunekitError
from prunekit.robustness.corruptions import ALL_CORRUPTIONS, CORRUPTIONS, validate_names, validate_severity

GROUPS: dict[str, tuple[str, ...]] = {"benchmark": CORRUPTIONS, "all": ALL_CORRUPTIONS}


def _items(text: str, flag: str, example: str) -> list[str]:
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise PrunekitError(f"--{flag} is empty", f"pass a comma-separated list, e.g. --{flag} {example}")
    return items


def parse_corruptions(text: str | None) -> list[str]:
    """The corruption names a `--corruptions` value selects (None: the benchmark's 15)."""
    if text is None:
        return list(CORRUPTIONS)
    out: list[str] = []
    for item in _items(text, "corruptions", "gaussian_noise,fog"):
        for name in GROUPS.get(item, (item,)):
            if name not in out:
                out.append(name)
    return validate_names(out)


def parse_severities(text: str | None) -> list[int]:
    """The severities a `--severities` value selects (None: 1..5), sorted and unique."""
    if text is None:
        return [1, 2, 3, 4, 5]
    values = set()
    for item in _items(text, "severities", "1,3,5"):
        try:
            value = int(item)
        except ValueError:
            raise PrunekitError(f"severity {item!r} is not a number", "use severities 1..5, e.g. 1,3,5") from None
        values.add(validate_severity(value))
    return sorted(values)
