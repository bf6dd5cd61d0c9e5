"""``python -m orchestration.cli``: the ``chorus`` command."""

from orchestration.cli import main

main(prog_name="chorus")
