"""Replays a timeline through the public API on a training database with a simulated clock.

Each event runs at its own instant. Refusals and conflicts are results, not errors: the
engine's answer is what a replay is for. A value the engine rejects as invalid stops the replay
with the event and field named, since the timeline itself is wrong.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

from compliance.api.results_course import (
    AuthorizationUpdated,
    Authorized,
    CourseStatus,
    Prescribed,
    StepResult,
)
from compliance.api.service import Compliance
from compliance.domain import reasons as rc
from compliance.domain.gates import Decision
from compliance.errors import Conflict, InvalidInput, Refused
from compliance.simulation.timeline import FIRST_YEAR, Event, Timeline
from compliance.training import SimulatedTime, fresh_ncpdp, fresh_npi

ADMIN_KEY = "simulation.administrator"  # where a kept database remembers its administrator
PINNED = date(FIRST_YEAR, 1, 1)  # the pinned ruleset takes effect before any date a timeline holds


@dataclass(frozen=True)
class EventResult:
    """What the engine answered to one event; ``to_dict`` is the documented JSON shape."""

    event: Event
    patient_id: str | None
    by_id: str
    ruleset: str
    outcome: str
    message: str | None = None
    reasons: tuple[dict[str, Any], ...] = ()
    flags: tuple[dict[str, Any], ...] = ()
    state: str | None = None
    cycle: int | None = None
    decision: dict[str, Any] | None = None
    prescription: str | None = None
    authorization: dict[str, Any] | None = None

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(r["code"] for r in self.reasons) + tuple(f["code"] for f in self.flags)

    @property
    def held(self) -> bool | None:
        """Whether the event's expectation held; None when it states none."""
        expect = self.event.expect
        return None if expect is None else expect.held(self.outcome, self.codes)

    def to_dict(self) -> dict[str, Any]:
        expect = self.event.expect
        return {
            "index": self.event.index,
            "at": self.event.at.isoformat(),
            "op": self.event.op,
            "patient": self.event.patient,
            "patient_id": self.patient_id,
            "by": self.event.by,
            "by_id": self.by_id,
            "ruleset": self.ruleset,
            "outcome": self.outcome,
            "codes": list(self.codes),
            "message": self.message,
            "reasons": list(self.reasons),
            "flags": list(self.flags),
            "state": self.state,
            "cycle": self.cycle,
            "decision": self.decision,
            "prescription": self.prescription,
            "authorization": self.authorization,
            "expected": None if expect is None else {**expect.to_dict(), "held": self.held},
        }


@dataclass(frozen=True)
class Replay:
    timeline: Timeline
    ruleset: str
    results: tuple[EventResult, ...]
    administrator: str  # who set the database up: the id to act as on a kept database

    @property
    def failed(self) -> tuple[EventResult, ...]:
        return tuple(r for r in self.results if r.held is False)


def run(
    timeline: Timeline,
    ruleset: str | None = None,
    *,
    keep: Path | None = None,
    on_result: Callable[[EventResult], None] | None = None,
) -> Replay:
    """Replay ``timeline`` under ``ruleset`` (default: the timeline's own).

    The database is a file in a temporary folder, removed afterwards; with ``keep`` it is
    written there instead and left for inspection once the replay completes.
    """
    ruleset_id = timeline.ruleset_for(ruleset)
    if keep is not None and keep.exists():
        raise InvalidInput("keep", f"{keep} exists: name a new file")
    with _database(keep) as url, Compliance.open(url) as base:
        admin = base.initialize("Simulation administrator", training=True, remember_as=ADMIN_KEY).id
        time = SimulatedTime(base, timeline.events[0].at)
        ids = _Setup(time.app, admin, timeline).run(ruleset_id)
        replayer = _Replayer(time, timeline, ruleset_id, ids)
        results = []
        for event in timeline.events:
            result = replayer.perform(event)
            results.append(result)
            if on_result is not None:
                on_result(result)
    return Replay(timeline, ruleset_id, tuple(results), admin)


@contextmanager
def _database(keep: Path | None) -> Iterator[str]:
    if keep is None:
        with tempfile.TemporaryDirectory(prefix="compliance-simulate-") as folder:
            yield f"sqlite:///{Path(folder) / 'simulation.db'}"
        return
    try:
        yield f"sqlite:///{keep}"
    except BaseException:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{keep}{suffix}").unlink(missing_ok=True)
        raise


@contextmanager
def _named(where: str) -> Iterator[None]:
    """An invalid value the engine found, renamed to the timeline field it came from."""
    try:
        yield
    except InvalidInput as exc:
        raise InvalidInput(f"{where}.{exc.field}", exc.problem) from None


