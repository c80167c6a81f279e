"""Device profile schema: one target's latency lookup table and where its numbers came from.

A profile (`profiles/<name>.json`) names a runtime (a name in the `prunekit.runtimes` table),
precision, batch size and thread count, says whether its numbers were *measured* (device,
runtime version, date) or *estimated* (formula and public spec figures), and holds a table: per
layer signature (see `prunekit.latency.layers`) the latency in ms over a grid of (in, out)
channels. What the table does not cover (pooling, element-wise ops, layout reorders, per-run
overhead) is the profile's `constant` model. The format is documented in profiles/README.md;
reading, writing and locking profile files is `prunekit.latency.store`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from prunekit.errors import PrunekitError
from prunekit.latency.grid import axis_weights
from prunekit.latency.layers import OP_DWCONV, parse_signature

SCHEMA_VERSION = 1
Precision = Literal["fp32", "fp16", "int8"]
RUNTIME_NAME = r"^[a-z][a-z0-9_.-]*$"  # a name in the prunekit.runtimes table (checked where it is used)


class MissingSignatureError(PrunekitError):
    """The profile has no table entry for a layer a model needs (or not at that width)."""

    def __init__(self, signature: str, profile: str, command: str, detail: str = "") -> None:
        what = f"profile {profile!r} has no latency entry for layer {signature!r}"
        super().__init__(f"{what}{': ' + detail if detail else ''}", f"measure it with: {command}")
        self.signature = signature
        self.command = command
        self.detail = detail


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MeasuredProvenance(_Model):
    kind: Literal["measured"] = "measured"
    device: str = Field(description="cpu, cuda:0, ...")
    device_model: str = Field(description="CPU model (from /proc/cpuinfo) or GPU name")
    runtime_version: str
    date: str
    cores: int | None = None
    threads_choice: dict[str, float] = Field(default_factory=dict, description="threads -> dense model ms")
    notes: str = ""


class EstimatedProvenance(_Model):
    kind: Literal["estimated"] = "estimated"
    device_model: str
    formula: str
    spec: dict[str, float | int | str]
    sources: list[str] = Field(default_factory=list)
    date: str
    notes: str = ""


Provenance = Annotated[MeasuredProvenance | EstimatedProvenance, Field(discriminator="kind")]


class TableEntry(_Model):
    """Latency of one layer signature over a channel grid (ms).

    `ms[i][j]` is the latency at (cin[i], cout[j]); for depthwise convs (in == out) `cout` is
    omitted and `ms` is one row over `cin`.
    """

    cin: list[int]
    cout: list[int] | None = None
    ms: list[list[float]] | list[float]
    dtype: str = "float32"

    @field_validator("cin", "cout")
    @classmethod
    def _increasing(cls, v: list[int] | None) -> list[int] | None:
        if v is None:
            return v
        if not v or any(c <= 0 for c in v) or any(b <= a for a, b in zip(v, v[1:], strict=False)):
            raise ValueError("grid must be a non-empty, strictly increasing list of positive widths")
        return v

    @model_validator(mode="after")
    def _shape(self) -> TableEntry:
        if self.cout is None:
            if len(self.ms) != len(self.cin) or any(isinstance(r, list) for r in self.ms):
                raise ValueError(f"ms must be a list of {len(self.cin)} numbers (one per cin grid point)")
            values = list(self.ms)
        else:
            if len(self.ms) != len(self.cin) or any(
                not isinstance(r, list) or len(r) != len(self.cout) for r in self.ms
            ):
                raise ValueError(f"ms must be {len(self.cin)} rows of {len(self.cout)} numbers (cin x cout)")
            values = [v for r in self.ms for v in r]  # type: ignore[union-attr]
        if any((not math.isfinite(v)) or v < 0 for v in values):
            raise ValueError("latencies must be finite and >= 0")
        return self

    def cells(self) -> dict[tuple[int, int], float]:
        """All measured points as {(cin, cout): ms}."""
        if self.cout is None:
            return {(c, c): float(v) for c, v in zip(self.cin, self.ms, strict=True)}  # type: ignore[arg-type]
        return {
            (a, b): float(v)
            for a, row in zip(self.cin, self.ms, strict=True)
            for b, v in zip(self.cout, row, strict=True)
        }  # type: ignore[arg-type]

    @classmethod
    def from_cells(
        cls, cells: dict[tuple[int, int], float], depthwise: bool, dtype: str = "float32"
    ) -> TableEntry:
        """Build an entry from a complete rectangular set of cells (or diagonal for depthwise)."""
        if depthwise:
            cin = sorted({a for a, _ in cells})
            return cls(cin=cin, ms=[round(cells[(c, c)], 5) for c in cin], dtype=dtype)
        cin = sorted({a for a, _ in cells})
        cout = sorted({b for _, b in cells})
        return cls(cin=cin, cout=cout, ms=[[round(cells[(a, b)], 5) for b in cout] for a in cin], dtype=dtype)


class OpCost(_Model):
    """Cost of one non-table op kind in the runtime's graph: a_ms + b_ms_per_melem * Melements."""

    a_ms: float = Field(ge=0)
    b_ms_per_melem: float = Field(ge=0)
    samples: int = Field(ge=0, default=0)


