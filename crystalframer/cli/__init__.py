"""The ``crystalframer`` command (``crystalframer.cli.main:main``)."""

from crystalframer.cli.main import main

__all__ = ["main"]
