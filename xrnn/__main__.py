"""``python -m xrnn``: the same as the ``xrnn`` command."""

import sys

from xrnn.cli import main

sys.exit(main(own_process=True))
