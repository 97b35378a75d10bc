"""`python -m probe` runs the command-line interface."""

from probe.cli.app import main

main()
