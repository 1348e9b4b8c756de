"""Hostile and mistaken input, fuzzed through the public API and the command line.

Every case must end in a ``ComplianceError`` of the documented kind (never another exception
type), an ``InvalidInput`` must name the offending field, and nothing may be written: every table
is snapshotted before and after. A refusal (``Refused``/``NotPermitted``) writes exactly one
``refused`` audit event and nothing else; invalid input, unknown records and conflicts leave the
audit trail untouched too. Through the CLI: a documented exit code (never 1), the field or reason
on stderr, no traceback, and with ``--json`` one JSON document on stderr.

Table-driven cases run on SQLite and PostgreSQL; the hypothesis properties run on SQLite. Cases
that expose a production bug are kept as they should be and marked ``xfail(strict=True)`` with
the reason, so the suite turns red the day the bug is fixed and the mark can go.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import Table, select

from compliance.api import Compliance
from compliance.audit.store import LogFilter
from compliance.cli.main import cli
from compliance.clock import FixedClock
from compliance.db import models  # noqa: F401 - registers every table on the metadata
from compliance.db.base import Base
from compliance.domain import reasons as rc
from compliance.domain.authorization_number import is_valid, new_number
from compliance.domain.authorization_number import normalise as normalise_number
from compliance.domain.ids import Kind, kind_of, new_short_id, normalise
from compliance.domain.roles import PERMISSIONS, Action, Role
from compliance.domain.validate import npi_with_check_digit
from compliance.errors import ComplianceError, InvalidInput, Refused
from tests.conftest import PG_ADMIN_URL, build_world, create_pg_database, drop_pg_database, next_npi

START = datetime(2027, 1, 4, 15, 0, tzinfo=UTC)  # ipledge/2026-mod is in force
NOW = START + timedelta(days=19)  # the qualified patient's confirmation test, prescription, auth
FUTURE = NOW.date() + timedelta(days=2)  # later than "today" anywhere on Earth
CAN = "can_get_pregnant"
AUDIT_TABLES = frozenset({"audit_events", "audit_event_subjects", "audit_chain_heads"})
EXIT_NAMES = {2: "INVALID_INPUT", 3: "REFUSED", 4: "NOT_PERMITTED", 5: "NOT_FOUND", 6: "CONFLICT"}
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

FAST = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
QUICK = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SQL = (
    "'; DROP TABLE patients;--",
    "PAT-'; DROP TABLE patients;--",
    "Robert'); DROP TABLE audit_events;--",
    "' OR '1'='1",
    '" OR ""="',
    "1; DELETE FROM courses",
    "$$; TRUNCATE audit_chain_heads; $$",
    "' UNION SELECT * FROM administrators --",
    "%' --",
    "%",
    "_",
    "\\",
    "admin'--",
    "x' AND pg_sleep(5)--",
)


# --- independent helpers ------------------------------------------------------------------------


def check_symbol(body: str) -> str:
    """Luhn mod 32 over Crockford base 32, written here independently of compliance.domain.ids."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = ALPHABET.index(ch) * (2 if i % 2 == 0 else 1)
        total += d // 32 + d % 32
    return ALPHABET[(32 - total % 32) % 32]


def short_id(kind: str, body: str = "7777777") -> str:
    return f"{kind}-{body}{check_symbol(body)}"


def wrong_check(ref: str) -> str:
    last = ref[-1]
    return ref[:-1] + ("0" if last != "0" else "1")


def wrong_digit(number: str) -> str:
    return number[:-1] + str((int(number[-1]) + 1) % 10)


def parses_as_date(value: str) -> bool:
    try:
        date.fromisoformat(value.strip())
    except ValueError:
        return False
    return True


def zone_lookup_is_clean(name: str) -> bool:
    """False where zoneinfo itself raises something else (a folder name such as 'America');
    those names are the table cases time_zone-folder-*."""
    try:
        ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        return True
    except Exception:
        return False
    return True


# --- the world the hostile input is thrown at ---------------------------------------------------


@dataclass(repr=False)
class Env:
    backend: str
    url: str
    app: Compliance
    clock: FixedClock
    admin: str
    prs: str  # activated prescriber
    prs_new: str  # registered, never activated
    dsg: str  # designee with a grant from prs covering every delegable action
    dsg_gone: str  # deactivated designee
    pharmacy: str
    pharmacy2: str
    rph: str  # pharmacist at pharmacy (Los Angeles)
    rph2: str  # pharmacist at pharmacy2 (Honolulu)
    rph_gone: str  # deactivated pharmacist
    pat: str  # course authorized: a live prescription and authorization
    pat2: str  # course in pre_treatment, enrolled today
    pat_free: str  # registered, never enrolled
    rx: str
    auth: str
    tables: list[Table] = field(default_factory=list)


def _env_repr(self: Env) -> str:
    return f"Env({self.backend})"


def _env_pretty(self: Env, printer: Any, cycle: bool) -> None:
    printer.text(repr(self))  # hypothesis prints examples with this, not field by field


Env.__repr__ = _env_repr  # type: ignore[method-assign]
Env._repr_pretty_ = _env_pretty  # type: ignore[attr-defined]


def build_env(backend: str, url: str) -> Env:
    clock = FixedClock(START)
    app = Compliance.open(url, clock)
    w = build_world(app)
    admin, prs, rph = w.admin.id, w.prescriber.id, w.pharmacist.id
    pat = app.register_patient(prs, "Ana Qualified", "2003-08-21").patient.id
    app.enrol(prs, pat)
    app.assign_category(prs, pat, CAN, "REPRODUCTIVE_POTENTIAL")
    for form in ("PATIENT_INFORMATION_CONSENT", "BIRTH_DEFECTS_CONSENT"):
        app.record_consent(prs, pat, form)
    started = (START.date() - timedelta(days=11)).isoformat()
    app.record_contraception(prs, pat, {"iud": started, "male_condom": started})
    app.record_test(prs, pat, kind="screening", specimen_date=START.date(), setting="clinic",
                    result="negative")
    clock.set(NOW)
    app.record_test(prs, pat, kind="confirmation", specimen_date=NOW.date(), setting="lab",
                    result="negative")
    app.record_counselling(prs, pat)
    app.record_comprehension(pat, pat)
    app.confirm_contraception(pat, pat, ["iud", "male_condom"])
    app.confirm_patient(prs, pat)
    rx = app.prescribe(prs, pat, 30).prescription
    assert rx is not None
    auth = app.request_authorization(rph, rx.id).authorization
    assert auth is not None

    pat2 = app.register_patient(prs, "Bea Pending", "2001-02-03").patient.id
    app.enrol(prs, pat2)
    app.assign_category(prs, pat2, CAN, "REPRODUCTIVE_POTENTIAL")
    pat_free = app.register_patient(prs, "Cy Unenrolled", "1999-09-09").patient.id
    prs_new = app.register_prescriber(admin, "Dr Not Yet", next_npi()).id
    dsg_gone = app.register_designee(prs, "Gone Designee").id
    app.deactivate_designee(admin, dsg_gone)
    pharmacy2 = app.register_pharmacy(admin, "Aloha Pharmacy", "7777777", "Pacific/Honolulu").id
    app.activate_pharmacy(admin, pharmacy2)
    rph2 = app.register_pharmacist(admin, "Kai Pharmacist", pharmacy2).id
    rph_gone = app.register_pharmacist(admin, "Old Pharmacist", w.pharmacy.id).id
    app.deactivate_pharmacist(admin, rph_gone)
    return Env(
        backend, url, app, clock, admin, prs, prs_new, w.designee.id, dsg_gone, w.pharmacy.id,
        pharmacy2, rph, rph2, rph_gone, pat, pat2, pat_free, rx.id, auth.number,
        list(Base.metadata.sorted_tables),
    )


def _pg_url(name: str) -> str:
    return f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"


@pytest.fixture(scope="module")
def sqlite_env(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    path = tmp_path_factory.mktemp("hostile") / "hostile.db"
    shutil.copy(sqlite_template, path)
    env = build_env("sqlite", f"sqlite:///{path}")
    yield env
    env.app.close()


@pytest.fixture(scope="module")
def postgresql_env(pg_template: str) -> Iterator[Env]:
    name = create_pg_database(template=pg_template)
    try:
        env = build_env("postgresql", _pg_url(name))
        yield env
        env.app.close()
    finally:
        drop_pg_database(name)


@pytest.fixture
def env(backend: str, request: pytest.FixtureRequest) -> Env:
    """The shared hostile world on each backend in turn (conftest's ``backend`` parameter)."""
    return request.getfixturevalue(f"{backend}_env")  # type: ignore[no-any-return]


# --- snapshots and the central assertion --------------------------------------------------------

Snapshot = dict[str, Counter[str]]


def snapshot(app: Compliance, tables: list[Table]) -> Snapshot:
    """Every row of every table, as a multiset of row representations (raw driver values)."""
    engine = app.engine.execution_options(sqlite_begin="DEFERRED")
    with engine.connect() as conn:
        return {
            t.name: Counter(repr(tuple(r)) for r in conn.exec_driver_sql(f"SELECT * FROM {t.name}"))
            for t in tables
        }


def newest_event(app: Compliance) -> Any:
    events = Base.metadata.tables["audit_events"]
    with app.engine.execution_options(sqlite_begin="DEFERRED").connect() as conn:
        return conn.execute(select(events).order_by(events.c.id.desc()).limit(1)).one()


def _codes(value: object) -> list[str]:
    return list(json.loads(value) if isinstance(value, str) else value or [])


def expect(condition: object, message: object) -> None:
    """Fail with the message alone, no traceback: formatting tracebacks of this large module for
    every expected (xfail) failure would cost most of the file's time budget."""
    if not condition:
        pytest.fail(str(message)[:2000], pytrace=False)


def assert_nothing_written(
    app: Compliance,
    before: Snapshot,
    after: Snapshot,
    *,
    refused: bool,
    reasons: tuple[str, ...] = (),
    action: str | None = None,
) -> None:
    """Unchanged; for a refusal, exactly one new ``refused`` audit event and nothing else."""
    changed = sorted(t for t in before if before[t] != after[t])
    if not refused:
        expect(changed == [], f"written to {changed}")
        return
    expect(set(changed) <= AUDIT_TABLES, f"a refusal wrote to {changed}")
    removed = before["audit_events"] - after["audit_events"]
    added = after["audit_events"] - before["audit_events"]
    expect(not removed, "an audit event was altered or removed")
    expect(sum(added.values()) == 1, f"{sum(added.values())} audit events for one refusal")
    event = newest_event(app)
    expect(event.outcome == "refused", event)
    expect(set(reasons) <= set(_codes(event.reason_codes)), (reasons, event.reason_codes))
    if action is not None:
        expect(event.action == action, f"audited as {event.action!r}, not {action!r}")


def outcome_of(call: Callable[[], object]) -> ComplianceError:
    try:
        call()
    except ComplianceError as exc:
        return exc
    except Exception as exc:
        pytest.fail(f"raised {type(exc).__name__}, not a ComplianceError: {exc!r}"[:600],
                    pytrace=False)
    pytest.fail("the hostile input was accepted", pytrace=False)


def rejected(
    env: Env,
    call: Callable[[], object],
    exit: int | tuple[int, ...],
    *,
    field: str | None = None,
    reasons: tuple[str, ...] = (),
    action: str | None = None,
) -> ComplianceError:
    """``call`` fails with a documented error, names the field, and writes nothing."""
    allowed = (exit,) if isinstance(exit, int) else exit
    before = snapshot(env.app, env.tables)
    err = outcome_of(call)
    expect(err.exit_code in allowed, f"{type(err).__name__} (exit {err.exit_code}): {err}")
    if isinstance(err, InvalidInput):
        expect(err.field == field, f"field {err.field!r}, expected {field!r}: {err}")
    if isinstance(err, Refused):
        expect(set(reasons) <= set(err.reasons), (reasons, err.reasons))
    after = snapshot(env.app, env.tables)
    assert_nothing_written(
        env.app, before, after, refused=isinstance(err, Refused), reasons=reasons, action=action
    )
    return err


EDGE_EAST = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))
EDGE_WEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-14)))


# --- table-driven API cases ---------------------------------------------------------------------

BOTH = ("sqlite", "postgresql")
PG_ONLY = ("postgresql",)


@dataclass(frozen=True)
class Case:
    name: str
    call: Callable[[Env], object]
    exit: int | tuple[int, ...]
    field: str | None = None
    reasons: tuple[str, ...] = ()
    bug: str | None = None
    bug_on: tuple[str, ...] = BOTH


def _test(e: Env, pat: str | None = None, **kw: Any) -> object:
    args: dict[str, Any] = {"kind": "screening", "specimen_date": NOW.date(), "setting": "clinic",
                            "result": "negative"}
    return e.app.record_test(e.prs, pat or e.pat2, **{**args, **kw})


