"""``python -m loopml.demo [--home DIR] [--runs N]``: load the demo into a store."""

from loopml.demo import main

raise SystemExit(main())
