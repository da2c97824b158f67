"""``python -m imagegen`` is the ``imagegen`` command."""

import sys

from imagegen.cli.main import main

sys.exit(main())
