"""``python -m crystalframer`` runs the command line."""

from crystalframer.cli.main import main

raise SystemExit(main())
