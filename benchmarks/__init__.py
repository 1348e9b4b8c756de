"""Benchmarks of the compliance engine beside the physical limit of the same work.

Not tests: nothing here asserts anything about time. ``python -m benchmarks.run`` measures and
writes a report; ``python -m benchmarks.generate`` builds large, valid databases. See
benchmarks/README.md.
"""
