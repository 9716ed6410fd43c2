"""`python -m outlay.cli`, the same as the `outlay` command."""

from outlay.cli.main import main

main(prog_name="outlay")
