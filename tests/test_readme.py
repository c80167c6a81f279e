"""The README stays true: its Python examples run, and every flag its commands use exists."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def _prunekit_commands() -> list[list[str]]:
    commands = []
    for block in _blocks("bash") + _blocks("yaml"):
        text = block.replace("\\\n", " ")
        for line in text.splitlines():
            line = line.strip().lstrip("- ").removeprefix("run:").strip()
            for part in line.split("&&"):
                part = part.strip()
                if "prunekit " in part and not part.startswith(("docker", "pip", "#")):
                    tokens = shlex.split(part[part.index("prunekit "):])
                    commands.append(tokens)
    return commands


def test_readme_opens_with_the_two_setup_commands():
    first = _blocks("bash")[0].strip().splitlines()
    assert first == ['pip install -e ".[dev]"', "pytest"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -e ".[dev]"' in ci and "\npytest" in ci


@pytest.mark.parametrize("tokens", _prunekit_commands(), ids=lambda t: " ".join(t[:2]))
def test_readme_command_flags_exist(cli, tokens):
    command = tokens[1]
    flags = [t.strip("[]|").split("=")[0] for t in tokens[2:] if t.strip("[]|").startswith("--")]
    result = cli([command, "--help"])
    assert result.exit_code == 0, result.output
    helptext = re.sub(r"\s+", " ", result.output)
    for flag in flags:
        assert flag in helptext, f"README uses {flag} but `prunekit {command} --help` lacks it"


@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_readme_python_examples_run(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(_blocks("python")[index], f"README.md python block {index}", "exec"), {})
