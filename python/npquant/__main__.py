"""``python -m npquant ...`` is the ``npquant`` command."""

import sys

from .cli import main

sys.exit(main())
