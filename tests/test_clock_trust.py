"""A host's clock is not taken on trust (issue 12): on a database not made for training, an
embedding host whose clock is more than a few minutes from the real time is refused unless an
administrator's clock override lasts; the override expires on the real clock; and every event
written on a simulated clock carries both the simulated and the real instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from sqlalchemy import Engine

from compliance.api import Compliance
from compliance.api.service import CLOCK_TOLERANCE
from compliance.audit.store import LogFilter
from compliance.clock import FixedClock, SystemClock
from compliance.db.engine import make_engine
from compliance.domain import reasons as rc
from compliance.errors import InvalidInput, Refused
from tests.conftest import next_npi


def _production(url: str) -> tuple[str, str]:
    """A database not for training, set up on the real clock: (administrator, prescriber)."""
    with Compliance.open(url) as app:
        admin = app.initialize("Ada Administrator").id
        prs = app.register_prescriber(admin, "Dr Real Time", next_npi()).id
        app.activate_prescriber(admin, prs)
    return admin, prs


@pytest.fixture
def production(db_url: str) -> tuple[str, str, str]:
    """On each backend: (URL, administrator, prescriber)."""
    return (db_url, *_production(db_url))


def test_a_host_clock_days_off_is_refused_and_the_refusal_is_dated_by_real_time(
    production: tuple[str, str, str],
) -> None:
    url, admin, prs = production
    backdated = FixedClock(SystemClock().now() - timedelta(days=3))
    with Compliance(_engine(url), backdated, owns_engine=True) as host:
        assert host.is_simulated()
        with pytest.raises(Refused) as caught:
            host.register_patient(prs, "Backdated Patient", "1990-01-01")
        assert rc.CLOCK_OVERRIDE_NOT_ALLOWED in caught.value.reasons
    with Compliance.open(url) as app:
        assert app.find_patients(admin, name="Backdated") == []
        refusal = [e for e in app.audit_log(admin) if e.outcome == "refused"][-1]
        assert refusal.reason_codes == (rc.CLOCK_OVERRIDE_NOT_ALLOWED,)
        assert abs(refusal.occurred_at - SystemClock().now()) < timedelta(minutes=1)


def test_a_clock_within_the_tolerance_is_the_real_clock(production: tuple[str, str, str]) -> None:
    url, admin, prs = production
    slightly_fast = FixedClock(SystemClock().now() + CLOCK_TOLERANCE / 2)
    with Compliance(_engine(url), slightly_fast, owns_engine=True) as host:
        assert not host.is_simulated()
        host.register_patient(prs, "On Time", "1990-01-01")
    with Compliance.open(url) as app:
        event = app.audit_log(admin, LogFilter(action="patient.register"))[-1]
        assert "simulated_now" not in event.payload


def test_an_override_lets_a_simulated_clock_in_marked_and_expires(
    production: tuple[str, str, str],
) -> None:
    url, admin, prs = production
    with Compliance.open(url) as app:
        state = app.set_clock_override(admin, True, hours=2)
        assert state["enabled"] is True and state["training"] is False
        expires = datetime.fromisoformat(str(state["expires_at"]))
        assert timedelta(hours=2) - timedelta(minutes=1) < expires - SystemClock().now()
    simulated_at = SystemClock().now() - timedelta(days=3)
    with Compliance(_engine(url), FixedClock(simulated_at), owns_engine=True) as host:
        host.register_patient(prs, "Backfilled Patient", "1990-01-01")
        event = host.audit_log(admin, LogFilter(action="patient.register"))[-1]
        assert event.occurred_at == simulated_at
        assert event.payload["simulated_now"] == simulated_at.isoformat()
        recorded = datetime.fromisoformat(str(event.payload["recorded_at"]))
        assert abs(recorded - SystemClock().now()) < timedelta(minutes=1)
        # Three hours later by the real clock the override has lapsed on its own.
        with time_machine.travel(SystemClock().now() + timedelta(hours=3), tick=False):
            with pytest.raises(Refused) as caught:
                host.register_patient(prs, "Too Late", "1990-01-01")
            assert rc.CLOCK_OVERRIDE_NOT_ALLOWED in caught.value.reasons


def test_the_override_lasts_a_day_by_default_and_is_bounded(
    production: tuple[str, str, str],
) -> None:
    url, admin, _ = production
    with Compliance.open(url) as app:
        state = app.set_clock_override(admin, True)
        left = datetime.fromisoformat(str(state["expires_at"])) - SystemClock().now()
        assert timedelta(hours=23, minutes=59) < left <= timedelta(hours=24)
        for hours in (0, 24 * 30 + 1, "12"):
            with pytest.raises(InvalidInput) as caught:
                app.set_clock_override(admin, True, hours=hours)  # type: ignore[arg-type]
            assert caught.value.field == "hours"
        assert app.set_clock_override(admin, False) == {"enabled": False, "training": False}


def test_an_override_cannot_be_enabled_from_a_simulated_clock(
    production: tuple[str, str, str],
) -> None:
    url, admin, _ = production
    skewed = FixedClock(SystemClock().now() + timedelta(hours=1))
    with Compliance(_engine(url), skewed, owns_engine=True) as host:
        with pytest.raises(Refused) as caught:
            host.set_clock_override(admin, True)
        assert rc.CLOCK_OVERRIDE_NOT_ALLOWED in caught.value.reasons


def test_a_database_not_for_training_is_not_created_on_a_skewed_clock(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    with Compliance.open(url, FixedClock(datetime(2027, 1, 4, tzinfo=UTC))) as host:
        with pytest.raises(InvalidInput) as caught:
            host.initialize("Ada Administrator")
        assert caught.value.field == "clock"
        assert host.initialize("Ada Trainer", training=True).id.startswith("ADM-")


def _engine(url: str) -> Engine:
    return make_engine(url)
