"""`python -m backend` runs the CLI."""

from backend.cli import main

main()