# A valid-looking date field, given the hostile value: (field, call).
DATE_TARGETS: dict[str, tuple[str, Callable[[Env, object], object]]] = {
    "register_patient": (
        "date_of_birth", lambda e, v: e.app.register_patient(e.prs, "Dee Date", v)),
    "find_patients": ("date_of_birth", lambda e, v: e.app.find_patients(e.prs, None, v)),
    "enrol": ("enrolled_on", lambda e, v: e.app.enrol(e.prs, e.pat_free, v)),
    "record_test": ("specimen_date", lambda e, v: _test(e, specimen_date=v)),
    "prescribe.written_on": (
        "written_on", lambda e, v: e.app.prescribe(e.prs, e.pat2, 30, written_on=v)),
    "prescribe.office_visit_on": (
        "office_visit_on", lambda e, v: e.app.prescribe(e.prs, e.pat2, 30, office_visit_on=v)),
    "end_treatment": ("last_dose_on", lambda e, v: e.app.end_treatment(e.prs, e.pat2, v)),
    "report_pregnancy": ("reported_on", lambda e, v: e.app.report_pregnancy(e.prs, e.pat2, v)),
    "record_contraception": (
        "methods.iud", lambda e, v: e.app.record_contraception(e.prs, e.pat2, {"iud": v})),
    "activate_pharmacy": (
        "expires_on", lambda e, v: e.app.activate_pharmacy(e.admin, e.pharmacy, v)),
    "set_home_testing": (
        "on", lambda e, v: e.app.set_home_testing(e.prs, True, "photo with the day's paper", v)),
    "set_rules_schedule": (
        "effective", lambda e, v: e.app.set_rules_schedule(e.admin, "ipledge/2026-mod", v)),
}
# What the future / the distant past means for each clinical date.
FUTURE_TARGETS = ("register_patient", "enrol", "record_test", "prescribe.written_on",
                  "prescribe.office_visit_on", "end_treatment", "report_pregnancy",
                  "record_contraception", "set_home_testing")
EARLIEST = {  # the first day each target accepts (pat2 enrolled on NOW, born 2001-02-03)
    "register_patient": date(1900, 1, 1),
    "record_test": NOW.date() - timedelta(days=90),
    "prescribe.written_on": NOW.date(),
    "end_treatment": NOW.date(),
    "record_contraception": date(2001, 2, 3),
    "activate_pharmacy": NOW.date() + timedelta(days=1),
}
IMPOSSIBLE_DATES: tuple[object, ...] = (
    "2027-02-30", "2026-13-01", "", "yesterday", 20261301, "20261301",
    datetime(2026, 11, 2, 10, tzinfo=UTC), datetime(2026, 11, 2, 10), "2026-11-02\x00",
    "2026-11-02T10:00:00+00:00", "\u0662\u0660\u0662\u0666-\u0661\u0661-\u0660\u0662",
)


def _date_cases() -> list[Case]:
    cases = []
    for target, (fld, call) in DATE_TARGETS.items():
        for i, value in enumerate(IMPOSSIBLE_DATES):
            if target not in ("record_test", "register_patient", "prescribe.written_on") and i > 4:
                continue
            cases.append(Case(f"date-{target}-{value!r}", lambda e, c=call, v=value: c(e, v),
                              2, fld))
        if target in FUTURE_TARGETS:
            cases.append(Case(f"date-{target}-future", lambda e, c=call: c(e, FUTURE), 2, fld))
            cases.append(Case(f"date-{target}-far-future",
                              lambda e, c=call: c(e, "9999-12-31"), 2, fld))
        if target in EARLIEST:
            early = EARLIEST[target] - timedelta(days=1)
            cases.append(Case(f"date-{target}-too-early", lambda e, c=call, d=early: c(e, d),
                              2, fld))
            cases.append(Case(f"date-{target}-0001", lambda e, c=call: c(e, "0001-01-01"), 2, fld))
    return cases


def _count_cases() -> list[Case]:
    cases = []
    for v in (0, -1, 367, 10**9, 2**63, -(2**63), 30.0, 30.5, "30", None, True, Decimal(30),
              Fraction(61, 2), math.nan, math.inf):
        cases.append(Case(f"days_supply-{v!r}", lambda e, v=v: e.app.prescribe(e.prs, e.pat2, v),
                          2, "days_supply"))
    for v in (-1, 100, 10**9, 2**63, 1.5, "1", None, False):
        cases.append(Case(f"refills-{v!r}",
                          lambda e, v=v: e.app.prescribe(e.prs, e.pat2, 30, v), 2, "refills"))
    for v in (0, -5, 2**63, 1001, math.nan, math.inf, -math.inf, "25", None, True):
        cases.append(Case(f"sensitivity-{v!r}", lambda e, v=v: _test(e, sensitivity_miu_ml=v),
                          2, "sensitivity_miu_ml"))
    for v in (-1, 367, 2**63, -(2**63), True):
        cases.append(Case(f"due-{v!r}", lambda e, v=v: e.app.due(e.prs, v), 2, "within"))
    for v in ("7", None, 7.5):
        cases.append(Case(f"due-{v!r}", lambda e, v=v: e.app.due(e.prs, v), 2, "within"))
    for v in (0, -1, 1001, 2**63):
        cases.append(Case(f"find-limit-{v!r}",
                          lambda e, v=v: e.app.find_patients(e.prs, limit=v), 2, "limit"))
    for v in ("5", None):
        cases.append(Case(f"find-limit-{v!r}", lambda e, v=v: e.app.find_patients(e.prs, limit=v),
                          2, "limit"))
    for v in (-5, 0, "30", 30.5):
        cases.append(Case(f"check_prescribe-days_supply-{v!r}",
                          lambda e, v=v: e.app.check_prescribe(e.prs, e.pat2, v), 2, "days_supply"))
    for v in (-1, "x", 1.5):
        cases.append(Case(f"check_prescribe-refills-{v!r}",
                          lambda e, v=v: e.app.check_prescribe(e.prs, e.pat2, 30, v), 2, "refills"))
    return cases


Ref = Callable[[Env], object]


def _bad_refs(kind: str, example: Callable[[Env], str]) -> list[tuple[str, Ref]]:
    """Malformed references to a record of ``kind``: (label, value given the world)."""
    other = "PAT" if kind != "PAT" else "PRS"
    return [
        ("empty", lambda e: ""),
        ("blank", lambda e: "   "),
        ("none", lambda e: None),
        ("int", lambda e: 12345),
        ("prefix-only", lambda e: f"{kind}-"),
        ("sql", lambda e: f"{kind}-'; DROP TABLE patients;--"),
        ("wrong-check", lambda e: wrong_check(example(e))),
        ("wrong-prefix", lambda e: other + example(e)[len(kind):]),
        ("no-dash", lambda e: example(e).replace("-", "")),
        ("long", lambda e: example(e) + "X" * 10_000),
        ("nul", lambda e: example(e)[:-1] + "\x00"),
        ("rtl", lambda e: "\u200f" + example(e)),
        ("non-ascii", lambda e: f"{kind}-ÄÖÜ4567X"),
        ("fullwidth", lambda e: example(e).translate(
            {ord(c): ord(c) + 0xFEE0 for c in "0123456789ABCDEFGHJKMNPQRSTVWXYZ"})),
    ]


REF_TARGETS: list[tuple[str, str, str, Callable[[Env], str], Callable[[Env, object], object]]] = [
    # (label, field, prefix, an existing record, the call)
    ("enrol", "patient", "PAT", lambda e: e.pat_free, lambda e, v: e.app.enrol(e.prs, v)),
    ("status", "patient", "PAT", lambda e: e.pat2, lambda e, v: e.app.status(e.prs, v)),
    ("add_patient_external_id", "patient", "PAT", lambda e: e.pat2,
     lambda e, v: e.app.add_patient_external_id(e.prs, v, "MRN", "123")),
    ("check_dispense", "prescription", "RX", lambda e: e.rx,
     lambda e, v: e.app.check_dispense(e.rph, v)),
    ("request_authorization", "prescription", "RX", lambda e: e.rx,
     lambda e, v: e.app.request_authorization(e.rph, v)),
    ("activate_pharmacy", "pharmacy", "PHA", lambda e: e.pharmacy,
     lambda e, v: e.app.activate_pharmacy(e.admin, v)),
    ("register_pharmacist", "pharmacy", "PHA", lambda e: e.pharmacy,
     lambda e, v: e.app.register_pharmacist(e.admin, "Pat Pharmacist", v)),
    ("suspend_prescriber", "prescriber", "PRS", lambda e: e.prs,
     lambda e, v: e.app.suspend_prescriber(e.admin, v)),
    ("grant_designee.prescriber", "prescriber", "PRS", lambda e: e.prs,
     lambda e, v: e.app.grant_designee(e.admin, e.dsg, v)),
    ("grant_designee.designee", "designee", "DSG", lambda e: e.dsg,
     lambda e, v: e.app.grant_designee(e.admin, v, e.prs)),
    ("list_grants", "designee", "DSG", lambda e: e.dsg, lambda e, v: e.app.list_grants(e.admin, v)),
    ("deactivate_pharmacist", "pharmacist", "RPH", lambda e: e.rph,
     lambda e, v: e.app.deactivate_pharmacist(e.admin, v)),
    ("deactivate_administrator", "administrator", "ADM", lambda e: e.admin,
     lambda e, v: e.app.deactivate_administrator(e.admin, v)),
    ("get_person", "person", "PRS", lambda e: e.prs, lambda e, v: e.app.get_person(e.admin, v)),
]


FULL_REF_TARGETS = {"enrol", "check_dispense", "suspend_prescriber", "get_person"}
SOME_BAD_REFS = {"empty", "none", "sql", "wrong-check", "wrong-prefix", "nul"}


def _ref_cases() -> list[Case]:
    cases = []
    for label, fld, prefix, example, call in REF_TARGETS:
        for bad, value in _bad_refs(prefix, example):
            if label not in FULL_REF_TARGETS and bad not in SOME_BAD_REFS:
                continue  # the full list runs against four targets; the properties do the rest
            if label == "list_grants" and bad == "none":
                continue  # no designee: every grant
            cases.append(Case(f"ref-{label}-{bad}", lambda e, c=call, v=value: c(e, v(e)), 2, fld))
        cases.append(Case(f"ref-{label}-unknown",
                          lambda e, c=call, p=prefix: c(e, short_id(p)), 5))
    return cases


def _auth_number_cases() -> list[Case]:
    cases = []
    for label, value in [
        ("empty", lambda e: ""), ("none", lambda e: None), ("int", lambda e: 12345),
        ("short", lambda e: "1234"), ("letters", lambda e: "ABCDEFGHIJKLMNOPQRSTU"),
        ("wrong-check", lambda e: wrong_digit(e.auth)), ("22-digits", lambda e: e.auth + "0"),
        ("sql", lambda e: "1'; DROP TABLE authorizations;--"),
        ("nul", lambda e: e.auth[:-1] + "\x00"),
        ("fullwidth", lambda e: e.auth.translate({ord(c): ord(c) + 0xFEE0 for c in "0123456789"})),
        ("arabic-indic",
         lambda e: e.auth.translate({ord(c): ord(c) + 0x0630 for c in "0123456789"})),
    ]:
        cases.append(Case(f"auth-record-{label}",
                          lambda e, v=value: e.app.record_dispense(e.rph, v(e)), 2,
                          "authorization"))
        cases.append(Case(f"auth-reverse-{label}",
                          lambda e, v=value: e.app.reverse_authorization(e.rph, v(e), "no show"),
                          2, "authorization"))
    unknown = new_number()
    cases.append(Case("auth-record-unknown", lambda e: e.app.record_dispense(e.rph, unknown), 3,
                      reasons=(rc.AUTHORIZATION_NOT_FOUND,)))
    return cases


LONG = "x" * 201
TEXT_HOSTILE: tuple[tuple[str, object], ...] = (
    ("empty", ""), ("blank", " \t "), ("none", None), ("int", 42), ("list", ["Ana"]),
    ("nul", "Ana\x00"), ("bell", "Ana\x07"), ("escape", "\x1b[31mAna"), ("newline", "A\nB"),
    ("rtl-mark", "Ana\u200f"), ("rtl-override", "\u202eanA"), ("zero-width", "A\u200bna"),
    ("bom", "\ufeffAna"), ("private-use", "Ana\ue000"), ("unassigned", "Ana\U000e0fff"),
    ("surrogate", "Ana\ud800"), ("zwj-emoji", "\U0001f469\u200d\U0001f52c"),
)
TEXT_TARGETS: list[tuple[str, str, int, Callable[[Env, object], object]]] = [
    # (label, field, max length, the call)
    ("add_administrator", "name", 200, lambda e, v: e.app.add_administrator(e.admin, v)),
    ("register_prescriber", "name", 200,
     lambda e, v: e.app.register_prescriber(e.admin, v, next_npi())),
    ("register_designee", "name", 200, lambda e, v: e.app.register_designee(e.prs, v)),
    ("register_pharmacy", "name", 200,
     lambda e, v: e.app.register_pharmacy(e.admin, v, "7654321", "America/Chicago")),
    ("register_pharmacist", "name", 200,
     lambda e, v: e.app.register_pharmacist(e.admin, v, e.pharmacy)),
    ("register_patient", "name", 200, lambda e, v: e.app.register_patient(e.prs, v, "2000-01-01")),
    ("find_patients", "name", 200, lambda e, v: e.app.find_patients(e.prs, v)),
    ("suspend_prescriber.note", "note", 500,
     lambda e, v: e.app.suspend_prescriber(e.admin, e.prs, v)),
    ("report_pregnancy.note", "note", 500,
     lambda e, v: e.app.report_pregnancy(e.prs, e.pat2, None, v)),
    ("resume_course.note", "note", 500, lambda e, v: e.app.resume_course(e.prs, e.pat2, v)),
    ("withdraw_course.note", "note", 500, lambda e, v: e.app.withdraw_course(e.prs, e.pat2, v)),
    ("lost.note", "note", 500, lambda e, v: e.app.mark_lost_to_follow_up(e.prs, e.pat2, v)),
    ("reverse_authorization.reason", "reason", 200,
     lambda e, v: e.app.reverse_authorization(e.rph, e.auth, v)),
    ("set_home_testing.procedure", "procedure", 2000,
     lambda e, v: e.app.set_home_testing(e.prs, True, v)),
    ("external_id.value", "external_ids.MRN", 64,
     lambda e, v: e.app.add_patient_external_id(e.prs, e.pat2, "MRN", v)),
    ("register_patient.external_id", "external_ids.MRN", 64,
     lambda e, v: e.app.register_patient(e.prs, "Eve", "2000-01-01", {"MRN": v})),
]
# Falsy notes mean "no note" where a note is optional: only resume requires one.
OPTIONAL_NOTES = {"suspend_prescriber.note", "report_pregnancy.note", "withdraw_course.note",
                  "lost.note"}


