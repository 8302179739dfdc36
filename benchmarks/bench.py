"""``python benchmarks/bench.py [--quick] [--cells …] [--dtypes …] [--configs …] [--out DIR]``:
the benchmark table, :mod:`xrnn.benchmark.table` (also ``xrnn bench`` from an installed
package, and ``nox -s bench``)."""

import sys

from xrnn.benchmark.table import main

if __name__ == "__main__":
    sys.exit(main())
