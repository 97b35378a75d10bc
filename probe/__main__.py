"""`python -m probe` runs the command-line interface."""

import sys

try:
    from probe.cli.app import main
except KeyboardInterrupt:  # Ctrl-C while the command loads (seconds on a slow machine)
    sys.exit(130)

main()
