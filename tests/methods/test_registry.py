"""The method registry: lookup, registration, options -> CLI flags, and a plug-in method from a
temporary package run through the real CLI without touching any prunekit file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import Field

from prunekit.errors import PrunekitError
from prunekit.methods import METHODS, Method, MethodOptions, get_method, list_methods, register_method

TOY = '''
"""A plug-in method for the tests: keeps the highest-index channels of every group."""
import torch
from pydantic import Field

from prunekit.methods import Method, MethodOptions, MethodResult, register_method
from prunekit.pruning import PruningGraph
from prunekit.select import select


class ToyOptions(MethodOptions):
    toy_weight: float = Field(1.0, gt=0, description="Scale of the toy score.")
    toy_note: str = Field("none", description="Free text, recorded in the report.")


@register_method
class Toy(Method):
    name = "toy"
    help = "keeps the highest-index channels (a test plug-in)"
    Options = ToyOptions

    def run(self, ctx, model, goal):
        graph = PruningGraph(model.cpu(), ctx.example, ctx.settings.model)
        scores = {g.name: torch.arange(g.width, dtype=torch.float32) * ctx.options.toy_weight for g in graph.groups}
        keep, info = select(graph, scores, goal)
        graph.prune(keep)
        return graph, MethodResult(self.name, steps=[info], details={"note": ctx.options.toy_note})
'''


def test_builtin_methods_are_registered_in_order():
    assert list_methods()[:6] == ["magnitude", "taylor", "halp", "adasap", "csam", "s2ap"]
    for name in list_methods():
        method = get_method(name)
        assert method.name == name and method.help
        assert issubclass(method.Options, MethodOptions)
    assert get_method("halp").needs_latency_goal and not get_method("magnitude").needs_latency_goal


def test_unknown_method_is_a_one_line_error_listing_the_choices():
    with pytest.raises(PrunekitError) as info:
        get_method("nope")
    assert "--method" in info.value.one_line() and "magnitude" in info.value.one_line()


def test_register_method_checks_its_argument():
    class Opts(MethodOptions):
        reg_test_level: int = Field(2, ge=0, description="A level.")

    @register_method
    class RegTest(Method):
        name = "regtest"
        help = "a registry test"
        Options = Opts

    try:
        assert get_method("regtest").Options is Opts
        assert "regtest" in list_methods()
        with pytest.raises(ValueError, match="already registered"):

            @register_method
            class Other(Method):
                name = "regtest"
    finally:
        del METHODS["regtest"]
    with pytest.raises(TypeError):
        register_method(object)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lower-case"):

        @register_method
        class Bad(Method):
            name = "Bad Name"


def test_cli_flags_come_from_the_options_models(cli):
    result = cli(["compress", "--help"])
    assert result.exit_code == 0
    text = result.output
    for name in list_methods():
        for field in get_method(name).Options.model_fields:
            assert "--" + field.replace("_", "-") in text
    assert "Method options: halp, adasap" in text and "Method options: csam" in text


def _run_cli(args: list[str], tmp_path: Path, plugins: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PRUNEKIT_PLUGINS": plugins,
           "PYTHONPATH": os.pathsep.join([str(tmp_path / "plugins"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "prunekit", *args], env=env, capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)


def test_toy_plugin_runs_through_the_real_cli(tmp_path):
    package = tmp_path / "plugins" / "toy_plugin"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "toy.py").write_text(textwrap.dedent(TOY))
    out = tmp_path / "run"
    help_text = _run_cli(["compress", "--help"], tmp_path, "toy_plugin.toy")
    assert help_text.returncode == 0, help_text.stderr
    assert "--toy-weight" in help_text.stdout and "Method options: toy" in help_text.stdout
    result = _run_cli(["compress", "--method", "toy", "--toy-weight", "2", "--toy-note", "hello", "--data", "digits",
                       "--input-size", "16", "--pretrain-epochs", "0", "--epochs", "0", "--prune-ratio", "0.5", "--out", str(out),
                       "--json"],
                      tmp_path, "toy_plugin.toy")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["method"]["name"] == "toy" and report["method"]["note"] == "hello"
    assert report["settings"]["method"] == "toy"
    assert report["settings"]["method_options"] == {"toy_weight": 2.0, "toy_note": "hello"}
    assert report["pruned"]["macs"] < report["dense"]["macs"]
    plan = json.loads((out / "plan.json").read_text())
    # the toy score keeps the highest indices: every removal is the lowest channels
    for _name, _out, removed in plan["history"]:
        assert removed == list(range(len(removed)))
    # an option of the toy is validated by its model, and named as a flag
    bad = _run_cli(["compress", "--method", "toy", "--toy-weight", "0", "--out", str(tmp_path / "bad")],
                   tmp_path, "toy_plugin.toy")
    assert bad.returncode == 2 and "--toy-weight" in bad.stderr and "Traceback" not in bad.stderr


def test_a_broken_plugin_is_a_warning_not_a_crash(tmp_path):
    (tmp_path / "plugins").mkdir()
    result = _run_cli(["compress", "--help"], tmp_path, "no_such_plugin_module")
    assert result.returncode == 0
    assert "warning: plug-in 'no_such_plugin_module'" in result.stderr and "Traceback" not in result.stderr
