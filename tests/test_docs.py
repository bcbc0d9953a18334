"""docs/cli.md cannot drift from the CLI: every command, every option, the exit-code table."""

from __future__ import annotations

import re
from pathlib import Path

import typer.main

from trace_ckpt.cli import EXIT_CODES, app

DOC = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()


def _sections() -> dict[str, str]:
    parts = re.split(r"^## `trace-ckpt ([a-z-]+)[^`]*`$", DOC, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def test_every_command_and_option_is_documented() -> None:
    group = typer.main.get_command(app)
    sections = _sections()
    assert set(sections) == set(group.commands), "docs/cli.md commands differ from the CLI"
    for name, cmd in group.commands.items():
        # long names; the short ones (-q, -v, -h) are named in the Conventions section
        options = {o for p in cmd.params if p.param_type_name == "option" for o in p.opts if o.startswith("--")}
        first_cells = re.findall(r"^\| (`--[^|]+)\|", sections[name], flags=re.M)  # a row may name aliases
        documented = {o for cell in first_cells for o in re.findall(r"`(--[a-z-]+)", cell)}
        assert documented == options, (name, documented ^ options)


def test_exit_code_table_matches() -> None:
    rows = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", DOC, flags=re.M))
    assert {int(k): v for k, v in rows.items()} == EXIT_CODES


def test_global_options_are_documented() -> None:
    group = typer.main.get_command(app)
    options = {o for p in group.params if p.param_type_name == "option" for o in p.opts} - {"--help"}
    intro = re.split(r"^## `trace-ckpt ", DOC, flags=re.M)[0]
    assert options and set(re.findall(r"^\| `(--[a-z-]+)", intro, flags=re.M)) == options
