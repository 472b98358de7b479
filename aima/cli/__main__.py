"""``python -m aima.cli``."""

from aima.cli import main

main()
