"""The ``hypermetric`` command line: thin commands over the public API."""

from hypermetric.cli.app import cli, main

__all__ = ["cli", "main"]
