"""``python -m watcher.cli``: the same entry point as the ``watcher`` script."""

from watcher.cli.main import main

raise SystemExit(main())
