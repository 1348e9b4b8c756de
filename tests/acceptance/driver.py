"""Replays a timeline through the public ``Compliance`` API and compares every checkpoint.

One fresh database per timeline. The clock is set to each step's instant before the step; the
step's calendar dates are its party's local dates. A call that the public API cannot express
yet (a method or keyword that does not exist) raises ``NotRecordable``: that timeline is a
known gap, not a wrong decision.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from compliance import Compliance, FixedClock
from compliance.errors import Refused
from tests.acceptance.model import PHARMACY_ZONES, Expect, Step, Timeline
from tests.conftest import next_npi


class NotRecordable(Exception):
    """The public API has no call (or no keyword) for this step yet."""


class Mismatch(AssertionError):
    """A checkpoint decided otherwise than the documents say."""


@dataclass
class Observed:
    outcome: str
    codes: frozenset[str]
    window: dict[str, Any] | None = None
    earliest: date | None = None
    dnda: datetime | None = None
    days_supply: int | None = None
    state: str | None = None
    category: str | None = None
    ruleset: str | None = None
    written_on: date | None = None
    flags: frozenset[str] = frozenset()


def _call(obj: object, method: str, *args: Any, **kwargs: Any) -> Any:
    """Call ``obj.method`` if the public API has that method and those keywords."""
    fn = getattr(obj, method, None)
    if fn is None:
        raise NotRecordable(f"Compliance.{method} does not exist")
    try:
        inspect.signature(fn).bind(*args, **kwargs)
    except TypeError as exc:
        raise NotRecordable(f"Compliance.{method}{tuple(kwargs)}: {exc}") from exc
    return fn(*args, **kwargs)


def _decision_fields(decision: Any) -> dict[str, Any]:
    if decision is None:
        return {}
    if isinstance(decision, dict):
        earliest = decision.get("earliest")
        return {
            "window": decision.get("window"),
            "earliest": date.fromisoformat(earliest) if earliest else None,
        }
    window = decision.window.to_dict() if decision.window is not None else None
    return {"window": window, "earliest": decision.earliest}


@dataclass(frozen=True)
class Parties:
    """The prescriber's practice and one pharmacy per zone, registered once per backend and
    copied into every timeline's fresh database (the ids are the same in every copy)."""

    admin: str
    prescriber: str
    npi: str
    designee: str
    pharmacists: dict[str, str]


def register_parties(app: Compliance) -> Parties:
    """Everyone a timeline may need; pharmacies activated until the end of 2028, so that no
    timeline runs into an annual re-activation."""
    admin = app.initialize("Ada Administrator", training=True).id
    npi = next_npi()
    prescriber = app.register_prescriber(admin, "Dr Paula Prescriber", npi).id
    app.activate_prescriber(admin, prescriber)
    designee = app.register_designee(prescriber, "Dana Designee").id
    app.grant_designee(prescriber, designee, prescriber)
    pharmacists: dict[str, str] = {}
    for n, (name, zone) in enumerate(sorted(PHARMACY_ZONES.items())):
        pharmacy = app.register_pharmacy(admin, f"Pharmacy {name}", str(2000001 + n), zone)
        app.activate_pharmacy(admin, pharmacy.id, expires_on="2028-12-31")
        pharmacists[name] = app.register_pharmacist(admin, f"Pharmacist {name}", pharmacy.id).id
    return Parties(admin, prescriber, npi, designee, pharmacists)


@dataclass
class Run:
    app: Compliance
    clock: FixedClock
    parties: Parties
    patients: dict[str, str] = field(default_factory=dict)
    dobs: dict[str, str] = field(default_factory=dict)
    specimens: dict[str, date] = field(default_factory=dict)
    prescriptions: dict[str, str] = field(default_factory=dict)
    authorizations: dict[str, str] = field(default_factory=dict)


def _who(run: Run, step: Step) -> tuple[str, dict[str, Any]]:
    """The acting id and, for a designee or the lab's result entry, on whose behalf."""
    patient = run.patients.get(step.args.get("patient", "p"), "")
    who = run.parties
    if step.party == "prescriber":
        return who.prescriber, {}
    if step.party in ("designee", "lab"):
        return who.designee, {"on_behalf_of": who.prescriber}
    if step.party == "patient":
        return patient, {}
    if step.party == "admin":
        return who.admin, {}
    return who.pharmacists[step.args["pharmacy"]], {}


