"""``python -m genloop.cli``: the ``genloop`` command."""

import sys

from genloop.cli import main

sys.exit(main())
