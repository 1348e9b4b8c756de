"""The garbage collector held back while one command reads a large population."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# Allocations between two collections of the youngest generation (Python's default: 700).
YOUNG_THRESHOLD = 50_000


@contextmanager
def few_collections(threshold: int = YOUNG_THRESHOLD) -> Iterator[None]:
    """Rarer, smaller collections for a command that allocates millions of short-lived objects
    (rows, facts, decisions), which reference counting frees as each chunk is done: the
    objects alive on entering (the imported modules, the schema) are frozen out of every
    collection, which otherwise walks them all now and then, and the youngest generation is
    collected every ``threshold`` allocations instead of every 700. Both restored on leaving.
    For a command's own process only: the setting is the interpreter's, not the thread's."""
    young, middle, old = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(threshold, middle, old)
    try:
        yield
    finally:
        gc.set_threshold(young, middle, old)
        gc.unfreeze()
