"""The `chorus` command's help and the README's command table say the same things."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from orchestration.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"


def commands(group: click.Group = main, path: str = "") -> Iterator[tuple[str, click.Command]]:
    """Every command under ``group`` as ("call", ...), ("redis status", ...): the leaves."""
    with click.Context(group, info_name="chorus") as ctx:
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None, name
            full = f"{path} {name}".strip()
            if isinstance(command, click.Group):
                yield from commands(command, full)
            else:
                yield full, command


def readme_table() -> dict[str, str]:
    """The README's command table: each row's command ("redis status") -> its first cell."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## The `chorus` command", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    names = {name for name, _ in commands()}
    for line in section.splitlines():
        if not line.startswith("| `chorus"):
            continue
        cell = line.split(" | ")[0].removeprefix("| ")
        words = cell.strip("`").split()[1:]
        # The longest leading words that name a command: "redis status" before "redis".
        for size in (2, 1):
            name = " ".join(words[:size])
            if name in names:
                rows[name] = cell
                break
        else:
            rows[" ".join(words[:1])] = cell
    return rows


ALL = sorted(commands())


def test_the_readme_table_lists_every_command_and_only_those() -> None:
    table = readme_table()
    names = [name for name, _ in ALL]
    assert sorted(table) == sorted(names), (
        f"missing from the README: {sorted(set(names) - set(table))}; "
        f"in the README but not a command: {sorted(set(table) - set(names))}"
    )


@pytest.mark.parametrize("name,command", ALL, ids=[name for name, _ in ALL])
def test_options_the_readme_shows_exist(name: str, command: click.Command) -> None:
    cell = readme_table()[name]
    shown = set(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", cell))
    known = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    assert shown <= known, f"`chorus {name}` has no {sorted(shown - known)}"


@pytest.mark.parametrize("name,command", ALL, ids=[name for name, _ in ALL])
def test_every_option_has_help_and_shows_its_default(name: str, command: click.Command) -> None:
    assert command.help, f"`chorus {name}` has no help"
    for param in command.params:
        if not isinstance(param, click.Option):
            continue
        assert param.help, f"`chorus {name}` {param.opts[0]} has no help"
        # to_info_dict: None for an option without a default, on every click 8.
        default = param.to_info_dict()["default"]
        if default is not None and not param.is_flag and not param.multiple:
            assert param.show_default, f"`chorus {name}` {param.opts[0]} hides its default"


@pytest.mark.parametrize("name", [name for name, _ in ALL])
def test_help_prints_without_touching_anything(name: str) -> None:
    done = CliRunner().invoke(main, [*name.split(), "--help"], prog_name="chorus")
    assert done.exit_code == 0, done.output
    assert "Usage: chorus" in done.output


def test_version_is_the_installed_packages() -> None:
    from importlib.metadata import version

    done = CliRunner().invoke(main, ["--version"])
    assert done.exit_code == 0
    assert done.output.strip() == f"chorus {version('chorus')}"
