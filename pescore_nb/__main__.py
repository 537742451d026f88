"""``python -m pescore_nb``: the ``pescore`` command line."""
from .cli import main

raise SystemExit(main())
