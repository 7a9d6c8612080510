"""``python -m mlpkit``: the command line, as it is (no re-execution; see :func:`mlpkit.cli.entry`)."""

from mlpkit.cli import main

raise SystemExit(main())
