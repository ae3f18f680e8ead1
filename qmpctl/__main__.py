"""`python -m qmpctl` and the `qmpctl` command (how qmpctl's helpers are
started on the destination host too: `tether` and `relay` skip the full CLI's
imports)."""

import gc
import sys

from .host.tether import FAST_COMMANDS
from .host.tether import main as fast_main


def main() -> None:
    if sys.argv[1:2] and sys.argv[1] in FAST_COMMANDS:
        sys.exit(fast_main(sys.argv[1:]))
    # Importing the CLI makes some 40 000 objects the collector tracks, and
    # next to no garbage: the hundred collections it set off were 0.03 s of
    # every start (docs/testing.md, "Time per run"). cli.main then freezes
    # what was imported.
    gc.disable()
    try:
        from .cli import main as cli_main
    finally:
        gc.enable()
    cli_main()


if __name__ == "__main__":
    main()