FULL_TEXT_TARGETS = {"register_patient", "register_designee", "withdraw_course.note",
                     "reverse_authorization.reason", "external_id.value"}
SOME_TEXT_HOSTILE = {"empty", "none", "int", "nul", "rtl-override", "surrogate", "too-long"}


def _text_cases() -> list[Case]:
    cases = []
    for label, fld, limit, call in TEXT_TARGETS:
        for bad, value in (*TEXT_HOSTILE, ("too-long", "x" * (limit + 1))):
            if label not in FULL_TEXT_TARGETS and bad not in SOME_TEXT_HOSTILE:
                continue
            if label in OPTIONAL_NOTES and not value:
                continue
            if label == "find_patients" and value is None:
                continue  # no name: list every patient
            if fld.startswith("external_ids") and bad in ("zwj-emoji",):
                continue
            cases.append(Case(f"text-{label}-{bad}", lambda e, c=call, v=value: c(e, v), 2, fld))
    for label, value in [("sql", "'; DROP TABLE patients;--"), ("space", "12 34"),
                         ("slash-start", "/etc"), ("fullwidth-digits", "\uff11\uff12\uff13")]:
        cases.append(Case(f"external_id-{label}",
                          lambda e, v=value: e.app.add_patient_external_id(e.prs, e.pat2, "MRN", v),
                          2, "external_ids.MRN"))
    for label, system in [("sql", "MRN'; DROP TABLE patients;--"), ("empty", ""), ("none", None),
                          ("space", "M RN"), ("nul", "MRN\x00")]:
        cases.append(Case(f"external_id-system-{label}",
                          lambda e, s=system: e.app.add_patient_external_id(e.prs, e.pat2, s, "1"),
                          2, ("system" if not isinstance(system, str) else "external_ids")))
    cases.append(Case("register_patient-external_ids-same-system-twice",
                      lambda e: e.app.register_patient(
                          e.prs, "Eve Twice", "2000-01-01", {"MRN": "111", "mrn": "222"}),
                      2, "external_ids"))
    cases.append(Case("register_patient-external_ids-systems-collide-at-32",
                      lambda e: e.app.register_patient(
                          e.prs, "Eve Long", "2000-01-01", {"S" * 40 + "X": "1", "S" * 40 + "Y": "2"}),
                      2, "external_ids"))
    cases.append(Case("external_id-system-over-32",
                      lambda e: e.app.add_patient_external_id(e.prs, e.pat_free, "B" * 40, "5"),
                      2, "external_ids"))
    cases.append(Case("register_patient-external_ids-not-a-map",
                      lambda e: e.app.register_patient(e.prs, "Eve", "2000-01-01", ["MRN=1"]), 2,
                      "external_ids"))
    cases.append(Case("register_patient-external_ids-too-many",
                      lambda e: e.app.register_patient(
                          e.prs, "Eve", "2000-01-01", {f"SYS{i}": str(i) for i in range(11)}),
                      2, "external_ids"))
    return cases


def _identifier_cases() -> list[Case]:
    good = npi_with_check_digit("123456789")
    cases = []
    for label, value in [("wrong-check", wrong_digit(good)), ("nine", good[:9]),
                         ("eleven", good + "1"), ("letters", "abcdefghij"), ("empty", ""),
                         ("fullwidth", good.translate({ord(c): ord(c) + 0xFEE0 for c in good})),
                         ("sql", "1' OR '1'='1"), ("none", None), ("int", int(good)),
                         ("nul", good[:9] + "\x00")]:
        cases.append(Case(f"npi-{label}",
                          lambda e, v=value: e.app.register_prescriber(e.admin, "Dr N", v), 2,
                          "external_id"))
    for label, value in [("six", "123456"), ("eight", "12345678"), ("letters", "abcdefg"),
                         ("sql", "'; --"), ("none", None), ("nul", "123456\x00")]:
        cases.append(Case(f"ncpdp-{label}",
                          lambda e, v=value: e.app.register_pharmacy(e.admin, "P", v, "UTC"), 2,
                          "external_id"))
    for label, value in [("sql", "NPI'; DROP TABLE prescribers;--"), ("empty", ""),
                         ("space", "N PI"), ("none", None)]:
        cases.append(Case(f"id_system-{label}",
                          lambda e, v=value: e.app.register_prescriber(e.admin, "Dr S", "1", v),
                          2, "id_system"))
    for label, zone in [("mars", "Mars/Olympus"), ("empty", ""), ("nul", "UTC\x00"),
                        ("traversal", "../../etc/passwd"), ("absolute", "/etc/localtime"),
                        ("sql", "America/New_York'; DROP TABLE pharmacies;--"),
                        ("long", "A" * 65), ("none", None), ("offset", "+05:00"),
                        ("lowercase-dir", "america/new_york/"), ("zone.tab", "zone.tab"),
                        ("rtl", "\u200fUTC")]:
        cases.append(Case(f"time_zone-{label}",
                          lambda e, z=zone: e.app.register_pharmacy(e.admin, "P", "7654321", z), 2,
                          "time_zone"))
        if zone is None:
            continue  # a prescriber may have no zone of their own
        cases.append(Case(f"prescriber-time_zone-{label}",
                          lambda e, z=zone: e.app.register_prescriber(e.admin, "Dr Z", next_npi(),
                                                                      time_zone=z),
                          2, "time_zone"))
        cases.append(Case(f"set-zone-{label}",
                          lambda e, z=zone: e.app.set_prescriber_zone(e.admin, e.prs, z),
                          2, "time_zone"))
    for folder in ("America", "Europe", "Etc"):
        cases.append(Case(f"time_zone-folder-{folder}",
                          lambda e, z=folder: e.app.register_pharmacy(e.admin, "P", "7654321", z),
                          2, "time_zone"))
    return cases


SEVEN_METHODS = ("iud", "male_condom", "vaginal_ring", "hormonal_patch",
                 "diaphragm_with_spermicide", "hormonal_implant", "tubal_ligation")


def _choice_cases() -> list[Case]:
    bogus = ("bogus", "", "CAN_GET_PREGNANT'; DROP TABLE courses;--", None)
    cases = []
    for v in bogus:
        cases.append(Case(f"category-{v!r}", lambda e, v=v: e.app.assign_category(
            e.prs, e.pat2, v, "REPRODUCTIVE_POTENTIAL"), 2, "category"))
        cases.append(Case(f"reason-{v!r}", lambda e, v=v: e.app.assign_category(
            e.prs, e.pat2, CAN, v), 2, "reason"))
        cases.append(Case(f"consent-form-{v!r}",
                          lambda e, v=v: e.app.record_consent(e.prs, e.pat2, v), 2, "form"))
        cases.append(Case(f"method-{v!r}", lambda e, v=v: e.app.record_contraception(
            e.prs, e.pat2, {v: "2026-12-01"}), 2, "methods"))
        cases.append(Case(f"confirm-method-{v!r}", lambda e, v=v: e.app.confirm_contraception(
            e.pat2, e.pat2, [v]), 2, "methods"))
        for fld in ("kind", "setting", "result"):
            cases.append(Case(f"test-{fld}-{v!r}", lambda e, f=fld, v=v: _test(e, **{f: v}), 2,
                              fld))
        cases.append(Case(f"scope-{v!r}", lambda e, v=v: e.app.grant_designee(
            e.admin, e.dsg, e.prs, [v]), 2, "scopes"))
        cases.append(Case(f"role-{v!r}", lambda e, v=v: e.app.list_people(e.admin, v), 2, "role"))
        cases.append(Case(f"ruleset-schedule-{v!r}", lambda e, v=v: e.app.set_rules_schedule(
            e.admin, v, "2027-01-01"), 2, "ruleset"))
        cases.append(Case(f"ruleset-{v!r}", lambda e, v=v: Compliance.ruleset(v), 2, "ruleset"))
        cases.append(Case(f"diagram-{v!r}", lambda e, v=v: Compliance.course_diagram(v), 2,
                          "ruleset"))
    cases += [
        Case("methods-not-a-map", lambda e: e.app.record_contraception(e.prs, e.pat2, ["iud"]), 2,
             "methods"),
        Case("methods-none", lambda e: e.app.record_contraception(e.prs, e.pat2, None), 2,
             "methods"),
        Case("methods-empty", lambda e: e.app.record_contraception(e.prs, e.pat2, {}), 2,
             "methods"),
        Case("methods-seven", lambda e: e.app.record_contraception(
            e.prs, e.pat2, dict.fromkeys(SEVEN_METHODS, "2026-12-01")),
             2, "methods"),
        Case("methods-twice", lambda e: e.app.record_contraception(
            e.prs, e.pat2, {"iud": "2026-12-01", " IUD ": "2026-12-01"}), 2, "methods"),
        Case("confirm-empty", lambda e: e.app.confirm_contraception(e.pat2, e.pat2, []), 2,
             "methods"),
        Case("supply-as-text", lambda e: e.app.check_dispense(
            e.rph, e.rx, days_supply="30"), 2, "days_supply"),  # type: ignore[arg-type]
        Case("supply-zero", lambda e: e.app.request_authorization(e.rph, e.rx, days_supply=0), 2,
             "days_supply"),
        Case("supply-bool", lambda e: e.app.request_authorization(
            e.rph, e.rx, days_supply=True), 2, "days_supply"),
        Case("find-dob-impossible", lambda e: e.app.find_prescription(
            e.rph, e.pat, "2003-02-30", npi_with_check_digit("123456789")), 2, "date_of_birth"),
        Case("find-npi-check-digit", lambda e: e.app.find_prescription(
            e.rph, e.pat, "2003-08-21", "1234567890"), 2, "prescriber_npi"),
        Case("find-patient-not-an-id", lambda e: e.app.find_prescription(
            e.rph, "Ana", "2003-08-21", npi_with_check_digit("123456789")), 2, "patient"),
        Case("confirm-text-not-list", lambda e: e.app.confirm_contraception(e.pat2, e.pat2, "iud"),
             2, "methods"),
        Case("confirm-none", lambda e: e.app.confirm_contraception(e.pat2, e.pat2, None), 2,
             "methods"),
        Case("scopes-empty", lambda e: e.app.grant_designee(e.admin, e.dsg, e.prs, []), 2,
             "scopes"),
        Case("scopes-text-not-list", lambda e: e.app.grant_designee(
            e.admin, e.dsg, e.prs, "course.read"), 2, "scopes"),
        Case("scopes-mixed-types", lambda e: e.app.grant_designee(
            e.admin, e.dsg, e.prs, ["course.read", 1]), 2, "scopes"),
        Case("expires-past", lambda e: e.app.grant_designee(
            e.admin, e.dsg, e.prs, None, NOW - timedelta(seconds=1)), 2, "expires_at"),
        Case("expires-naive", lambda e: e.app.grant_designee(
            e.admin, e.dsg, e.prs, None, datetime(2030, 1, 1)), 2, "expires_at"),
        Case("expires-text", lambda e: e.app.grant_designee(
            e.admin, e.dsg, e.prs, None, "2030-01-01"), 2, "expires_at"),
        Case("expires-date", lambda e: e.app.grant_designee(
            e.admin, e.dsg, e.prs, None, date(2030, 1, 1)), 2, "expires_at"),
        Case("expires-year-1-east-of-utc", lambda e: e.app.grant_designee(
            e.admin, e.dsg, e.prs, None, EDGE_EAST), 2, "expires_at"),
        Case("expires-year-9999-west-of-utc", lambda e: e.app.grant_designee(
            e.admin, e.dsg, e.prs, None, EDGE_WEST), 2, "expires_at"),
        Case("role-list", lambda e: e.app.list_people(e.admin, ["prescriber"]), 2, "role"),
        Case("ruleset-list", lambda e: Compliance.ruleset(["ipledge/2026-mod"]), 2, "ruleset"),
        Case("programme-bogus", lambda e: e.app.enrol(e.prs, e.pat_free, None, "bogus"), 2,
             "programme"),
        Case("programme-none", lambda e: e.app.enrol(e.prs, e.pat_free, None, None), 2,
             "programme"),
        Case("enrolled_on-before-any-ruleset", lambda e: e.app.enrol(
            e.prs, e.pat_free, "1999-01-01"), 2, "enrolled_on"),
        Case("consent-signed_on-impossible", lambda e: e.app.record_consent(
            e.prs, e.pat2, "PATIENT_INFORMATION_CONSENT", "2027-02-30"), 2, "signed_on"),
        Case("consent-signed_on-future", lambda e: e.app.record_consent(
            e.prs, e.pat2, "PATIENT_INFORMATION_CONSENT", FUTURE), 2, "signed_on"),
        Case("counselled_on-impossible", lambda e: e.app.record_counselling(
            e.prs, e.pat2, "2026-13-01"), 2, "counselled_on"),
        Case("office-visit-after-written", lambda e: e.app.prescribe(
            e.prs, e.pat2, 30, 0, NOW.date(), NOW.date() + timedelta(days=1)), 2,
             "office_visit_on"),
        Case("end-treatment-no-date", lambda e: e.app.end_treatment(e.prs, e.pat2, None), 2,
             "last_dose_on"),
        Case("resume-without-note", lambda e: e.app.resume_course(e.prs, e.pat2, None), 2, "note"),
        Case("home-testing-no-procedure", lambda e: e.app.set_home_testing(e.prs, True), 2,
             "procedure"),
        Case("home-testing-enabled-text", lambda e: e.app.set_home_testing(
            e.prs, "false", "photo with the day's paper"), 2, "enabled"),
        Case("test-clia-text", lambda e: _test(e, clia="false"), 2, "clia"),
        Case("list-status-unknown", lambda e: e.app.list_people(e.admin, "prescriber", "activ"),
             2, "status"),
        Case("list-status-nul", lambda e: e.app.list_people(e.admin, "prescriber", "active\x00"),
             2, "status"),
        Case("list-status-int", lambda e: e.app.list_people(e.admin, "designee", 1), 2, "status"),
        Case("pharmacies-status-sql", lambda e: e.app.list_pharmacies(
            e.admin, "activated' OR '1'='1"), 2, "status"),
    ]
    return cases


