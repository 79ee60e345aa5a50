"""``python -m wsauth``: the ``wsauth`` command."""

from wsauth.shared.cli.main import main

main()