class SubnetCalibration(_Model):
    """End-to-end calibration of one model: sampled pruned copies, predicted vs measured.

    `points` are [predicted ratio, measured ratio] (pruned / dense, both on this profile's
    device) of `len(points)` pruned copies (chosen by `sampler`); the predictor maps a
    prediction through their monotone fit (prunekit.latency.subnets). Measured on the device,
    against the table as it was then: once the dense prediction moves (cells or the constant
    re-measured), the calibration is stale and is not used.
    """

    points: list[tuple[float, float]] = Field(min_length=1)
    dense_predicted_ms: float = Field(gt=0, description="the table's dense prediction when calibrated (stale if it moved)")
    sessions: int = Field(ge=1, default=1)
    sampler: str = Field("random", description="how the copies were chosen (latency.subnets.SAMPLER)")
    date: str = ""
    aims: dict[str, float] = Field(default_factory=dict, description="budget -> the predicted ratio refinement "
                                   "chose for it (select.calibrate.refine_calibration); reused, not re-timed")

    @field_validator("points")
    @classmethod
    def _ratios(cls, v: list[tuple[float, float]]) -> list[tuple[float, float]]:
        if any(not (p > 0 and m > 0) for p, m in v):
            raise ValueError("calibration ratios must be positive")
        return sorted(v)


class ModelRecord(_Model):
    """A model this profile was built for, with its dense end-to-end check."""

    model: str
    arch: str = Field(description="layer-geometry fingerprint (prunekit.latency.layers.arch_key)")
    input_shape: list[int]
    num_classes: int | None = None
    signatures: int = 0
    dense_measured_ms: float | None = None
    dense_measured_fast_ms: float | None = Field(default=None, description="mean of the fastest 30 % of runs")
    dense_predicted_ms: float | None = None
    subnets: SubnetCalibration | None = Field(default=None, description="end-to-end calibration on sampled subnets")


class Constant(_Model):
    """The cost of what the table does not cover.

    method `fixed`: `fixed_ms` per inference. method `ort-graph`: the model's ONNX Runtime
    optimized graph is priced node by node (every node that is not a table layer, with `ops`),
    plus `fixed_ms` + `per_node_ms` x nodes of executor overhead.
    """

    method: Literal["fixed", "ort-graph"] = "fixed"
    fixed_ms: float = Field(ge=0, default=0.0)
    per_node_ms: float = Field(
        default=0.0, description="executor overhead per graph node (may be < 0, see README)"
    )
    ops: dict[str, OpCost] = Field(default_factory=dict)
    samples: dict[str, list[list[float]]] = Field(
        default_factory=dict, description="raw calibration samples: op key -> [[Melements, ms], ...]"
    )
    overhead_samples: list[list[float]] = Field(default_factory=list, description="[[nodes, end-to-end ms - profiled kernel ms, profiled kernel ms], ...]")


