"""docs/reference/cli.md says what the ``wsauth`` commands are, as click defines them."""

from __future__ import annotations

import click

from tests.docs.cli_markdown import CLI_PAGE, cli_markdown, generated_part
from wsauth.shared.cli.main import cli


def test_cli_reference_documents_every_command_and_option_as_the_cli_defines_them() -> None:
    documented = generated_part(CLI_PAGE.read_text())
    assert documented == cli_markdown(), (
        "docs/reference/cli.md differs from the CLI; "
        "run `.venv/bin/python -m tests.docs.cli_markdown --write`"
    )


def test_cli_reference_has_a_section_for_every_registered_command() -> None:
    text = CLI_PAGE.read_text()
    root = click.Context(cli, info_name="wsauth")
    for name in cli.list_commands(root):
        command = cli.get_command(root, name)
        assert command is not None, name
        assert f"### `wsauth {name}`" in text
        if isinstance(command, click.Group):
            for sub in command.list_commands(click.Context(command, info_name=name, parent=root)):
                assert f"### `wsauth {name} {sub}`" in text