def _actor_cases() -> list[Case]:
    unknown = (rc.ACTOR_UNKNOWN,)
    cases = []
    for label, actor in [
        ("empty", ""), ("blank", "   "), ("sql", "'; DROP TABLE administrators;--"),
        ("sql-prefixed", "ADM-'; DROP TABLE administrators;--"), ("unknown", short_id("ADM")),
        ("wrong-check", wrong_check(short_id("PRS"))), ("pharmacy-id", short_id("PHA")),
        ("prescription-id", short_id("RX")), ("long", "ADM-" + "X" * 100_000),
        ("non-ascii", "ÄDM-ÖÖÖÖÖÖÖÖ"), ("rtl", "\u202eADM-1234567"), ("emoji", "\U0001f600"),
        ("newline", "ADM-1\nADM-2"),
    ]:
        cases.append(Case(f"actor-{label}", lambda e, a=actor: e.app.get_patient(a, e.pat2), 4,
                          reasons=unknown))
    cases += [
        Case("actor-nul", lambda e: e.app.get_patient("ADM-\x00", e.pat2), 4, reasons=unknown),
        Case("actor-none", lambda e: e.app.get_patient(None, e.pat2), (2, 4), "actor"),
        Case("actor-int", lambda e: e.app.get_patient(7, e.pat2), (2, 4), "actor"),
        Case("actor-surrogate", lambda e: e.app.get_patient("ADM-\udcff", e.pat2), 4,
             reasons=unknown),
        Case("obo-int-unknown-actor", lambda e: e.app.get_patient("nobody", e.pat2, 5), (2, 4),
             "on_behalf_of"),
        Case("obo-nul-unknown-actor", lambda e: e.app.get_patient("nobody", e.pat2, "PRS-\x00"),
             4, reasons=unknown),
        Case("obo-for-a-prescriber", lambda e: e.app.get_patient(e.prs, e.pat2, e.prs), 2,
             "on_behalf_of"),
        Case("obo-sql", lambda e: e.app.get_patient(e.dsg, e.pat2, "PRS-'; DROP TABLE x;--"), 2,
             "on_behalf_of"),
        Case("obo-patient-id", lambda e: e.app.get_patient(e.dsg, e.pat2, e.pat2), 2,
             "on_behalf_of"),
        Case("obo-unknown-prescriber", lambda e: e.app.get_patient(
            e.dsg, e.pat2, short_id("PRS")), 4, reasons=(rc.DESIGNEE_GRANT_MISSING,)),
        Case("inactive-designee", lambda e: e.app.register_patient(e.dsg_gone, "X", "2000-01-01"),
             4, reasons=(rc.ACTOR_INACTIVE,)),
        Case("inactive-pharmacist", lambda e: e.app.check_dispense(e.rph_gone, e.rx), 4,
             reasons=(rc.ACTOR_INACTIVE,)),
        Case("uncertified-prescriber", lambda e: e.app.prescribe(e.prs_new, e.pat2, 30), 4,
             reasons=(rc.PRESCRIBER_NOT_CERTIFIED,)),
        Case("patient-on-another-course", lambda e: e.app.confirm_contraception(
            e.pat2, e.pat, ["iud"]), 4, reasons=(rc.OUT_OF_SCOPE,)),
        Case("patient-reads-another", lambda e: e.app.status(e.pat2, e.pat), 4,
             reasons=(rc.OUT_OF_SCOPE,)),
        Case("other-pharmacy-reverses", lambda e: e.app.reverse_authorization(
            e.rph2, e.auth, "not mine"), 4, reasons=(rc.OUT_OF_SCOPE,)),
        Case("other-pharmacy-dispenses", lambda e: e.app.record_dispense(e.rph2, e.auth), 4,
             reasons=(rc.OUT_OF_SCOPE,)),
        # refused by the rules, not found, conflicts
        Case("prescribe-unqualified", lambda e: e.app.prescribe(e.prs, e.pat2, 30), 3,
             reasons=(rc.CONSENT_NOT_SIGNED,)),
        Case("category-reason-mismatch", lambda e: e.app.assign_category(
            e.prs, e.pat2, CAN, "NO_UTERUS"), 3, reasons=(rc.INVALID_CATEGORY_REASON,)),
        Case("pregnancy-without-course", lambda e: e.app.report_pregnancy(e.prs, e.pat_free), 3,
             reasons=(rc.NO_ACTIVE_COURSE,)),
        Case("enrol-twice", lambda e: e.app.enrol(e.prs, e.pat2), 6),
        Case("resume-not-suspended", lambda e: e.app.resume_course(e.prs, e.pat2, "why not"), 6),
        Case("end-while-authorized", lambda e: e.app.end_treatment(e.prs, e.pat, NOW.date()), 6),
        Case("activate-active-prescriber", lambda e: e.app.activate_prescriber(e.admin, e.prs), 6),
        Case("deactivate-last-admin", lambda e: e.app.deactivate_administrator(e.admin, e.admin),
             6),
        Case("grant-twice", lambda e: e.app.grant_designee(e.prs, e.dsg, e.prs), 6),
        Case("duplicate-ncpdp", lambda e: e.app.register_pharmacy(
            e.admin, "Copy", "1234567", "UTC"), 6),
        Case("revoke-missing-grant", lambda e: e.app.revoke_grant(e.admin, e.dsg_gone, e.prs), 5),
        Case("get_person-prescription-id", lambda e: e.app.get_person(e.admin, e.rx), 2,
             "person"),
        Case("get_person-unknown-prescription-id", lambda e: e.app.get_person(
            e.admin, short_id("RX")), 2, "person"),
        Case("patient-unknown-uuid", lambda e: e.app.get_patient(
            e.prs, "00000000-0000-4000-8000-000000000000"), 5),
        Case("patient-bad-uuid", lambda e: e.app.get_patient(e.prs, "'; DROP TABLE patients;--"),
             2, "patient"),
        Case("patient-external-sql", lambda e: e.app.get_patient(
            e.prs, "MRN:'; DROP TABLE patients;--"), (2, 5), "patient"),
        Case("patient-external-long", lambda e: e.app.get_patient(e.prs, "MRN:" + "9" * 100_000),
             (2, 5), "patient"),
        Case("patient-external-nul", lambda e: e.app.get_patient(e.prs, "MRN:12\x0034"), (2, 5),
             "patient"),
        Case("patient-external-surrogate", lambda e: e.app.get_patient(e.prs, "MRN:\udcff"),
             (2, 5), "patient"),
    ]
    return cases


API_CASES: list[Case] = [
    *_date_cases(), *_count_cases(), *_ref_cases(), *_auth_number_cases(), *_text_cases(),
    *_identifier_cases(), *_choice_cases(), *_actor_cases(),
]


def _unique(cases: list[Case]) -> list[Case]:
    seen: Counter[str] = Counter()
    out = []
    for case in cases:
        seen[case.name] += 1
        name = case.name if seen[case.name] == 1 else f"{case.name}#{seen[case.name]}"
        out.append(Case(**{**case.__dict__, "name": name.encode("unicode_escape").decode()}))
    return out


API_CASES = _unique(API_CASES)


# PostgreSQL gets a representative subset: the text a second database may treat differently (NUL,
# surrogates, emoji, SQL-looking), every PostgreSQL-only bug, and one case in ten of the rest.
PG_HAZARDS = ("nul", "\\x00", "surrogate", "sql", "DROP", "emoji", "arabic")


def _on_postgresql(case: Case, index: int) -> bool:
    return (case.bug_on == PG_ONLY or index % 10 == 0
            or any(h in case.name for h in PG_HAZARDS))


API_PARAMS = [pytest.param("sqlite", c, id=f"sqlite-{c.name}") for c in API_CASES] + [
    pytest.param("postgresql", c, id=f"postgresql-{c.name}", marks=pytest.mark.postgres)
    for i, c in enumerate(API_CASES) if _on_postgresql(c, i)
]


@pytest.mark.parametrize(("which", "case"), API_PARAMS)
def test_api_rejects_hostile_input(which: str, case: Case, request: pytest.FixtureRequest) -> None:
    if case.bug and which in case.bug_on:
        request.applymarker(pytest.mark.xfail(strict=True, reason=case.bug))
    world: Env = request.getfixturevalue(f"{which}_env")
    rejected(world, lambda: case.call(world), case.exit, field=case.field, reasons=case.reasons)


# --- every role calling every action it may not -------------------------------------------------

ROLE_CALLS: dict[Action, Callable[[Env, str], object]] = {
    Action.ADMINISTRATOR_CREATE: lambda e, a: e.app.add_administrator(a, "New Admin"),
    Action.ADMINISTRATOR_DEACTIVATE: lambda e, a: e.app.deactivate_administrator(a, e.admin),
    Action.PRESCRIBER_REGISTER: lambda e, a: e.app.register_prescriber(a, "Dr X", next_npi()),
    Action.PRESCRIBER_ACTIVATE: lambda e, a: e.app.activate_prescriber(a, e.prs_new),
    Action.PRESCRIBER_SUSPEND: lambda e, a: e.app.suspend_prescriber(a, e.prs),
    Action.PRESCRIBER_REINSTATE: lambda e, a: e.app.reinstate_prescriber(a, e.prs),
    Action.PRESCRIBER_DEACTIVATE: lambda e, a: e.app.deactivate_prescriber(a, e.prs),
    Action.PRESCRIBER_ZONE_SET: lambda e, a: e.app.set_prescriber_zone(a, e.prs, "Europe/Lisbon"),
    Action.DESIGNEE_REGISTER: lambda e, a: e.app.register_designee(a, "Dan Designee"),
    Action.DESIGNEE_DEACTIVATE: lambda e, a: e.app.deactivate_designee(a, e.dsg),
    Action.GRANT_CREATE: lambda e, a: e.app.grant_designee(a, e.dsg, e.prs),
    Action.GRANT_REVOKE: lambda e, a: e.app.revoke_grant(a, e.dsg, e.prs),
    Action.GRANT_AMEND: lambda e, a: e.app.amend_grant(a, e.dsg, e.prs, "why", ["patient.read"]),
    Action.PHARMACY_REGISTER: lambda e, a: e.app.register_pharmacy(a, "P", "7654321", "UTC"),
    Action.PHARMACY_ACTIVATE: lambda e, a: e.app.activate_pharmacy(a, e.pharmacy),
    Action.PHARMACY_DEACTIVATE: lambda e, a: e.app.deactivate_pharmacy(a, e.pharmacy),
    Action.PHARMACIST_REGISTER: lambda e, a: e.app.register_pharmacist(a, "R", e.pharmacy),
    Action.PHARMACIST_DEACTIVATE: lambda e, a: e.app.deactivate_pharmacist(a, e.rph),
    Action.PATIENT_REGISTER: lambda e, a: e.app.register_patient(a, "Pat New", "2000-01-01"),
    Action.PATIENT_UPDATE: lambda e, a: e.app.add_patient_external_id(a, e.pat2, "MRN", "99"),
    Action.PATIENT_CORRECT: lambda e, a: e.app.correct_patient(a, e.pat2, "why", name="P Two"),
    Action.PATIENT_READ: lambda e, a: e.app.get_patient(a, e.pat2),
    Action.PARTY_READ: lambda e, a: e.app.get_person(a, e.prs),
    Action.AUDIT_READ: lambda e, a: e.app.audit_log(a),
    Action.AUDIT_VERIFY: lambda e, a: e.app.verify_audit(a),
    Action.AUDIT_CHECKPOINT: lambda e, a: e.app.checkpoint_audit(a),
    Action.RULES_SCHEDULE: lambda e, a: e.app.set_rules_schedule(
        a, "ipledge/2026-mod", "2026-12-01"),
    Action.RULES_IMPACT: lambda e, a: e.app.rules_impact(a, "ipledge/2023-03"),
    Action.HOME_TESTING_SET: lambda e, a: e.app.set_home_testing(a, True, "photo with the paper"),
    Action.COURSE_ENROL: lambda e, a: e.app.enrol(a, e.pat_free),
    Action.COURSE_READ: lambda e, a: e.app.status(a, e.pat2),
    Action.CATEGORY_ASSIGN: lambda e, a: e.app.assign_category(
        a, e.pat2, CAN, "REPRODUCTIVE_POTENTIAL"),
    Action.TEST_SCHEDULE_SET: lambda e, a: e.app.set_test_schedule(a, e.pat2, "irregular_cycles"),
    Action.CONSENT_RECORD: lambda e, a: e.app.record_consent(a, e.pat2, "BIRTH_DEFECTS_CONSENT"),
    Action.COUNSELLING_RECORD: lambda e, a: e.app.record_counselling(a, e.pat2),
    Action.CONTRACEPTION_RECORD: lambda e, a: e.app.record_contraception(
        a, e.pat2, {"iud": "2026-12-01"}),
    Action.CONTRACEPTION_CONFIRM: lambda e, a: e.app.confirm_contraception(a, e.pat2, ["iud"]),
    Action.COMPREHENSION_RECORD: lambda e, a: e.app.record_comprehension(a, e.pat2),
    Action.TEST_RECORD: lambda e, a: e.app.record_test(
        a, e.pat2, kind="screening", specimen_date=NOW.date(), setting="clinic",
        result="negative"),
    Action.PRESCRIBE: lambda e, a: e.app.prescribe(a, e.pat2, 30),
    Action.TREATMENT_END: lambda e, a: e.app.end_treatment(a, e.pat2, NOW.date()),
    Action.PREGNANCY_REPORT: lambda e, a: e.app.report_pregnancy(a, e.pat2),
    Action.COURSE_RESUME: lambda e, a: e.app.resume_course(a, e.pat2, "negative again"),
    Action.COURSE_WITHDRAW: lambda e, a: e.app.withdraw_course(a, e.pat2),
    Action.COURSE_LOST: lambda e, a: e.app.mark_lost_to_follow_up(a, e.pat2),
    Action.COURSE_MIGRATE: lambda e, a: e.app.migrate_courses(a, "ipledge/2023-03", [e.pat2]),
    Action.PATIENT_CONFIRM: lambda e, a: e.app.confirm_patient(a, e.pat2),
    Action.PRESCRIPTION_FIND: lambda e, a: e.app.find_prescription(
        a, e.pat, "2003-08-21", npi_with_check_digit("123456789")),
    Action.AUTHORIZATION_REQUEST: lambda e, a: e.app.request_authorization(a, e.rx),
    Action.AUTHORIZATION_REVERSE: lambda e, a: e.app.reverse_authorization(a, e.auth, "no show"),
    Action.DISPENSE_RECORD: lambda e, a: e.app.record_dispense(a, e.auth),
    Action.CLIENT_ADD: lambda e, a: e.app.add_client(
        a, "T", "pharmacy-terminal", e.pharmacy, pepper=b"x" * 32),
    Action.CLIENT_READ: lambda e, a: e.app.list_clients(a),
    Action.CLIENT_ROTATE: lambda e, a: e.app.rotate_client_key(
        a, new_short_id(Kind.CLIENT), pepper=b"x" * 32),
    Action.CLIENT_REVOKE: lambda e, a: e.app.revoke_client(a, new_short_id(Kind.CLIENT)),
}
if hasattr(Compliance, "set_clock_override") and hasattr(Action, "CLOCK_OVERRIDE_SET"):
    ROLE_CALLS[Action.CLOCK_OVERRIDE_SET] = lambda e, a: e.app.set_clock_override(a, True)

