"""``python -m hypermetric``: the same as the ``hypermetric`` command."""

from hypermetric.cli import main

main()
