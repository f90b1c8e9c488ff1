"""``python -m jsx_dev up``: the same as ``python -m jsx_dev.stack up``."""

import sys

from jsx_dev.stack import main

sys.exit(main())
