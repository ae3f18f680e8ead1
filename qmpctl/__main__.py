"""`python -m qmpctl`: the command line (how `qmpctl agent` is started remotely)."""

from .cli import main

main()
