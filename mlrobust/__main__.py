"""``python -m mlrobust`` is the same as the ``mlrobust`` console script."""

from mlrobust.cli import main

raise SystemExit(main())
