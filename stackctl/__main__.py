"""``python -m stackctl`` runs the CLI."""

from stackctl.cli import main

main()
