"""``python -m ingest`` is ``neurospasm`` (tests and service units use it to run the same entry point)."""

import sys

from ingest.commands.cli import main

sys.exit(main())