ACTING: dict[Role, Callable[[Env], str]] = {
    Role.ADMINISTRATOR: lambda e: e.admin,
    Role.PRESCRIBER: lambda e: e.prs,
    Role.DESIGNEE: lambda e: e.dsg,
    Role.PHARMACIST: lambda e: e.rph,
    Role.PATIENT: lambda e: e.pat2,
}
FORBIDDEN = [(role, action) for action in ROLE_CALLS for role in Role
             if role not in PERMISSIONS[action]]
# On PostgreSQL: the first forbidden action of each role.
FORBIDDEN_PG = [next(p for p in FORBIDDEN if p[0] is role) for role in Role]
ROLE_PARAMS = [pytest.param("sqlite", r, a, id=f"sqlite-{r}-{a}") for r, a in FORBIDDEN] + [
    pytest.param("postgresql", r, a, id=f"postgresql-{r}-{a}", marks=pytest.mark.postgres)
    for r, a in FORBIDDEN_PG
]


def test_every_action_has_a_call_and_most_are_forbidden_to_someone() -> None:
    assert set(ROLE_CALLS) == set(Action) - ({Action.CLOCK_OVERRIDE_SET} if not hasattr(
        Compliance, "set_clock_override") else set())
    assert len(FORBIDDEN) > 100


@pytest.mark.parametrize(("which", "role", "action"), ROLE_PARAMS)
def test_every_role_is_refused_what_it_may_not_do(
    which: str, role: Role, action: Action, request: pytest.FixtureRequest
) -> None:
    world: Env = request.getfixturevalue(f"{which}_env")
    actor = ACTING[role](world)
    rejected(world, lambda: ROLE_CALLS[action](world, actor), 4,
             reasons=(rc.ACTOR_NOT_PERMITTED,), action=action.value)


# --- 200 characters is the limit, counted after NFC, whatever the script --------------------------


@pytest.mark.parametrize("unit", ["x", "é", "e\u0301", "\U0001f600", "中", "ß", "\u05d0", "ǅ"],
                         ids=["ascii", "e-acute", "e-combining", "emoji", "han", "sharp-s",
                              "hebrew", "titlecase"])
def test_name_limit_is_200_characters_after_nfc(env: Env, unit: str) -> None:
    name = unicodedata.normalize("NFC", unit * 200)
    person = env.app.register_designee(env.prs, f" {unit * 200}\t")
    assert person.name == name and len(name) == 200
    assert env.app.get_person(env.admin, person.id).name == name
    rejected(env, lambda: env.app.register_designee(env.prs, unit * 201), 2, field="name")
    rejected(env, lambda: env.app.register_patient(env.prs, unit * 201, "2000-01-01"), 2,
             field="name")


@pytest.mark.parametrize("unit", ["x", "é", "e\u0301", "\U0001f600", "中", "\u05d0"],
                         ids=["ascii", "e-acute", "e-combining", "emoji", "han", "hebrew"])
def test_patient_name_of_200_characters_round_trips(env: Env, unit: str) -> None:
    name = unicodedata.normalize("NFC", unit * 200)
    patient = env.app.register_patient(env.prs, f"  {unit * 200}  ", "2000-01-01").patient
    assert env.app.get_patient(env.prs, patient.id).name == name




@pytest.mark.parametrize("name", ["ß" * 200, "ǅ" * 150, "\ufdfa" * 12, "\ufb03" * 70],
                         ids=["sharp-s-200", "titlecase-150", "ligature-salla-12", "ffi-70"])
def test_patient_name_whose_search_key_expands(env: Env, name: str) -> None:
    """A valid name is registered (or refused naming 'name'), never a database error."""
    before = snapshot(env.app, env.tables)
    try:
        patient = env.app.register_patient(env.prs, name, "2000-01-01").patient
    except ComplianceError as exc:
        expect(isinstance(exc, InvalidInput) and exc.field == "name",
               f"{type(exc).__name__}: {exc}")
        assert_nothing_written(env.app, before, snapshot(env.app, env.tables), refused=False)
    else:
        assert env.app.get_patient(env.prs, patient.id).name == name
        assert [p.id for p in env.app.find_patients(env.prs, name)] == [patient.id]


# --- properties (hypothesis, SQLite) ------------------------------------------------------------

texts = st.text(max_size=40)
wide_texts = st.text(
    alphabet=st.characters(categories=("Lu", "Ll", "Lo", "Mn", "Nd", "No", "So", "Zs", "Cc", "Cf",
                                       "Co", "Pd", "Po", "Sm")),
    max_size=40,
)
near_ids = st.builds(
    lambda prefix, sep, body: prefix + sep + body,
    st.sampled_from([k.value for k in Kind] + ["pat", "Pat", "PT", "PATIENT", "", " PAT"]),
    st.sampled_from(["-", "", "_", " - ", "\u2010", "--"]),
    st.text(alphabet=ALPHABET + "ILOUilou-' \x00", max_size=10),
)
valid_shaped_ids = st.builds(
    short_id,
    st.sampled_from([k.value for k in Kind]),
    st.text(alphabet=ALPHABET, min_size=7, max_size=7),
)
any_refs = st.one_of(texts, wide_texts, near_ids, valid_shaped_ids, st.sampled_from(SQL))


@FAST
@given(actor=any_refs)
def test_property_any_unknown_actor_is_refused_and_audited(sqlite_env: Env, actor: str) -> None:
    e = sqlite_env
    assume(normalise(actor) not in {e.admin, e.prs, e.dsg, e.rph, e.rph2, e.pat, e.pat2})
    rejected(e, lambda: e.app.get_patient(actor, e.pat2), 4, reasons=(rc.ACTOR_UNKNOWN,),
             action=Action.PATIENT_READ.value)


ID_PROPERTY_TARGETS = [t for t in REF_TARGETS if t[0] in {
    "enrol", "status", "check_dispense", "activate_pharmacy", "suspend_prescriber",
    "grant_designee.designee", "deactivate_pharmacist", "deactivate_administrator", "get_person"}]


@FAST
@given(target=st.sampled_from(ID_PROPERTY_TARGETS), ref=any_refs)
def test_property_malformed_or_unknown_ids(sqlite_env: Env, target: Any, ref: str) -> None:
    """Either InvalidInput naming the field, or NotFound for a well-formed id of the right kind."""
    e = sqlite_env
    label, fld, prefix, existing, call = target
    assume(normalise(ref) != existing(e))
    if label == "get_person":  # a prescription id: the table cases get_person-prescription-*
        assume(kind_of(normalise(ref)) is not Kind.PRESCRIPTION)
    err = rejected(e, lambda: call(e, ref), (2, 5), field=fld)
    if err.exit_code == 5:
        people = {Kind.ADMINISTRATOR, Kind.PRESCRIBER, Kind.DESIGNEE, Kind.PHARMACIST}
        kinds = people if label == "get_person" else {Kind(prefix)}
        assert kind_of(normalise(ref)) in kinds, (ref, err)


authorization_numbers = st.one_of(
    st.text(alphabet="0123456789", min_size=19, max_size=23),
    st.from_regex(r"\A[0-9 -]{0,30}\Z"),
    st.from_regex(r"\A\d{4}(-\d{4}){4}-\d\Z"),
    texts,
)


@FAST
@given(number=authorization_numbers)
def test_property_authorization_numbers(sqlite_env: Env, number: str) -> None:
    """A malformed number is InvalidInput; a well-formed unknown one a recorded refusal."""
    e = sqlite_env
    assume(normalise_number(number) != e.auth)
    err = rejected(e, lambda: e.app.record_dispense(e.rph, number), (2, 3), field="authorization")
    assert (err.exit_code == 3) == is_valid(number.strip()), (number, err)
    if err.exit_code == 3:
        assert isinstance(err, Refused) and err.reasons == (rc.AUTHORIZATION_NOT_FOUND,)


def _not_a_date(value: object) -> bool:
    return not isinstance(value, str) or not parses_as_date(value)


impossible_dates = st.one_of(
    st.builds(lambda y, m, d: f"{y:04d}-{m:02d}-{d:02d}",
              st.integers(0, 9999), st.integers(0, 99), st.integers(0, 99)),
    st.from_regex(r"\A\d{8}\Z"),
    texts,
    st.sampled_from(["yesterday", "today", "now", "2026/11/02", "02/11/2026", "2026-11-2",
                     "2026-11-02 10:00", "2026-11-02T10:00:00Z", "P1D", "2026-W99-9", "-1"]),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.datetimes(timezones=st.sampled_from([UTC, ZoneInfo("America/New_York")])),
    st.datetimes(),
    st.booleans(),
    st.lists(st.integers(), max_size=3),
).filter(_not_a_date)


@FAST
@given(target=st.sampled_from(sorted(DATE_TARGETS)), value=impossible_dates)
def test_property_impossible_dates(sqlite_env: Env, target: str, value: object) -> None:
    fld, call = DATE_TARGETS[target]
    rejected(sqlite_env, lambda: call(sqlite_env, value), 2, field=fld)


@FAST
@given(target=st.sampled_from(FUTURE_TARGETS),
       day=st.dates(min_value=FUTURE, max_value=date(9999, 12, 31)), as_text=st.booleans())
def test_property_dates_in_the_future(
    sqlite_env: Env, target: str, day: date, as_text: bool
) -> None:
    fld, call = DATE_TARGETS[target]
    rejected(sqlite_env, lambda: call(sqlite_env, day.isoformat() if as_text else day), 2,
             field=fld)


@FAST
@given(data=st.data(), target=st.sampled_from(sorted(EARLIEST)))
def test_property_dates_before_what_they_may_be(
    sqlite_env: Env, data: st.DataObject, target: str
) -> None:
    day = data.draw(st.dates(min_value=date(1, 1, 1),
                             max_value=EARLIEST[target] - timedelta(days=1)))
    fld, call = DATE_TARGETS[target]
    rejected(sqlite_env, lambda: call(sqlite_env, day.isoformat()), 2, field=fld)


