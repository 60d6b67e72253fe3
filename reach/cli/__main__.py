"""``python -m reach.cli``: the same as the ``reach`` command."""

from reach.cli import main

main()
