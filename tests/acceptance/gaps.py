"""Timelines the engine cannot pass yet, each with the issue-11 item it needs (the first thing
that stops it today).

Each is ``xfail(strict=True)``: a gap that starts passing fails the run until it is removed.
"""

from __future__ import annotations

GAPS: dict[str, str] = {
    "eu_uk_pretreatment_test_by_its_name[eu-iso/2018]": "item 10: the EU/UK pre-treatment test by its own name (recorded today as kind confirmation)",
    "eu_uk_pretreatment_test_by_its_name[uk-iso/2026-01]": "item 10: the EU/UK pre-treatment test by its own name (recorded today as kind confirmation)",
}
