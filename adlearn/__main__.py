"""``python -m adlearn``: see :mod:`adlearn.cli`."""

import sys

from adlearn.cli import main

sys.exit(main())
