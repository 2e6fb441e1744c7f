"""Every command's --help ends with examples, and every example names real commands and options."""

from __future__ import annotations

import shlex

import click
import pytest
from click.testing import CliRunner

from scheduler.cli import cli
from scheduler.cli.examples import EXAMPLES

pytestmark = pytest.mark.unit


def test_every_command_has_examples() -> None:
    assert set(cli.commands) == set(EXAMPLES)  # type: ignore[attr-defined]


@pytest.mark.parametrize("line", [x for lines in EXAMPLES.values() for x in lines])
def test_example_uses_real_commands_and_options(line: str) -> None:
    words = shlex.split(line.split("#")[0])
    if words[0] != "initsweep":
        return  # a shell line shown beside them (export ...)
    command: click.Command = cli
    rest = words[1:]
    while rest and isinstance(command, click.Group) and rest[0] in command.commands:
        command = command.commands[rest.pop(0)]
    assert command is not cli, line
    options = {opt for p in command.params for opt in getattr(p, "opts", [])}
    for word in rest:
        if (word.startswith("-") and not word.startswith("-o")) or word.startswith("--"):
            assert word.split("=")[0] in options, f"{line}: unknown option {word}"


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_help_shows_them(name: str) -> None:
    out = CliRunner().invoke(cli, [name, "--help"]).output
    assert "Examples:" in out and EXAMPLES[name][0] in out
