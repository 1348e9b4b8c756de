"""Timelines the engine cannot pass yet, each with the issue-11 item it needs (the first thing
that stops it today).

Each is ``xfail(strict=True)``: a gap that starts passing fails the run until it is removed.
"""

from __future__ import annotations

GAPS: dict[str, str] = {
}