def _perform(run: Run, step: Step) -> Observed:
    app, a = run.app, dict(step.args)
    actor, behalf = _who(run, step)
    key = a.pop("patient", "p")
    a.pop("pharmacy", None)  # already used to choose the pharmacist
    pat = run.patients.get(key, "")
    act = step.action
    out: Any = None
    if act == "register_patient":
        dob = a.pop("dob", "2003-05-17")
        out = _call(app, "register_patient", actor, a.pop("name", key), dob, **behalf)
        run.patients[key] = out.patient.id
        run.dobs[key] = dob
        return Observed("ALLOW", frozenset())
    if act == "enrol":
        out = _call(app, "enrol", actor, pat, programme=a.pop("programme"), **behalf)
    elif act == "category":
        out = _call(
            app, "assign_category", actor, pat, a.pop("category"), a.pop("reason"), **behalf
        )
    elif act == "consent":
        out = _call(app, "record_consent", actor, pat, a.pop("form"), **behalf)
    elif act == "counsel":
        out = _call(app, "record_counselling", actor, pat, **behalf)
    elif act == "contraception":
        out = _call(app, "record_contraception", actor, pat, a.pop("methods"), **behalf)
    elif act == "collect":
        run.specimens[a.pop("label")] = step.local_date
        return Observed("ALLOW", frozenset())
    elif act == "result":
        specimen = run.specimens[a.pop("label")]
        out = _call(
            app,
            "record_test",
            actor,
            pat,
            kind=a.pop("kind"),
            specimen_date=specimen.isoformat(),
            setting=a.pop("setting", "lab"),
            result=a.pop("result", "negative"),
            clia=a.pop("clia", True),
            sensitivity_miu_ml=a.pop("sensitivity", 25),
            **behalf,
        )
    elif act == "home_testing":
        out = _call(app, "set_home_testing", actor, a.pop("enabled"), a.pop("procedure", None))
        return Observed("ALLOW", frozenset())
    elif act == "prescribe":
        label = a.pop("rx", "rx")
        kw: dict[str, Any] = {k: a.pop(k) for k in ("written_on", "office_visit_on") if k in a}
        out = _call(app, "prescribe", actor, pat, a.pop("days", 30), a.pop("refills", 0), **kw)
        assert out.prescription is not None
        run.prescriptions[label] = out.prescription.id
    elif act == "check_prescribe":
        dec = _call(app, "check_prescribe", actor, pat, a.pop("days", 30), **behalf)
        return Observed(dec.outcome.value, frozenset(dec.codes), **_decision_fields(dec))
    elif act == "confirm_patient":
        out = _call(app, "confirm_patient", actor, pat, **behalf)
    elif act == "comprehension":
        out = _call(app, "record_comprehension", actor, pat)
    elif act == "confirm_methods":
        out = _call(app, "confirm_contraception", actor, pat, a.pop("methods"))
    elif act == "find_prescription":
        info = _call(app, "find_prescription", actor, pat, run.dobs[key], run.parties.npi)
        run.prescriptions[a.pop("rx", "rx")] = info.id
        return Observed("ALLOW", frozenset(), written_on=info.written_on)
    elif act == "check_dispense":
        rx = run.prescriptions[a.pop("rx", "rx")]
        kw = {"days_supply": a.pop("days_supply")} if "days_supply" in a else {}
        dec = _call(app, "check_dispense", actor, rx, **kw)
        return Observed(dec.outcome.value, frozenset(dec.codes), **_decision_fields(dec))
    elif act == "authorize":
        rx = run.prescriptions[a.pop("rx", "rx")]
        kw = {"days_supply": a.pop("days_supply")} if "days_supply" in a else {}
        out = _call(app, "request_authorization", actor, rx, **kw)
        assert out.authorization is not None
        run.authorizations[a.pop("auth", "auth")] = out.authorization.number
    elif act == "reverse":
        number = run.authorizations[a.pop("auth", "auth")]
        out = _call(app, "reverse_authorization", actor, number, a.pop("reason", "not picked up"))
    elif act == "pickup":
        out = _call(app, "record_dispense", actor, run.authorizations[a.pop("auth", "auth")])
    elif act == "end":
        out = _call(app, "end_treatment", actor, pat, a.pop("last_dose_on"))
    elif act == "pregnancy":
        out = _call(app, "report_pregnancy", actor, pat, **behalf)
    elif act == "resume":
        out = _call(app, "resume_course", actor, pat, a.pop("note", "prescriber's decision"))
    elif act == "deactivate_prescriber":
        _call(app, "deactivate_prescriber", actor, run.parties.prescriber)
        return Observed("ALLOW", frozenset())
    elif act == "set_clinic_zone":
        _call(app, "set_prescriber_zone", actor, run.parties.prescriber, a.pop("clinic_zone"))
        return Observed("ALLOW", frozenset())
    elif act == "status":
        st = _call(app, "status", actor, pat, **behalf)
        c = st.course
        return Observed("ALLOW", frozenset(), state=c.state, category=c.category, ruleset=c.ruleset)
    elif act == "due":
        flags = _call(app, "due", actor, a.pop("within", 7), **behalf)
        mine = frozenset(f.code for f in flags if f.patient == pat)
        return Observed("ALLOW", frozenset(), flags=mine)
    else:
        raise AssertionError(f"unknown action {act}")
    assert not a, f"unused arguments {a}"
    obs = Observed("ALLOW", frozenset(), **_decision_fields(getattr(out, "decision", None)))
    obs.state, obs.category, obs.ruleset = out.course.state, out.course.category, out.course.ruleset
    if getattr(out, "authorization", None) is not None:
        obs.dnda = out.authorization.do_not_dispense_after
        obs.days_supply = out.authorization.days_supply
    if getattr(out, "prescription", None) is not None:
        obs.written_on = out.prescription.written_on
    return obs


