"""``python -m metalearner`` runs the command line."""

from metalearner.cli import main

main()
