"""``python -m dashboard.cli``: the same as the ``oncolens`` command."""

from dashboard.cli.main import main

raise SystemExit(main())
