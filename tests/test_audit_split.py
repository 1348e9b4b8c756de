"""A verification split by chain ranges reports what one walk over every chain reports: for any
single tampering, at every place the chains can be split, and end to end with the later half
walked by a second process on the same snapshot."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from compliance.api import Compliance
from compliance.audit import store
from compliance.audit.chain import Walked, combined
from compliance.audit.signing import configured_signer
from compliance.clock import FixedClock
from compliance.db.engine import make_engine
from compliance.db.models import AuditChainHead, AuditEvent
from tests import test_audit
from tests.conftest import T0
from tests.test_audit import (
    NAMED_TAMPERS,
    Trail,
    build_trail,
    pg_copy,
    read_trail,
    sqlite_copy,
    tampering,
    tampers,
)

# The untampered trails of test_audit, built once per module.
sqlite_trail = test_audit.sqlite_trail
pg_trail = test_audit.pg_trail


def _one_walk(session: Session) -> Walked:
    walk = store._walk(session, 7, None, None)
    first = walk.finish()
    return Walked(walk.events, walk.chains, first, walk.mark_break)


def _boundaries(session: Session) -> Iterator[str]:
    """Every chain id named by an event or a head, and one past them all."""
    found = set(session.execute(select(AuditEvent.chain_id).distinct()).scalars())
    found |= set(session.execute(select(AuditChainHead.chain_id)).scalars())
    yield from sorted(found)
    yield max(found, default="") + "\U0010ffff"


def _split_everywhere_is_one_walk(url: str) -> None:
    engine = make_engine(url)
    try:
        with Session(engine) as session, session.begin():
            whole = _one_walk(session)
            for split in _boundaries(session):
                parts = [
                    store._walk(session, 7, None, split).part(),
                    store._walk(session, 7, split, None).part(),
                ]
                assert combined(parts) == whole, split
    finally:
        engine.dispose()


def _tampered(url: str, admin: str, tamper: object) -> None:
    with tampering(url) as conn:
        tamper.apply(conn)  # type: ignore[attr-defined]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_split_anywhere_is_one_walk_sqlite(sqlite_trail: Trail, data: st.DataObject) -> None:
    tamper = data.draw(tampers(sqlite_trail), label="tamper")
    with sqlite_copy(sqlite_trail) as url:
        _tampered(url, sqlite_trail.admin, tamper)
        _split_everywhere_is_one_walk(url)


@pytest.mark.postgres
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_split_anywhere_is_one_walk_postgres(pg_trail: Trail, data: st.DataObject) -> None:
    tamper = data.draw(tampers(pg_trail), label="tamper")
    with pg_copy(pg_trail) as url:
        _tampered(url, pg_trail.admin, tamper)
        _split_everywhere_is_one_walk(url)


@pytest.mark.parametrize("name", [None, *NAMED_TAMPERS])
def test_two_processes_report_what_one_reports(
    db_url: str, name: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``audit verify`` with the later chains walked by a second process (from any number of
    events here) gives the very report of one walk on one connection, tampered or not."""
    from compliance.db import workers

    clock = FixedClock(T0)
    with Compliance.open(db_url, clock) as app:
        admin = build_trail(app, clock)
        trail = read_trail(app.engine, db_url, admin)
    if name is not None:
        _tampered(db_url, admin, NAMED_TAMPERS[name](trail))
    started: list[object] = []
    real = workers._start
    monkeypatch.setattr(workers, "_start", lambda request: started.append(1) or real(request))
    monkeypatch.setattr(store, "SPLIT_FROM", 0)
    with Compliance.open(db_url, FixedClock(T0 + timedelta(days=1))) as app:
        split = app.verify_audit(admin)
        signer = configured_signer()
        key = signer.public_key if signer else None
        with Session(app.engine) as session, session.begin():
            alone = store.verify(session, trusted_key=key)
    assert started == [1]  # the later chains were walked elsewhere
    assert split.to_dict() == alone.to_dict()
    assert split.ok is (name is None)
