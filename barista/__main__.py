"""``python -m barista`` is the ``barista`` command."""

import sys

from .cli import main

sys.exit(main())
