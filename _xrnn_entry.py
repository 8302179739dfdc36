"""The ``xrnn`` command's entry point: :func:`xrnn.cli.main`, with a Ctrl-C during the
imports before it (NumPy, numba, the package: a noticeable moment) ending as any other
interrupt does, one line and exit status 130, not a traceback. It lies outside the ``xrnn``
package because importing anything inside it imports the package first.
"""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from xrnn.cli import main as command
    except KeyboardInterrupt:
        print("xrnn: interrupted", file=sys.stderr)
        return 130
    return command(own_process=True)