def not_whole_numbers_in(low: int, high: int) -> st.SearchStrategy[object]:
    return st.one_of(
        st.integers(max_value=low - 1), st.integers(min_value=high + 1),
        st.sampled_from([10**9, 2**63, 2**64, -(2**63), 10**100]),
        st.floats(),
        st.decimals(allow_nan=True), st.fractions(), st.text(max_size=6), st.booleans(),
        st.none(), st.lists(st.integers(), max_size=2),
    )


COUNT_TARGETS: dict[str, tuple[str, object, Callable[[Env, object], object]]] = {
    "days_supply": ("days_supply", not_whole_numbers_in(1, 366),
                    lambda e, v: e.app.prescribe(e.prs, e.pat2, v)),
    "refills": ("refills", not_whole_numbers_in(0, 99),
                lambda e, v: e.app.prescribe(e.prs, e.pat2, 30, v)),
    "within": ("within", st.one_of(st.integers(max_value=-1), st.integers(min_value=367)),
               lambda e, v: e.app.due(e.prs, v)),
    "limit": ("limit", st.one_of(st.integers(max_value=0), st.integers(min_value=1001)),
              lambda e, v: e.app.find_patients(e.prs, limit=v)),
    "sensitivity": ("sensitivity_miu_ml", st.one_of(
        st.floats().filter(lambda f: not 1 <= f <= 1000), st.integers(max_value=0),
        st.integers(min_value=1001), st.text(max_size=4), st.none(), st.booleans()),
        lambda e, v: _test(e, sensitivity_miu_ml=v)),
}


@FAST
@given(data=st.data(), target=st.sampled_from(sorted(COUNT_TARGETS)))
def test_property_counts_out_of_range_or_not_whole(
    sqlite_env: Env, data: st.DataObject, target: str
) -> None:
    fld, strategy, call = COUNT_TARGETS[target]
    value = data.draw(strategy)  # type: ignore[arg-type]
    rejected(sqlite_env, lambda: call(sqlite_env, value), 2, field=fld)


def _could_be(value: object, known: set[str]) -> bool:
    """Whether the engine's own folding (NFC, strip, case) could turn ``value`` into a known one."""
    text = unicodedata.normalize("NFC", str(value)).strip()
    forms = {text, text.upper(), text.lower(), text.casefold()}
    folded = set(known) | {k.upper() for k in known} | {k.lower() for k in known}
    return bool(forms & folded)


def _choice_targets() -> dict[str, tuple[str, set[str], Callable[[Env, object], object]]]:
    rules = Compliance.ruleset("ipledge/2026-mod")
    methods = set(rules.contraception.methods) | {"abstinence"}
    return {
        "category": ("category", set(rules.categories), lambda e, v: e.app.assign_category(
            e.prs, e.pat2, v, "REPRODUCTIVE_POTENTIAL")),
        "reason": ("reason", set(rules.reason_catalogue), lambda e, v: e.app.assign_category(
            e.prs, e.pat2, CAN, v)),
        "form": ("form", set(rules.consent_catalogue),
                 lambda e, v: e.app.record_consent(e.prs, e.pat2, v)),
        "method": ("methods", methods, lambda e, v: e.app.record_contraception(
            e.prs, e.pat2, {v: "2026-12-01"})),
        "confirm": ("methods", methods,
                    lambda e, v: e.app.confirm_contraception(e.pat2, e.pat2, [v])),
        "kind": ("kind", {"screening", "confirmation", "monthly", "end_of_treatment",
                          "post_treatment"}, lambda e, v: _test(e, kind=v)),
        "setting": ("setting", {"lab", "clinic", "home"}, lambda e, v: _test(e, setting=v)),
        "result": ("result", {"negative", "positive"}, lambda e, v: _test(e, result=v)),
        "scope": ("scopes", {a.value for a in Action},
                  lambda e, v: e.app.grant_designee(e.admin, e.dsg, e.prs, [v])),
        "role": ("role", {r.value for r in Role}, lambda e, v: e.app.list_people(e.admin, v)),
        "ruleset": ("ruleset", set(Compliance.rulesets()), lambda e, v: e.app.set_rules_schedule(
            e.admin, v, "2027-01-01")),
    }


CHOICES = _choice_targets()


@FAST
@given(target=st.sampled_from(sorted(CHOICES)),
       value=st.one_of(texts, wide_texts, st.sampled_from(SQL)))
def test_property_unknown_choices(sqlite_env: Env, target: str, value: str) -> None:
    fld, known, call = CHOICES[target]
    assume(not _could_be(value, known))
    rejected(sqlite_env, lambda: call(sqlite_env, value), 2, field=fld)


zone_names = st.one_of(
    st.from_regex(r"\A[A-Za-z_+-]{1,14}(/[A-Za-z_+0-9-]{1,14}){0,2}\Z"),
    texts,
    st.sampled_from(["UTC", "America/New_York", "Etc/GMT+5", "Europe/Kyiv", "EST5EDT", "Zulu"]),
)


@FAST
@given(zone=zone_names)
def test_property_time_zones(sqlite_env: Env, zone: str) -> None:
    """An unknown zone is InvalidInput('time_zone'); a real one gets as far as the NCPDP
    uniqueness check (this NCPDP is taken), so nothing is ever written."""
    e = sqlite_env
    assume(zone_lookup_is_clean(zone))  # folder names: the table cases time_zone-folder-*
    err = rejected(e, lambda: e.app.register_pharmacy(e.admin, "Zone Pharmacy", "1234567", zone),
                   (2, 6), field="time_zone")
    if err.exit_code == 6:
        ZoneInfo(zone.strip())  # only a real zone gets past validation


@FAST
@given(when=st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31),
                         timezones=st.timezones()))
def test_property_grant_expiry_instants(sqlite_env: Env, when: datetime) -> None:
    """Past: InvalidInput('expires_at'); future: as far as the live grant (Conflict). The edges of
    the datetime range, where conversion to UTC overflows, are the table cases above."""
    e = sqlite_env
    err = rejected(e, lambda: e.app.grant_designee(e.admin, e.dsg, e.prs, None, when), (2, 6),
                   field="expires_at")
    expect((err.exit_code == 2) == (when <= e.clock.now()), f"{when.isoformat()}: {err}")


def _expected_name(value: str) -> str | None:
    """The stored name if the engine should accept ``value`` (a test-side restatement)."""
    cleaned = unicodedata.normalize("NFC", value).strip()
    bad = {"Cc", "Cf", "Cs", "Co", "Cn"}
    if not cleaned or len(cleaned) > 200 or any(unicodedata.category(c) in bad for c in cleaned):
        return None
    return cleaned


names = st.one_of(
    st.text(max_size=60),
    wide_texts,
    st.sampled_from(SQL),
    st.builds(lambda unit, n: unit * n,
              st.sampled_from(["x", "é", "e\u0301", "\U0001f600", "\u05d0"]),
              st.integers(195, 205)),
    st.builds(lambda a, b: a + b, st.sampled_from(SQL),
              st.sampled_from(["\x00", "\u200f", "\n", ""])),
)


@FAST
@given(name=names)
def test_property_names_are_stored_exactly_or_refused_naming_the_field(
    sqlite_env: Env, name: str
) -> None:
    e = sqlite_env
    before = snapshot(e.app, e.tables)
    try:
        person = e.app.register_designee(e.prs, name)
    except ComplianceError as exc:
        expect(isinstance(exc, InvalidInput) and exc.field == "name", exc)
        expect(_expected_name(name) is None, f"refused a valid name: {exc}")
        assert_nothing_written(e.app, before, snapshot(e.app, e.tables), refused=False)
        return
    expected = _expected_name(name)
    assert person.name == expected, (name, person.name)
    assert e.app.get_person(e.admin, person.id).name == expected
    after = snapshot(e.app, e.tables)
    for table in before:  # nothing existing was altered or deleted, whatever the name said
        if table != "audit_chain_heads":
            assert not before[table] - after[table], table


# --- the command line ---------------------------------------------------------------------------

# The CLI runs on the system clock and judges "today" in the clinic's zone (the world's
# prescriber is in New York), which is a day behind UTC for five hours of every UTC day.
TODAY = datetime.now(ZoneInfo("America/New_York")).date()


@dataclass(repr=False)
class CliEnv:
    url: str
    app: Compliance
    ids: dict[str, str]
    tables: list[Table]


@pytest.fixture(scope="module")
def cli_env(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliEnv]:
    path = tmp_path_factory.mktemp("hostile-cli") / "cli.db"
    shutil.copy(sqlite_template, path)
    url = f"sqlite:///{path}"
    app = Compliance.open(url)  # the system clock, as the CLI has it
    w = build_world(app)
    prs = w.prescriber.id
    pat = app.register_patient(prs, "Ana Cli", "2003-08-21").patient.id
    app.enrol(prs, pat)
    app.assign_category(prs, pat, CAN, "REPRODUCTIVE_POTENTIAL")
    pat_free = app.register_patient(prs, "Bo Cli", "1999-09-09").patient.id
    ids = {"adm": w.admin.id, "prs": prs, "dsg": w.designee.id, "rph": w.pharmacist.id,
           "pha": w.pharmacy.id, "pat": pat, "pat_free": pat_free, "rx": short_id("RX"),
           "auth": new_number(), "dir": str(path.parent)}
    yield CliEnv(url, app, ids, list(Base.metadata.sorted_tables))
    app.close()


def run_cli(url: str, args: list[str]) -> Result:
    env = {"COMPLIANCE_DATABASE_URL": url, "NO_COLOR": "1", "COMPLIANCE_ACTOR": None,
           "COMPLIANCE_DEBUG": None}
    return CliRunner().invoke(cli, args, env=env, catch_exceptions=True)


def check_cli_failure(
    result: Result, exit: int, needle: str, as_json: bool
) -> dict[str, Any] | None:
    """The documented exit code, the field or reason on stderr, no traceback, JSON if asked."""
    out, err = result.stdout, result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        pytest.fail(f"escaped the CLI: {result.exception!r}", pytrace=False)
    expect("Traceback" not in out + err, f"a traceback: {out + err}")
    expect(result.exit_code != 1, f"internal error: {err}")
    expect(result.exit_code == exit, (result.exit_code, out, err))
    expect(out.strip() == "", f"stdout on failure: {out!r}")
    expect(needle in err, f"{needle!r} not on stderr: {err!r}")
    if not as_json:
        return None
    try:
        doc = json.loads(err)
    except json.JSONDecodeError:
        pytest.fail(f"--json: stderr is not one JSON document: {err!r}", pytrace=False)
    expect(isinstance(doc, dict) and doc.get("error") == EXIT_NAMES[exit], doc)
    if exit == 2:
        expect(doc.get("field") == needle, doc)
    if exit in (3, 4):
        expect(needle in doc.get("reasons", []), doc)
    return doc


@dataclass(frozen=True)
class CliCase:
    name: str
    actor: str | None  # a key of CliEnv.ids, a literal after "=", or None for no --as
    args: Callable[[dict[str, str]], list[str]]
    exit: int
    needle: str  # the field (exit 2), the reason code (3, 4), or part of the message
    bug: str | None = None
    json_bug: str | None = None
    has_json: bool = True


def _dob(day: object) -> Callable[[dict[str, str]], list[str]]:
    return lambda i: ["patient", "register", "--name", "Ana Date", "--dob", str(day)]


def _test_args(i: dict[str, str], **kw: str) -> list[str]:
    opts = {"--kind": "screening", "--specimen-date": TODAY.isoformat(), "--setting": "clinic",
            "--result": "negative", **kw}
    return ["course", "test", i["pat"], *[x for kv in opts.items() for x in kv]]


def _rx(*extra: str) -> Callable[[dict[str, str]], list[str]]:
    return lambda i: ["course", "prescribe", i["pat"], *extra]