class _Setup:
    """The parties and patients, created at the first event's instant."""

    def __init__(self, app: Compliance, admin: str, timeline: Timeline) -> None:
        self.app, self.admin, self.timeline = app, admin, timeline

    def run(self, ruleset_id: str) -> dict[str, str]:
        app, admin, t = self.app, self.admin, self.timeline
        programme = app.ruleset(ruleset_id).programme
        # Pin the ruleset: it alone is in force for the programme, whatever the dates.
        for other in app.rulesets():
            if other.startswith(programme + "/"):
                app.set_rules_schedule(admin, other, PINNED if other == ruleset_id else date.max)
        ids: dict[str, str] = {}
        for name, prescriber in t.prescribers.items():
            with _named(f"parties.prescribers.{name}"):
                made = app.register_prescriber(
                    admin, prescriber.display, fresh_npi(), time_zone=prescriber.zone
                )
                ids[name] = app.activate_prescriber(admin, made.id).id
        pharmacies: dict[str, str] = {}
        for name, pharmacy in t.pharmacies.items():
            with _named(f"parties.pharmacies.{name}"):
                made_pharmacy = app.register_pharmacy(
                    admin, pharmacy.display, fresh_ncpdp(), pharmacy.zone
                )
                pharmacies[name] = app.activate_pharmacy(
                    admin, made_pharmacy.id, pharmacy.expires_on
                ).id
        for name, pharmacist in t.pharmacists.items():
            with _named(f"parties.pharmacists.{name}"):
                ids[name] = app.register_pharmacist(
                    admin, pharmacist.display, pharmacies[pharmacist.pharmacy]
                ).id
        for name, patient in t.patients.items():
            with _named(f"parties.patients.{name}"):
                ids[name] = app.register_patient(
                    admin, patient.display, patient.date_of_birth
                ).patient.id
        return ids


class _Replayer:
    def __init__(
        self, time: SimulatedTime, timeline: Timeline, ruleset: str, ids: dict[str, str]
    ) -> None:
        self.time, self.app, self.timeline = time, time.app, timeline
        self.ruleset, self.ids = ruleset, ids
        self.programme = time.app.ruleset(ruleset).programme
        self.prescriptions: dict[int, str | None] = {}  # prescribe event -> prescription id
        self.authorizations: dict[int, str | None] = {}  # dispense event -> number
        self.latest_prescription: dict[str, str] = {}  # patient -> latest prescription id
        self.latest_authorization: dict[str, str] = {}  # patient -> latest number issued

    def perform(self, event: Event) -> EventResult:
        self.time.move_to(event.at)
        base = EventResult(
            event=event,
            patient_id=self.ids.get(event.patient) if event.patient else None,
            by_id=self.ids[event.by],
            ruleset=self.ruleset,
            outcome="ALLOW",
            prescription=self._product(event) if event.uses == "prescription" else None,
        )
        skipped = self._missing_source(event)
        if skipped is not None:
            return _with(base, outcome="SKIPPED", message=skipped)
        try:
            with _named(f"event[{event.index}]"):
                answer = self._call(event, base)
        except Refused as refusal:
            return _refused(base, refusal)
        except Conflict as conflict:
            return _with(base, outcome="CONFLICT", message=conflict.message)
        return _allowed(base, event, answer)

    def _missing_source(self, event: Event) -> str | None:
        if event.uses is None or self._product(event) is not None:
            return None
        if event.source is not None:
            return f"no {event.uses}: event [{event.source}] made none"
        return f"no {event.uses} has been issued for {event.patient}"

    def _product(self, event: Event) -> str | None:
        """The prescription id or authorization number the event acts on, if one exists."""
        if event.uses is None:
            return None
        if event.uses == "prescription":
            made, latest = self.prescriptions, self.latest_prescription
        else:
            made, latest = self.authorizations, self.latest_authorization
        if event.source is not None:
            return made.get(event.source)
        return latest.get(event.patient or "")

    def _call(self, event: Event, base: EventResult) -> object:
        app, p, by, patient = self.app, event.params, base.by_id, base.patient_id or ""
        op = event.op
        if op == "enrol":
            return app.enrol(by, patient, p.get("enrolled_on"), self.programme)
        if op == "category":
            return app.assign_category(by, patient, p["category"], p["reason"])
        if op == "test_schedule":
            return app.set_test_schedule(by, patient, p["schedule"])
        if op == "consent":
            return app.record_consent(by, patient, p["form"], p.get("signed_on"))
        if op == "counselling":
            return app.record_counselling(by, patient, p.get("counselled_on"))
        if op == "comprehension":
            return app.record_comprehension(by, patient)
        if op == "contraception":
            return app.record_contraception(by, patient, p["methods"])
        if op == "confirm":
            return app.confirm_contraception(by, patient, p["methods"])
        if op == "confirm_patient":
            return app.confirm_patient(by, patient)
        if op == "test":
            return app.record_test(
                by,
                patient,
                kind=p["kind"],
                specimen_date=p["specimen_date"],
                setting=p["setting"],
                result=p["result"],
                sensitivity_miu_ml=p.get("sensitivity_miu_ml", 25),
                clia=p.get("clia", False),
            )
        if op == "prescribe":
            self.prescriptions[event.index] = None
            done = app.prescribe(
                by,
                patient,
                p["days_supply"],
                p.get("refills", 0),
                p.get("written_on"),
                p.get("office_visit_on"),
            )
            if done.prescription is not None:
                self.prescriptions[event.index] = done.prescription.id
                self.latest_prescription[event.patient or ""] = done.prescription.id
            return done
        if op == "check":
            if p.get("gate", "prescribe") == "dispense":
                target = self._target(event)
                return app.check_dispense(by, target, days_supply=p.get("days_supply"))
            return app.check_prescribe(by, patient, p.get("days_supply"), p.get("refills", 0))
        if op == "dispense":
            self.authorizations[event.index] = None
            target = self._target(event)
            issued = app.request_authorization(by, target, days_supply=p.get("days_supply"))
            self.authorizations[event.index] = issued.authorization.number
            self.latest_authorization[event.patient or ""] = issued.authorization.number
            return issued
        if op == "pickup":
            return app.record_dispense(by, self._target(event))
        if op == "reverse":
            return app.reverse_authorization(by, self._target(event), p["reason"])
        if op == "end":
            return app.end_treatment(by, patient, p["last_dose_on"])
        if op == "pregnancy":
            return app.report_pregnancy(by, patient, p.get("reported_on"), p.get("note"))
        if op == "resume":
            return app.resume_course(by, patient, p["note"])
        if op == "home_testing":
            return app.set_home_testing(by, p.get("enabled", True), p.get("procedure"), p.get("on"))
        if op == "status":
            return app.status(by, patient)
        raise AssertionError(f"operation {op} has no call")

    def _target(self, event: Event) -> str:
        found = self._product(event)
        assert found is not None
        return found


