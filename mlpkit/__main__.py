"""``python -m mlpkit``: the command line, as it is (no re-execution; see :func:`mlpkit.cli.entry`)."""

from mlpkit.cli import SIGNALLED, leave, main

code = main()
if code in SIGNALLED:
    leave(code)
raise SystemExit(code)