AHEAD = (TODAY + timedelta(days=3)).isoformat()
LONG_AGO = (TODAY - timedelta(days=200)).isoformat()
CLI_CASES = [
    CliCase("name-201", "prs", lambda i: ["patient", "register", "--name", "x" * 201, "--dob",
                                          "2000-01-01"], 2, "--name"),
    CliCase("name-rtl", "prs", lambda i: ["patient", "register", "--name", "Ana\u200f", "--dob",
                                          "2000-01-01"], 2, "--name"),
    CliCase("name-escape", "prs", lambda i: ["designee", "register", "--name", "\x1b[2Jx"], 2,
            "--name"),
    *[CliCase(f"dob-{d}", "prs", _dob(d), 2, "--dob")
      for d in ("2027-02-30", "2026-13-01", "", "yesterday", "20261301",
                "2026-11-02T10:00:00+00:00", AHEAD, "1899-12-31")],
    CliCase("external-id-no-value", "prs", lambda i: ["patient", "register", "--name", "Ana",
                                                      "--dob", "2000-01-01", "--external-id",
                                                      "MRN"], 2, "--external-id"),
    CliCase("external-id-sql", "prs", lambda i: ["patient", "register", "--name", "Ana", "--dob",
                                                 "2000-01-01", "--external-id",
                                                 "MRN='; DROP TABLE patients;--"], 2,
            "--external-id MRN"),
    CliCase("enrol-sql", "prs", lambda i: ["course", "enrol", "PAT-'; DROP TABLE patients;--"],
            2, "patient"),
    CliCase("enrol-wrong-check", "prs", lambda i: ["course", "enrol", wrong_check(i["pat_free"])],
            2, "patient"),
    CliCase("enrol-wrong-prefix", "prs", lambda i: ["course", "enrol", i["prs"]], 2, "patient"),
    CliCase("enrol-unknown", "prs", lambda i: ["course", "enrol", short_id("PAT")], 5,
            "not found"),
    CliCase("enrol-twice", "prs", lambda i: ["course", "enrol", i["pat"]], 6, "open course"),
    CliCase("enrol-impossible-date", "prs", lambda i: ["course", "enrol", i["pat_free"],
                                                       "--enrolled-on", "2027-02-30"], 2,
            "--enrolled-on"),
    CliCase("status-rx", "prs", lambda i: ["status", i["rx"]], 2, "patient"),
    CliCase("category-unknown", "prs", lambda i: ["course", "category", i["pat"], "bogus",
                                                  "REPRODUCTIVE_POTENTIAL"], 2, "category"),
    CliCase("reason-unknown", "prs", lambda i: ["course", "category", i["pat"], CAN, "BOGUS"], 2,
            "reason"),
    CliCase("reason-mismatch", "prs", lambda i: ["course", "category", i["pat"], CAN,
                                                 "NO_UTERUS"], 3, rc.INVALID_CATEGORY_REASON),
    CliCase("consent-unknown", "prs", lambda i: ["course", "consent", i["pat"], "BOGUS"], 2,
            "form"),
    CliCase("consent-impossible-date", "prs", lambda i: [
        "course", "consent", i["pat"], "PATIENT_INFORMATION_CONSENT", "--signed-on",
        "2027-02-30"], 2, "--signed-on"),
    CliCase("method-no-date", "prs", lambda i: ["course", "contraception", i["pat"], "--method",
                                                "iud"], 2, "--method"),
    CliCase("method-unknown", "prs", lambda i: ["course", "contraception", i["pat"], "--method",
                                                "bogus=2026-10-01"], 2, "--method"),
    CliCase("method-impossible-date", "prs", lambda i: [
        "course", "contraception", i["pat"], "--method", "iud=2026-13-01"], 2, "--method iud"),
    CliCase("method-before-birth", "prs", lambda i: [
        "course", "contraception", i["pat"], "--method", "iud=1800-01-01"], 2, "--method iud"),
    CliCase("confirm-unknown", "pat", lambda i: ["course", "confirm", i["pat"], "--method",
                                                 "bogus"], 2, "--method"),
    CliCase("specimen-impossible", "prs", lambda i: _test_args(
        i, **{"--specimen-date": "2027-02-30"}), 2, "--specimen-date"),
    CliCase("specimen-future", "prs", lambda i: _test_args(i, **{"--specimen-date": AHEAD}), 2,
            "--specimen-date"),
    CliCase("specimen-before-enrolment", "prs", lambda i: _test_args(
        i, **{"--specimen-date": LONG_AGO}), 2, "--specimen-date"),
    *[CliCase(f"sensitivity-{v}", "prs", lambda i, v=v: _test_args(i, **{"--sensitivity": v}), 2,
              "--sensitivity") for v in ("0", "-1", "1001", "nan", "inf")],
    CliCase("kind-unknown", "prs", lambda i: _test_args(i, **{"--kind": "bogus"}), 2, "--kind"),
    *[CliCase(f"days-supply-{v}", "prs", _rx("--days-supply", v), 2, "--days-supply")
      for v in ("0", "-1", "367", "1000000000", str(2**63))],
    *[CliCase(f"refills-{v}", "prs", _rx("--days-supply", "30", "--refills", v), 2, "--refills")
      for v in ("-1", "100", str(2**63))],
    CliCase("days-supply-text", "prs", _rx("--days-supply", "abc"), 2, "--days-supply"),
    CliCase("refills-fraction", "prs", _rx("--days-supply", "30", "--refills", "1.5"), 2,
            "--refills"),
    CliCase("days-supply-missing", "prs", _rx(), 2, "--days-supply"),
    CliCase("written-future", "prs", _rx("--days-supply", "30", "--written-on", AHEAD), 2,
            "--written-on"),
    CliCase("written-impossible", "prs", _rx("--days-supply", "30", "--written-on", "2027-02-30"),
            2, "--written-on"),
    CliCase("written-before-enrolment", "prs", _rx("--days-supply", "30", "--written-on",
                                                   LONG_AGO), 2, "--written-on"),
    CliCase("visit-future", "prs", _rx("--days-supply", "30", "--office-visit-on", AHEAD), 2,
            "--office-visit-on"),
    CliCase("check-negative-supply", "prs", lambda i: ["course", "check", i["pat"],
                                                       "--days-supply", "-5"], 2, "--days-supply"),
    CliCase("end-yesterday", "prs", lambda i: ["course", "end", i["pat"], "--last-dose-on",
                                               "yesterday"], 2, "--last-dose-on"),
    CliCase("pregnancy-impossible", "prs", lambda i: ["course", "pregnancy", i["pat"],
                                                      "--reported-on", "2026-02-30"], 2,
            "--reported-on"),
    CliCase("resume-empty-note", "prs", lambda i: ["course", "resume", i["pat"], "--note", ""], 2,
            "--note"),
    CliCase("withdraw-bell-note", "prs", lambda i: ["course", "withdraw", i["pat"], "--note",
                                                    "\x07"], 2, "--note"),
    *[CliCase(f"due-{v}", "prs", lambda i, v=v: ["due", "--within", v], 2, "--within")
      for v in ("-1", "367", str(2**63))],
    CliCase("due-text", "prs", lambda i: ["due", "--within", "week"], 2, "--within"),
    CliCase("find-limit-0", "prs", lambda i: ["patient", "find", "--limit", "0"], 2, "--limit"),
    CliCase("find-dob", "prs", lambda i: ["patient", "find", "--dob", "2027-02-30"], 2,
            "--dob"),
    CliCase("find-name-rtl", "prs", lambda i: ["patient", "find", "--name", "\u202e"], 2, "--name"),
    CliCase("show-sql", "prs", lambda i: ["patient", "show", "'; DROP TABLE patients;--"], 2,
            "patient"),
    CliCase("show-external-sql", "prs", lambda i: ["patient", "show",
                                                   "MRN:'; DROP TABLE patients;--"], 2,
            "patient"),
    CliCase("add-id-space", "prs", lambda i: ["patient", "add-id", i["pat"], "MRN:a b"], 2,
            "external_ids.MRN"),
    CliCase("zone-mars", "adm", lambda i: ["pharmacy", "register", "--name", "P", "--ncpdp",
                                           "7654321", "--time-zone", "Mars/Olympus"], 2,
            "--time-zone"),
    CliCase("zone-empty", "adm", lambda i: ["pharmacy", "register", "--name", "P", "--ncpdp",
                                            "7654321", "--time-zone", ""], 2, "--time-zone"),
    CliCase("zone-folder", "adm", lambda i: ["pharmacy", "register", "--name", "P", "--ncpdp",
                                             "7654321", "--time-zone", "America"], 2, "--time-zone"),
    *[CliCase(f"ncpdp-{v}", "adm", lambda i, v=v: ["pharmacy", "register", "--name", "P",
                                                   "--ncpdp", v, "--time-zone", "UTC"], 2,
              "--ncpdp")
      for v in ("123", "abcdefg", "\uff11\uff12\uff13\uff14\uff15\uff16\uff17")],
    *[CliCase(f"npi-{v}", "adm", lambda i, v=v: ["prescriber", "register", "--name", "Dr N",
                                                 "--npi", v], 2, "--npi")
      for v in (wrong_digit(npi_with_check_digit("123456789")), "12345", "abcdefghij")],
    CliCase("expires-on-impossible", "adm", lambda i: ["pharmacy", "activate", i["pha"],
                                                       "--expires-on", "2027-02-30"], 2,
            "--expires-on"),
    CliCase("expires-on-past", "adm", lambda i: ["pharmacy", "activate", i["pha"],
                                                 "--expires-on", LONG_AGO], 2, "--expires-on"),
    CliCase("scope-unknown", "adm", lambda i: ["designee", "grant", i["dsg"], "--prescriber",
                                               i["prs"], "--scope", "bogus.action"], 2, "--scope"),
    CliCase("grant-expired", "adm", lambda i: ["designee", "grant", i["dsg"], "--prescriber",
                                               i["prs"], "--expires", "2020-01-01"], 2,
            "--expires"),
    CliCase("grant-impossible", "adm", lambda i: ["designee", "grant", i["dsg"], "--prescriber",
                                                  i["prs"], "--expires", "2027-02-30"], 2,
            "--expires"),
    CliCase("grant-naive", "adm", lambda i: ["designee", "grant", i["dsg"], "--prescriber",
                                             i["prs"], "--expires", "2030-01-01T10:00"], 2,
            "--expires"),
    CliCase("schedule-unknown", "adm", lambda i: ["rules", "schedule", "nope/1", "2027-01-01"], 2,
            "ruleset"),
    CliCase("schedule-impossible", "adm", lambda i: ["rules", "schedule", "ipledge/2026-mod",
                                                     "2027-02-30"], 2, "effective"),
    CliCase("schedule-no-date", "adm", lambda i: ["rules", "schedule", "ipledge/2026-mod"], 2,
            "DATE"),
    CliCase("rules-show-unknown", "adm", lambda i: ["rules", "show", "nope/1"], 2, "ruleset"),
    CliCase("diagram-unknown", "adm", lambda i: ["rules", "diagram", "'; DROP"], 2, "ruleset",
            has_json=False),
    *[CliCase(f"auth-{label}", "rph", lambda i, v=v: ["dispense", "record", v(i)], 2,
              "authorization")
      for label, v in [("short", lambda i: "1234"), ("letters", lambda i: "ABCDEFGHIJKLMNOPQRSTU"),
                       ("wrong-check", lambda i: wrong_digit(i["auth"])),
                       ("sql", lambda i: "1'; DROP TABLE authorizations;--")]],
    CliCase("auth-unknown", "rph", lambda i: ["dispense", "record", i["auth"]], 3,
            rc.AUTHORIZATION_NOT_FOUND),
    CliCase("reverse-unknown", "rph", lambda i: ["dispense", "reverse", i["auth"], "--reason",
                                                 "no show"], 3, rc.AUTHORIZATION_NOT_FOUND),
    CliCase("authorize-sql", "rph", lambda i: ["dispense", "authorize",
                                               "RX-'; DROP TABLE prescriptions;--"], 2,
            "prescription"),
    CliCase("check-wrong-check", "rph", lambda i: ["dispense", "check", wrong_check(i["rx"])], 2,
            "prescription"),
    CliCase("check-unknown-rx", "rph", lambda i: ["dispense", "check", i["rx"]], 5, "not found"),
    # wrong roles and unknown people
    CliCase("pharmacist-enrols", "rph", lambda i: ["course", "enrol", i["pat_free"]], 4,
            rc.ACTOR_NOT_PERMITTED),
    CliCase("patient-prescribes", "pat", _rx("--days-supply", "30"), 4, rc.ACTOR_NOT_PERMITTED),
    CliCase("admin-dispenses", "adm", lambda i: ["dispense", "record", i["auth"]], 4,
            rc.ACTOR_NOT_PERMITTED),
    CliCase("designee-registers-prescriber", "dsg", lambda i: [
        "prescriber", "register", "--name", "Dr D", "--npi", next_npi()], 4,
        rc.ACTOR_NOT_PERMITTED),
    CliCase("prescriber-verifies-audit", "prs", lambda i: ["audit", "verify"], 4,
            rc.ACTOR_NOT_PERMITTED),
    CliCase("designee-prescribes", "dsg", _rx("--days-supply", "30"), 4, rc.ACTOR_NOT_PERMITTED),
    CliCase("patient-registers", "pat", lambda i: ["patient", "register", "--name", "Me",
                                                   "--dob", "2000-01-01"], 4,
            rc.ACTOR_NOT_PERMITTED),
    CliCase("unknown-actor", f"={short_id('ADM')}", lambda i: ["patient", "find"], 4,
            rc.ACTOR_UNKNOWN),
    CliCase("sql-actor", "='; DROP TABLE administrators;--", lambda i: ["patient", "find"], 4,
            rc.ACTOR_UNKNOWN),
    CliCase("blank-actor", "=   ", lambda i: ["status", i["pat"]], 4, rc.ACTOR_UNKNOWN),
    CliCase("empty-actor", "=", lambda i: ["status", i["pat"]], 2, "--as"),
    CliCase("no-actor", None, lambda i: ["status", i["pat"]], 2, "--as"),
    CliCase("on-behalf-for-prescriber", "prs", lambda i: [
        "--on-behalf-of", i["prs"], "status", i["pat"]], 2, "--on-behalf-of"),
    CliCase("now-yesterday", "prs", lambda i: ["--now", "yesterday", "status", i["pat"]], 2,
            "--now"),
    CliCase("now-impossible", "prs", lambda i: ["--now", "2027-13-01", "status", i["pat"]], 2,
            "--now"),
    CliCase("now-overflow", "prs", lambda i: ["--now", EDGE_EAST.isoformat(), "status",
                                              i["pat"]], 2, "--now"),
    CliCase("now-year-9999", "prs", lambda i: ["--now", "9999-06-01T00:00:00Z", "status",
                                               i["pat"]], 2, "--now"),
    CliCase("now-year-1", "prs", lambda i: ["--now", "0001-06-01T00:00:00Z", "status",
                                            i["pat"]], 2, "--now"),
    CliCase("schedule-year-1", "adm", lambda i: ["rules", "schedule", "ipledge/2026-mod",
                                                 "0001-01-01"], 2, "effective"),
    CliCase("grant-expires-overflow", "adm", lambda i: [
        "designee", "grant", i["dsg"], "--prescriber", i["prs"], "--expires",
        EDGE_EAST.isoformat()], 2, "--expires"),
    CliCase("audit-since-overflow", "adm", lambda i: ["audit", "log", "--since",
                                                      EDGE_EAST.isoformat()], 2, "--since"),
    CliCase("audit-until-overflow", "adm", lambda i: ["audit", "log", "--until",
                                                      EDGE_WEST.isoformat()], 2, "--until"),
    CliCase("audit-since-impossible", "adm", lambda i: ["audit", "log", "--since", "2027-02-30"],
            2, "--since"),
    CliCase("audit-until-naive", "adm", lambda i: ["audit", "log", "--until", "2027-01-01T10:00"],
            2, "--until"),
    CliCase("db-nonsense", "prs", lambda i: ["--db", "nonsense", "status", i["pat"]], 2,
            "database URL"),
    CliCase("db-unsupported", "prs", lambda i: ["--db", "mysql://u@h/d", "status", i["pat"]], 2,
            "database URL"),
    CliCase("db-missing-folder", "prs", lambda i: [
        "--db", "sqlite:////nonexistent-hostile/x.db", "status", i["pat"]], 2, "database URL"),
    CliCase("db-bad-port", "prs", lambda i: ["--db", "postgresql://u@h:abc/db", "status",
                                             i["pat"]], 2, "database URL"),
    CliCase("db-name-too-long", "prs", lambda i: [
        "--db", f"sqlite:///{Path(i['dir']) / ('a' * 300)}.db", "status", i["pat"]], 2,
        "database URL"),
    CliCase("show-unknown-prescriber", "adm", lambda i: ["prescriber", "show", short_id("PRS")],
            5, "not found"),
    CliCase("show-prescription-as-person", "adm", lambda i: ["prescriber", "show", i["rx"]], 2,
            "person"),
    CliCase("show-unknown-pharmacy", "adm", lambda i: ["pharmacy", "show", short_id("PHA")], 5,
            "not found"),
    CliCase("activate-active-prescriber", "adm", lambda i: ["prescriber", "activate", i["prs"]],
            6, "cannot"),
    CliCase("deactivate-last-admin", "adm", lambda i: ["admin", "deactivate", i["adm"]], 6,
            "last active administrator"),
]
CLI_PARAMS = [
    pytest.param(case, as_json, id=f"{case.name}{'-json' if as_json else ''}")
    for case in CLI_CASES for as_json in (False, True) if case.has_json or not as_json
]


