"""`python -m qmpctl`: the command line (how qmpctl's helpers are started on
the destination host: `tether` and `relay` skip the full CLI's imports)."""

import sys

from .host.tether import FAST_COMMANDS
from .host.tether import main as fast_main

if sys.argv[1:2] and sys.argv[1] in FAST_COMMANDS:
    sys.exit(fast_main(sys.argv[1:]))

from .cli import main

main()