def _with(base: EventResult, **changes: Any) -> EventResult:
    return replace(base, **changes)


def _message(code: str) -> str:
    return rc.MESSAGES.get(code, code)


def _refused(base: EventResult, refusal: Refused) -> EventResult:
    decision = refusal.decision
    reasons: tuple[dict[str, Any], ...]
    if decision is not None:
        reasons = tuple(r.to_dict() for r in decision.reasons)
    elif len(refusal.reasons) == 1:
        # A single refusal carries its detail in the message (e.g. the do-not-dispense-after time).
        reasons = (_reason(refusal.reasons[0], refusal.message),)
    else:
        reasons = tuple(_reason(code, _message(code)) for code in refusal.reasons)
    return _with(
        base,
        outcome="REFUSE",
        message=refusal.message,
        reasons=reasons,
        state=refusal.state,
        cycle=decision.cycle if decision else None,
        decision=decision.to_dict() if decision else None,
    )


def _reason(code: str, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "next_step": None, "earliest": None}


def _flag(code: str, message: str | None = None) -> dict[str, Any]:
    return {"code": code, "message": message or _message(code)}


def _allowed(base: EventResult, event: Event, answer: object) -> EventResult:
    zone = event.at.tzinfo
    if isinstance(answer, Decision):
        return _with(
            base,
            outcome=answer.outcome.value,
            reasons=tuple(r.to_dict() for r in answer.reasons),
            cycle=answer.cycle,
            decision=answer.to_dict(),
        )
    if isinstance(answer, CourseStatus):
        return _with(
            base,
            state=answer.course.state,
            cycle=answer.course.cycle,
            decision=answer.decision.to_dict(),
            flags=tuple(_flag(f.code, f.message) for f in answer.flags),
        )
    if not isinstance(answer, StepResult):
        return base  # home testing: a setting of the prescriber's, not of a course
    flags = [_flag(code) for code in answer.record.get("problems", ())]
    positive = event.op == "test" and event.params["result"] == "positive"
    if (positive or event.op == "pregnancy") and answer.course.pregnancy_actions:
        flags.append(_flag(rc.PREGNANCY_ACTIONS))
    decision = answer.decision if isinstance(answer, Prescribed | Authorized) else None
    issued = answer.prescription if isinstance(answer, Prescribed) else None
    a = answer.authorization if isinstance(answer, Authorized | AuthorizationUpdated) else None
    authorization = None
    if a is not None:
        limit = a.do_not_dispense_after
        authorization = {
            "number": a.number,
            "formatted": a.formatted,
            "prescription": a.prescription,
            "do_not_dispense_after": _local(limit, zone),
            "reversed_at": _local(a.reversed_at, zone),
            "dispensed_at": _local(a.dispensed_at, zone),
            "kind": a.kind,
        }
    return _with(
        base,
        flags=tuple(flags),
        state=answer.course.state,
        cycle=answer.course.cycle,
        decision=decision.to_dict() if decision else None,
        prescription=issued.id if issued else a.prescription if a else base.prescription,
        authorization=authorization,
    )


def _local(instant: datetime | None, zone: Any) -> str | None:
    return None if instant is None else instant.astimezone(zone).isoformat()
