"""``python -m imagegen`` is the ``imagegen`` command."""

import sys

from imagegen.cli import main

sys.exit(main())
