"""Concurrency of the audit trail and of read-modify-writes, with real threads on a real database.

Each thread has its own ``Compliance`` (engine and connections) and all start together at a
barrier. Checked: checkpoints taken at once are serialised (every round leaves a verifiable chain
of signed checkpoints numbered without gaps or repeats); ``audit verify`` while patients are being
registered and checkpoints taken never reports an untampered trail broken (one snapshot); two
administrators changing the rules schedule at once both have their change kept.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from compliance import Compliance, FixedClock
from tests.conftest import build_world

pytestmark = pytest.mark.slow

START = datetime(2027, 1, 4, 15, 0, tzinfo=UTC)
ROUNDS = 3
THREADS = 4


def together(url: str, jobs: list[Callable[[Compliance], Any]]) -> list[Any]:
    """Run each job in its own thread with its own ``Compliance``, released at once; the results
    (or the exception each raised) in job order."""
    barrier = threading.Barrier(len(jobs))
    results: list[Any] = [None] * len(jobs)
    apps = [Compliance.open(url, FixedClock(START)) for _ in jobs]
    for app in apps:
        app.schema_status()  # warm up: connection and schema check before the barrier

    def run(i: int) -> None:
        barrier.wait(timeout=60)
        try:
            results[i] = jobs[i](apps[i])
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    for app in apps:
        app.close()
    assert not any(t.is_alive() for t in threads), "a thread did not finish"
    return results


def test_concurrent_checkpoints_are_serialised(db_url: str) -> None:
    with Compliance.open(db_url, FixedClock(START)) as app:
        world = build_world(app)
        admin = world.admin.id
    numbers: list[int] = []
    for round_no in range(ROUNDS):
        with Compliance.open(db_url, FixedClock(START)) as app:
            app.register_patient(world.designee.id, f"Patient Round{'ABC'[round_no]}", "1990-01-01")
        results = together(db_url, [lambda a: a.checkpoint_audit(admin)] * THREADS)
        for result in results:
            assert not isinstance(result, Exception), result
            numbers.append(int(result.signed["statement"]["number"]))
        with Compliance.open(db_url, FixedClock(START)) as app:
            report = app.verify_audit(admin)
            assert report.ok, (round_no, report.first_break)
    assert sorted(numbers) == list(range(1, ROUNDS * THREADS + 1))


def test_verify_during_writes_sees_one_consistent_trail(db_url: str) -> None:
    with Compliance.open(db_url, FixedClock(START)) as app:
        world = build_world(app)
        admin = world.admin.id
        app.checkpoint_audit(admin)

    def writer(n: int) -> Callable[[Compliance], int]:
        def job(app: Compliance) -> int:
            for i in range(12):
                app.register_patient(
                    world.designee.id, f"Writer{'ABCD'[n]} Number{i}", "1990-01-01"
                )
                if i % 4 == 3:
                    app.checkpoint_audit(admin)
            return 12

        return job

    def verifier(app: Compliance) -> list[Any]:
        broken = []
        for _ in range(8):
            report = app.verify_audit(admin)
            if not report.ok:
                broken.append(report.first_break)
        return broken

    results = together(db_url, [writer(0), writer(1), verifier, verifier])
    for result in results:
        assert not isinstance(result, Exception), result
    assert results[2] == [] and results[3] == [], results[2:]
    with Compliance.open(db_url, FixedClock(START)) as app:
        assert app.verify_audit(admin).ok


def test_concurrent_rules_schedule_changes_are_all_kept(db_url: str) -> None:
    with Compliance.open(db_url, FixedClock(START)) as app:
        world = build_world(app)
        first = world.admin.id
        second = app.add_administrator(first, "Second Admin").id
    rulesets = ["ipledge/2026-mod", "uk-iso/2026-01"]
    for round_no in range(ROUNDS):
        days = [f"{2030 + round_no}-0{1 + i}-01" for i in range(2)]
        results = together(
            db_url,
            [
                lambda a, who=who, rs=rs, day=day: a.set_rules_schedule(who, rs, day)
                for who, rs, day in zip((first, second), rulesets, days, strict=True)
            ],
        )
        for result in results:
            assert not isinstance(result, Exception), result
        with Compliance.open(db_url, FixedClock(START)) as app:
            report = app.verify_audit(first)
            assert report.ok, report.first_break
            kept = app.rules_schedule()
        assert [kept[rs].isoformat() for rs in rulesets] == days, (round_no, kept)