class Profile(_Model):
    """One target device + runtime: its latency table and the provenance of its numbers."""

    schema_version: int = SCHEMA_VERSION
    name: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)
    description: str = ""
    runtime: str = Field(pattern=RUNTIME_NAME, description="a runtime in the prunekit.runtimes table")
    precision: Precision = "fp32"
    batch_size: int = Field(ge=1, default=1)
    threads: int | None = Field(default=None, ge=1)
    input_size: tuple[int, int] = (224, 224)
    align_cin: int = Field(
        ge=1, default=1, description="input widths not a multiple of this take a slow path"
    )
    align_cout: int = Field(
        ge=1, default=1, description="output widths not a multiple of this take a slow path"
    )
    pad: int = Field(ge=1, default=8, description="channel block the runtime's fast kernels pad to")
    provenance: Provenance
    table: dict[str, TableEntry] = Field(default_factory=dict)
    constant: Constant = Field(default_factory=Constant)
    models: dict[str, ModelRecord] = Field(default_factory=dict)

    _source: Path | None = None

    @field_validator("table")
    @classmethod
    def _signatures(cls, v: dict[str, TableEntry]) -> dict[str, TableEntry]:
        for sig, entry in v.items():
            try:
                info = parse_signature(sig)
            except PrunekitError as exc:
                raise ValueError(exc.message) from None
            if (info["op"] == OP_DWCONV) != (entry.cout is None):
                raise ValueError(f"{sig}: depthwise entries have no cout axis, other entries need one")
        return v

    # ----------------------------------------------------------------- lookups
    @property
    def source(self) -> Path | None:
        """The file this profile was loaded from, if any."""
        return self._source

    def profile_command(
        self,
        signature: str | None = None,
        model: str = "<MODEL>",
        input_size: tuple[int, int] | None = None,
        num_classes: int | None = None,
    ) -> str:
        """The command that measures what this target lacks for `model` at `input_size` / `num_classes`.

        It names the same model spec, input size, class count (the classifier's width), batch size
        and thread count, so running it adds exactly the missing layers to this target's profile.
        """
        cmd = f"prunekit profile --target {self.name} --runtime {self.runtime} --model {_quote(model)}"
        if input_size is not None:
            h, w = (int(input_size[0]), int(input_size[1]))
            cmd += f" --input-size {h}" if h == w else f" --input-size {h}x{w}"
        if num_classes is not None:
            cmd += f" --num-classes {int(num_classes)}"
        if self.batch_size != 1:
            cmd += f" --batch-size {self.batch_size}"
        if self.threads is not None:
            cmd += f" --threads {self.threads}"
        if self.precision != "fp32":
            cmd += f" --precision {self.precision}"
        return cmd

    def _entry(self, signature: str) -> TableEntry:
        entry = self.table.get(signature)
        if entry is None:
            raise MissingSignatureError(signature, self.name, self.profile_command(signature))
        return entry

    def layer_latency(self, signature: str, cin: int, cout: int) -> float:
        """Latency (ms) of one layer of `signature` at (cin, cout), interpolated on the grid.

        Exact at grid points; between them the staircase is kept (see prunekit.latency.grid).
        Raises MissingSignatureError (never returns 0) when the signature or width is not covered.
        """
        entry = self._entry(signature)
        try:
            wi = axis_weights(entry.cin, int(cin), self.align_cin, self.pad)
            if entry.cout is None:
                return float(sum(w * entry.ms[i] for i, w in wi))  # type: ignore[misc]
            wo = axis_weights(entry.cout, int(cout), self.align_cout, self.pad)
        except ValueError as exc:
            raise MissingSignatureError(
                signature, self.name, self.profile_command(signature), str(exc)
            ) from None
        return float(sum(a * b * entry.ms[i][j] for i, a in wi for j, b in wo))  # type: ignore[index]

    def grid_widths(self, signature: str, axis: Literal["cin", "cout"]) -> list[int]:
        """The measured widths of one axis (depthwise: both axes are the channel grid)."""
        entry = self._entry(signature)
        if axis == "cin" or entry.cout is None:
            return list(entry.cin)
        if axis != "cout":
            raise ValueError("axis must be 'cin' or 'cout'")
        return list(entry.cout)

    def to_json(self) -> str:
        """Serialise compactly (numeric rows on one line) for small, diffable files."""
        return dump_json(self.model_dump(mode="json"))


class ProfileSummary(BaseModel):
    """One line of `prunekit targets`."""

    name: str
    aliases: list[str] = Field(default_factory=list)
    runtime: str = ""
    precision: str = ""
    batch_size: int = 1
    threads: int | None = None
    provenance: str = ""
    device_model: str = ""
    signatures: int = 0
    models: list[str] = Field(default_factory=list)
    source: str = ""
    path: str = ""
    error: str | None = None


def _quote(text: str) -> str:
    """Shell-quote a model spec only when it needs it (plain names stay readable)."""
    import shlex

    return text if text and all(c.isalnum() or c in "_-.:/" for c in text) else shlex.quote(text)


def dump_json(obj: Any) -> str:
    """Indented JSON, with lists of numbers kept on one line (tables stay small and readable)."""

    def enc(o: Any, level: int) -> str:
        pad = "  " * (level + 1)
        end = "  " * level
        if isinstance(o, dict):
            if not o:
                return "{}"
            items = [f"{pad}{json.dumps(str(k))}: {enc(v, level + 1)}" for k, v in o.items()]
            return "{\n" + ",\n".join(items) + "\n" + end + "}"
        if isinstance(o, list):
            if all(not isinstance(v, (dict, list)) for v in o):
                return "[" + ", ".join(json.dumps(v, allow_nan=False) for v in o) + "]"
            if all(isinstance(v, list) and all(not isinstance(x, (dict, list)) for x in v) for v in o):
                return "[\n" + ",\n".join(pad + enc(v, level + 1) for v in o) + "\n" + end + "]"
            return "[\n" + ",\n".join(pad + enc(v, level + 1) for v in o) + "\n" + end + "]"
        return json.dumps(o, allow_nan=False)

    return enc(obj, 0) + "\n"
