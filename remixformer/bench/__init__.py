"""Benchmarks that print a table and write JSON (also reachable as ``remixformer bench ...``).

* :mod:`remixformer.bench.memory`: memory and speed of one training step, the paper's Table IX.

Nothing is imported here, so that ``python -m remixformer.bench.memory`` (the per-row child process)
loads the module once.
"""