def _cli_args(cenv: CliEnv, case: CliCase, as_json: bool) -> list[str]:
    args = case.args(cenv.ids)
    if case.actor is not None:
        who = case.actor[1:] if case.actor.startswith("=") else cenv.ids[case.actor]
        args = [f"--as={who}", *args]
    return [*args, "--json"] if as_json else args


@pytest.mark.parametrize(("case", "as_json"), CLI_PARAMS)
def test_cli_rejects_hostile_input(
    cli_env: CliEnv, case: CliCase, as_json: bool, request: pytest.FixtureRequest
) -> None:
    bug = case.bug or (case.json_bug if as_json else None)
    if bug:
        request.applymarker(pytest.mark.xfail(strict=True, reason=bug))
    before = snapshot(cli_env.app, cli_env.tables)
    result = run_cli(cli_env.url, _cli_args(cli_env, case, as_json))
    check_cli_failure(result, case.exit, case.needle, as_json)
    assert_nothing_written(cli_env.app, before, snapshot(cli_env.app, cli_env.tables),
                           refused=case.exit in (3, 4),
                           reasons=(case.needle,) if case.exit in (3, 4) else ())


argv_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40
)


@QUICK
@given(name=st.one_of(argv_text, st.sampled_from(SQL), st.builds(
    lambda unit, n: unit * n, st.sampled_from(["x", "é", "\U0001f600"]), st.integers(199, 202))))
def test_cli_property_names(cli_env: CliEnv, name: str) -> None:
    """A name is registered exactly (NFC, trimmed) or refused with exit 2 naming 'name'."""
    result = run_cli(cli_env.url, [f"--as={cli_env.ids['prs']}", "designee", "register",
                                   f"--name={name}", "--json"])
    expected = _expected_name(name)
    if expected is None:
        check_cli_failure(result, 2, "--name", as_json=True)
        return
    assert result.exit_code == 0, (result.exit_code, result.stderr)
    assert json.loads(result.stdout)["name"] == expected


@QUICK
@given(dob=st.one_of(argv_text, st.dates().map(date.isoformat), st.sampled_from(
    ["2027-02-30", "2026-13-01", "20261301", "yesterday", "2026-11-02T00:00:00+00:00"])))
def test_cli_property_dates(cli_env: CliEnv, dob: str) -> None:
    """A search by birth date runs (exit 0) or is refused with exit 2 naming the field."""
    before = snapshot(cli_env.app, cli_env.tables)
    result = run_cli(cli_env.url, [f"--as={cli_env.ids['prs']}", "patient", "find",
                                   f"--dob={dob}", "--json"])
    if parses_as_date(dob):
        assert result.exit_code == 0, (result.exit_code, result.stderr)
        assert isinstance(json.loads(result.stdout), list)
    else:
        check_cli_failure(result, 2, "--dob", as_json=True)
    assert_nothing_written(cli_env.app, before, snapshot(cli_env.app, cli_env.tables),
                           refused=False)


@QUICK
@given(actor=st.one_of(argv_text, st.sampled_from(SQL), valid_shaped_ids, near_ids.filter(
    lambda s: "\x00" not in s)))
def test_cli_property_unknown_actors(cli_env: CliEnv, actor: str) -> None:
    """Exit 4 with ACTOR_UNKNOWN and one refused audit event; exit 2 naming --as when empty."""
    assume(normalise(actor) not in cli_env.ids.values())
    before = snapshot(cli_env.app, cli_env.tables)
    result = run_cli(cli_env.url, [f"--as={actor}", "status", cli_env.ids["pat"], "--json"])
    if not actor:
        check_cli_failure(result, 2, "--as", as_json=True)
    else:
        check_cli_failure(result, 4, rc.ACTOR_UNKNOWN, as_json=True)
    assert_nothing_written(cli_env.app, before, snapshot(cli_env.app, cli_env.tables),
                           refused=bool(actor), reasons=(rc.ACTOR_UNKNOWN,) if actor else ())


# --- audit log filters: an empty answer or InvalidInput, never a raw error ------------------------

AUDIT_FILTERS: list[tuple[str, dict[str, object], str, bool, tuple[str, ...] | None]] = [
    # (label, LogFilter fields, field, an empty list is a fine answer, the bug shows on)
    ("actor-sql", {"actor": "'; DROP TABLE audit_events;--"}, "actor", True, None),
    ("action-unknown", {"action": "bogus.action"}, "action", True, None),
    ("subject-long", {"subject": "PAT-" + "X" * 10_000}, "subject", True, None),
    ("actor-surrogate", {"actor": "ADM-\udcff"}, "actor", True, BOTH),
    ("subject-surrogate", {"subject": "PAT-\udcff"}, "subject", True, BOTH),
    ("action-surrogate", {"action": "patient.read\udcff"}, "action", True, BOTH),
    ("actor-nul", {"actor": "ADM-\x00"}, "actor", True, PG_ONLY),
    ("action-nul", {"action": "patient.read\x00"}, "action", True, PG_ONLY),
    ("subject-int", {"subject": 5}, "subject", True, PG_ONLY),
    ("limit-negative", {"limit": -1}, "limit", False, BOTH),
    ("limit-text", {"limit": "ten"}, "limit", False, BOTH),
    ("since-text", {"since": "2026-01-01"}, "since", False, BOTH),
    ("since-naive", {"since": datetime(2026, 1, 1)}, "since", False, BOTH),
    ("since-overflow", {"since": EDGE_EAST}, "since", False, BOTH),
    ("until-overflow", {"until": EDGE_WEST}, "until", False, BOTH),
]
AUDIT_FILTER_PARAMS = [
    pytest.param(which, *case, id=f"{which}-{case[0]}",
                 marks=[pytest.mark.postgres] if which == "postgresql" else [])
    for which in BOTH for case in AUDIT_FILTERS
]


@pytest.mark.parametrize(("which", "label", "fields", "fld", "empty_ok", "bug_on"),
                         AUDIT_FILTER_PARAMS)
def test_audit_log_filters(
    which: str, label: str, fields: dict[str, object], fld: str, empty_ok: bool,
    bug_on: tuple[str, ...] | None, request: pytest.FixtureRequest,
) -> None:
    world: Env = request.getfixturevalue(f"{which}_env")
    log_filter = LogFilter(**fields)  # type: ignore[arg-type]
    for read in (world.app.audit_log, world.app.audit_count):
        before = snapshot(world.app, world.tables)
        try:
            answer = read(world.admin, log_filter)
        except ComplianceError as exc:
            expect(isinstance(exc, InvalidInput) and exc.field == fld,
                   f"{type(exc).__name__}: {exc}")
        except Exception as exc:
            pytest.fail(f"raised {type(exc).__name__}: {exc!r}"[:600], pytrace=False)
        else:
            expect(empty_ok and answer in ([], 0), f"{label}: answered {answer!r:.200}")
        assert_nothing_written(world.app, before, snapshot(world.app, world.tables),
                               refused=False)


@pytest.mark.parametrize("option", ["--actor", "--subject", "--action"])
def test_cli_audit_filter_with_invalid_utf8(
    cli_env: CliEnv, option: str, request: pytest.FixtureRequest
) -> None:
    """What Python makes of invalid UTF-8 in argv: an empty log or exit 2, never exit 1."""
    result = run_cli(cli_env.url, [f"--as={cli_env.ids['adm']}", "audit", "log",
                                   f"{option}=ADM-\udcff", "--json"])
    if result.exit_code == 0:
        expect(json.loads(result.stdout) == [], result.stdout)
    else:
        check_cli_failure(result, 2, option, as_json=True)


# --- a few real processes: python -m compliance -------------------------------------------------



def run_process(cenv: CliEnv, *args: str | bytes) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"COMPLIANCE_ACTOR", "COMPLIANCE_DEBUG", "COMPLIANCE_DATABASE_URL"}}
    env |= {"COMPLIANCE_DATABASE_URL": cenv.url, "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "compliance", *args], capture_output=True,
                          env=env, timeout=60, check=False)


def check_process(
    done: subprocess.CompletedProcess[bytes], exits: tuple[int, ...], needle: str, as_json: bool
) -> None:
    out, err = done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
    expect("Traceback" not in out + err, f"a traceback: {out + err}")
    expect(done.returncode in exits, (done.returncode, out, err))
    expect(needle in err, f"{needle!r} not on stderr: {err!r}")
    if as_json:
        try:
            doc = json.loads(err)
        except json.JSONDecodeError:
            pytest.fail(f"--json: stderr is not one JSON document: {err!r}", pytrace=False)
        expect(doc["error"] in {EXIT_NAMES[e] for e in exits}, doc)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("label", "argv", "exits", "needle", "as_json", "bug"),
    [
        ("impossible-dob", lambda i: ["--as", i["prs"], "patient", "register", "--name", "Ana",
                                      "--dob", "2027-02-30", "--json"], (2,), "--dob",
         True, None),
        ("sql-patient", lambda i: ["--as", i["prs"], "course", "enrol",
                                   "PAT-'; DROP TABLE patients;--"], (2,), "patient", False, None),
        ("zone-folder", lambda i: ["--as", i["adm"], "pharmacy", "register", "--name", "P",
                                   "--ncpdp", "7654321", "--time-zone", "Etc", "--json"], (2,),
         "--time-zone", True, None),
        ("usage-json", lambda i: ["--as", i["prs"], "course", "prescribe", i["pat"],
                                  "--days-supply", "thirty", "--json"], (2,), "--days-supply",
         True, None),
        ("bad-utf8-lookup", lambda i: ["--as", i["prs"], "patient", "show", b"MRN:\xff\xfe"],
         (2, 5), "patient", False, None),
        ("bad-utf8-actor", lambda i: ["--as", b"ADM-\xff", "patient", "find"], (4,),
         rc.ACTOR_UNKNOWN, False, None),
    ],
    ids=["impossible-dob", "sql-patient", "zone-folder", "usage-json", "bad-utf8-lookup",
         "bad-utf8-actor"],
)
def test_real_process(
    cli_env: CliEnv, label: str, argv: Callable[[dict[str, str]], list[str | bytes]],
    exits: tuple[int, ...], needle: str, as_json: bool, bug: str | None,
    request: pytest.FixtureRequest,
) -> None:
    if bug:
        request.applymarker(pytest.mark.xfail(strict=True, reason=bug))
    before = snapshot(cli_env.app, cli_env.tables)
    check_process(run_process(cli_env, *argv(cli_env.ids)), exits, needle, as_json)
    assert_nothing_written(cli_env.app, before, snapshot(cli_env.app, cli_env.tables),
                           refused=exits == (4,), reasons=(needle,) if exits == (4,) else ())


# --- afterwards: every audit trail still verifies -----------------------------------------------


def test_zz_audit_trail_still_verifies(env: Env) -> None:
    """Runs last: after every hostile call above, each chain, head and subject index verifies."""
    report = env.app.verify_audit(env.admin)
    assert report.ok, report.first_break


def test_zz_cli_audit_trail_still_verifies(cli_env: CliEnv) -> None:
    result = run_cli(cli_env.url, [f"--as={cli_env.ids['adm']}", "audit", "verify", "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["ok"] is True
