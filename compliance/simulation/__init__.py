"""``compliance simulate``: replay a written timeline of events on a throwaway database.

For training, and for checking a rule change before it goes live: the same timeline replayed
under another ruleset shows every decision that changes. The format is in docs/simulate.md.
"""

from compliance.simulation.runner import EventResult, Replay, run
from compliance.simulation.timeline import OPERATIONS, OUTCOMES, Event, Timeline, load, parse

__all__ = [
    "OPERATIONS",
    "OUTCOMES",
    "Event",
    "EventResult",
    "Replay",
    "Timeline",
    "load",
    "parse",
    "run",
]
