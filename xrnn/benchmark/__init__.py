"""The benchmarks that ship with the package, so that ``xrnn bench`` runs from an install.

- :mod:`xrnn.benchmark.table`: xrnn against the exercise's loop and ``torch.nn``
  (``xrnn bench``);
- :mod:`xrnn.benchmark.busy`: the same ratios and ``xrnn train``'s time on an idle machine and
  with competing processes (``xrnn bench --busy``);
- :mod:`xrnn.benchmark.gpu`: xrnn on CuPy and torch CUDA tensors against cuDNN, with the CPU
  beside them (``xrnn bench --device gpu``);
- :mod:`xrnn.benchmark.reference`: the exercise's loops, the baseline.

``benchmarks/`` in a source checkout holds the scripts (and the benchmarks that only the
developers run).
"""
