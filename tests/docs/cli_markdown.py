"""Generate the command reference of docs/reference/cli.md from the click commands.

The commands come from the ``wsauth.commands`` entry points, so this walks
the same tree that ``wsauth --help`` shows. After changing a command, rewrite
the generated part of the page with::

    .venv/bin/python -m tests.docs.cli_markdown --write

and ``tests/docs/test_cli_reference.py`` checks that the page and the CLI agree.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from wsauth.shared.cli.main import cli
from wsauth.shared.core.config import SETTINGS

CLI_PAGE = Path(__file__).resolve().parents[2] / "docs" / "reference" / "cli.md"
START = "<!-- cli-reference:start -->\n"
END = "<!-- cli-reference:end -->"
_SETTING_NAMES = frozenset(setting.name for setting in SETTINGS)


def _commands(
    command: click.Command, ctx: click.Context
) -> Iterator[tuple[click.Context, click.Command]]:
    yield ctx, command
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from _commands(sub, click.Context(sub, info_name=name, parent=ctx))


def _path(ctx: click.Context) -> str:
    return ctx.command_path


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _value(info: dict[str, Any]) -> str:
    if info["is_flag"]:
        return "(flag)"
    kind = info["type"]
    if kind["param_type"] == "Choice":
        return " \\| ".join(f"`{choice}`" for choice in kind["choices"])
    if kind["param_type"] == "IntRange":
        low, high = kind["min"], kind["max"]
        if high is None:
            return f"integer ≥ {low}"
        return f"integer {low} to {high}"
    return {"Int": "integer", "Float": "number", "Path": "path"}.get(kind["param_type"], "text")


def _default(info: dict[str, Any]) -> str:
    default = info["default"]
    if info["is_flag"] or default is None or default == ():
        return ""
    return f"`{default}`"


def _takes_settings(command: click.Command) -> bool:
    return any(
        isinstance(param, click.Option) and not param.expose_value and param.name in _SETTING_NAMES
        for param in command.params
    )


def _section(ctx: click.Context, command: click.Command) -> list[str]:
    lines = [f"### `{_path(ctx)}`", ""]
    lines += [inspect.cleandoc(command.help or "").strip(), ""]
    usage = " ".join([_path(ctx), *command.collect_usage_pieces(ctx)])
    lines += ["```", usage, "```", ""]
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    options = [
        p
        for p in command.params
        if isinstance(p, click.Option) and not (not p.expose_value and p.name in _SETTING_NAMES)
    ]
    if arguments:
        lines += ["| argument | required |", "|---|---|"]
        for argument in arguments:
            name = (argument.metavar or argument.name or "").upper()
            lines.append(f"| `{name}` | {'yes' if argument.required else 'no'} |")
        lines.append("")
    if options:
        lines += ["| option | value | default | env | meaning |", "|---|---|---|---|---|"]
        for option in options:
            info = option.to_info_dict()
            names = ", ".join(f"`{name}`" for name in option.opts + option.secondary_opts)
            env = f"`{info['envvar']}`" if isinstance(info["envvar"], str) else ""
            meaning = _cell(option.help or "")
            if option.required:
                meaning = ("**Required.** " + meaning).strip()
            lines.append(f"| {names} | {_value(info)} | {_default(info)} | {env} | {meaning} |")
        lines.append("")
    if _takes_settings(command):
        lines += [
            "Also takes every setting as a flag (`--token-ttl` for `WSAUTH_TOKEN_TTL`, ...): "
            "see [configuration.md](configuration.md).",
            "",
        ]
    if isinstance(command, click.Group):
        names = command.list_commands(ctx)
        subs = [(name, command.get_command(ctx, name)) for name in names]
        lines += ["| command | what |", "|---|---|"]
        for name, sub in subs:
            if sub is not None and not sub.hidden:
                summary = _cell(sub.get_short_help_str(limit=300))
                lines.append(f"| `{_path(ctx)} {name}` | {summary} |")
        lines.append("")
    return lines


def cli_markdown() -> str:
    """The generated part of docs/reference/cli.md: one section per command, in tree order."""
    root = click.Context(cli, info_name="wsauth")
    lines: list[str] = []
    for ctx, command in _commands(cli, root):
        lines += _section(ctx, command)
    return "\n".join(lines).rstrip("\n") + "\n"


def generated_part(text: str) -> str:
    start = text.index(START) + len(START)
    return text[start : text.index(END)]


def write() -> None:
    text = CLI_PAGE.read_text()
    start = text.index(START) + len(START)
    end = text.index(END)
    CLI_PAGE.write_text(text[:start] + cli_markdown() + text[end:])


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write()
    else:
        sys.stdout.write(cli_markdown())