def _compare(step: Step, exp: Expect, obs: Observed) -> list[str]:
    bad: list[str] = []
    if obs.outcome != exp.outcome:
        bad.append(f"outcome {obs.outcome} {sorted(obs.codes)}, expected {exp.outcome}")
    elif exp.outcome == "REFUSE" and not (exp.codes <= obs.codes <= exp.codes | exp.optional):
        bad.append(f"codes {sorted(obs.codes)}, expected {sorted(exp.codes)}")
    window = obs.window
    if exp.no_window and window is not None:
        bad.append(f"window {window}, expected none")
    for name in ("first_day", "last_day"):
        want = getattr(exp, name)
        if want is not None:
            got = window.get(name) if window else None
            if got != want.isoformat():
                bad.append(f"window {name} {got}, expected {want}")
    if exp.dnda_on is not None:
        got = obs.dnda
        if got is None:
            bad.append("no do-not-dispense-after instant")
        else:
            local = got.astimezone(ZoneInfo(exp.dnda_zone))
            if local.date() != exp.dnda_on or local.time() < time(23, 59, 59):
                bad.append(f"do-not-dispense-after {local}, expected {exp.dnda_on} 23:59:59")
    if exp.earliest is not None and obs.earliest != exp.earliest:
        bad.append(f"earliest {obs.earliest}, expected {exp.earliest}")
    for name in ("state", "category", "ruleset", "days_supply", "written_on"):
        want = getattr(exp, name)
        if want is not None and getattr(obs, name) != want:
            bad.append(f"{name} {getattr(obs, name)}, expected {want}")
    if not exp.flags <= obs.flags:
        bad.append(f"flags {sorted(obs.flags)}, expected at least {sorted(exp.flags)}")
    return bad


def replay(db_url: str, parties: Parties, timeline: Timeline) -> int:
    """Replay every step on a fresh database holding ``parties``; raise ``Mismatch`` at the
    first checkpoint that disagrees. Returns the number of checkpoints compared."""
    clock = FixedClock(timeline.steps[0].instant)
    run = Run(Compliance.open(db_url, clock), clock, parties)
    checked = 0
    try:
        for n, step in enumerate(timeline.steps, 1):
            run.clock.set(step.instant)
            try:
                obs = _perform(run, step)
            except Refused as refusal:
                obs = Observed("REFUSE", frozenset(refusal.reasons))
                fields = _decision_fields(refusal.decision)
                obs.window, obs.earliest = fields.get("window"), fields.get("earliest")
            exp = step.expect or Expect()
            bad = _compare(step, exp, obs)
            if bad:
                raise Mismatch(f"{timeline.name} step {n} ({step.describe()}): " + "; ".join(bad))
            checked += step.expect is not None
    finally:
        run.app.close()
    return checked
