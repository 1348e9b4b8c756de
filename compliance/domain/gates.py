"""The two gates: may this patient be prescribed now, may this pharmacy dispense this
prescription now. Each evaluates every requirement of the governing ruleset and returns a
``Decision`` listing every failing reason, what to do next, and the earliest date it could pass.

The checks are small functions reading ruleset data; none knows which programme it serves.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from compliance.domain import reasons as rc
from compliance.domain.course import TERMINAL, CourseState
from compliance.domain.evaluation import Check, Decision, Evaluation, Outcome, Reason
from compliance.domain.facts import CourseFacts, MethodRecord, PrescriptionRecord, TestResult
from compliance.domain.pregnancy_tests import (
    pregnancy_tests,
    schedule_of,
    scheduled_test_due,
    suspending_test,
    test_problems,
)
from compliance.domain.timing import window
from compliance.programs.model import Anchor, Cadence, ContraceptionOption, PrescriberEntry, Tier

__all__ = [
    "Decision",
    "DispenseRequest",
    "Outcome",
    "Reason",
    "dispense_gate",
    "prescribe_gate",
    "readiness",
    "schedule_of",
    "scheduled_test_due",
    "test_problems",
]


@dataclass(frozen=True)
class DispenseRequest:
    prescription_id: str
    pharmacy_zone: str
    pharmacy_problems: tuple[str, ...] = ()
    # The days' supply the pharmacy states it dispenses (None: the prescription's own).
    days_supply: int | None = None


# --- the checks --------------------------------------------------------------------------------


def course_is_open(ev: Evaluation) -> None:
    """A course that is not open or is suspended decides alone (reason-codes.md, "Which codes
    go together"): the gate then lists only the blocking code and its cause."""
    state = ev.facts.state
    if state in TERMINAL or state in {CourseState.TREATMENT_ENDED, CourseState.POST_TREATMENT}:
        ev.add(
            rc.NO_ACTIVE_COURSE, f"the course is {state.value}", "enrol the patient in a new course"
        )
        ev.stop = True
    elif state is CourseState.SUSPENDED:
        ev.add(
            rc.COURSE_SUSPENDED,
            None,
            "follow the pregnancy actions; only a prescriber can resume the course",
        )
        cause = suspending_test(ev.facts)
        if cause is not None:
            ev.add(
                rc.PREGNANCY_TEST_POSITIVE,
                f"specimen of {cause.specimen_date.isoformat()}",
                "stop treatment; follow the pregnancy actions",
            )
        ev.stop = True


def category_assigned(ev: Evaluation) -> None:
    """A patient with no valid category is judged as one who can get pregnant (the safe side):
    the evaluation goes on under that category's requirements."""
    own = ev.ruleset.category(ev.facts.category) if ev.facts.category else None
    if own is None:
        ev.add(rc.CATEGORY_NOT_ASSIGNED, None, "the prescriber assigns a category and its reason")
    elif ev.facts.category_reason not in own.reasons:
        allowed = ", ".join(own.reasons)
        ev.add(
            rc.INVALID_CATEGORY_REASON,
            f"{ev.facts.category_reason} does not support '{own.label}'",
            f"choose one of: {allowed}",
        )


def consents_signed(ev: Evaluation) -> None:
    assert ev.category is not None
    missing = [f for f in ev.category.consent_forms if f not in ev.facts.consents]
    if missing:
        ev.add(rc.CONSENT_NOT_SIGNED, ", ".join(missing), "record the signed forms")


def _cadence_met(cadence: Cadence, cycles: frozenset[int], cycle: int) -> bool:
    if cadence is Cadence.MONTHLY:
        return cycle in cycles
    if cadence is Cadence.ENROLMENT:
        return bool(cycles)
    return True


def counselling_documented(ev: Evaluation) -> None:
    assert ev.category is not None
    cadence = ev.category.counselling
    if not _cadence_met(cadence, ev.facts.counselling_cycles, ev.facts.cycle):
        when = "this cycle" if cadence is Cadence.MONTHLY else "at enrolment"
        ev.add(rc.COUNSELING_NOT_DOCUMENTED, when, "the prescriber documents counselling")


def comprehension_done(ev: Evaluation) -> None:
    assert ev.category is not None
    cadence = ev.category.comprehension
    if not _cadence_met(cadence, ev.facts.comprehension_cycles, ev.facts.cycle):
        when = "this cycle" if cadence is Cadence.MONTHLY else "at enrolment"
        ev.add(rc.COMPREHENSION_NOT_DONE, when, "the patient answers the comprehension questions")


def _option_shortfall(ev: Evaluation, option: ContraceptionOption, chosen: set[str]) -> list[str]:
    rules = ev.ruleset.contraception
    counted = chosen if option.only is None else chosen & set(option.only)
    tiers = [rules.tier(m) for m in counted]
    acceptable = [t for t in tiers if t in {Tier.PRIMARY, Tier.SECONDARY}]
    primary = [t for t in tiers if t is Tier.PRIMARY]
    barriers = counted & set(rules.barrier_methods)
    codes = []
    if len(acceptable) < option.methods or len(barriers) < option.barrier:
        codes.append(rc.CONTRACEPTION_INSUFFICIENT)
    if len(primary) < option.primary:
        codes.append(rc.NO_PRIMARY_METHOD)
    return codes


def _shortfall(ev: Evaluation, methods: Iterable[str]) -> list[str]:
    """Nothing when any one option (or a waiver) is met; else what the nearest option lacks."""
    chosen = set(methods)
    if chosen & set(ev.ruleset.contraception.waivers):
        return []
    gaps = [_option_shortfall(ev, option, chosen) for option in ev.options]
    return min(gaps, key=len)


def _lead_in_reached(ev: Evaluation, methods: tuple[MethodRecord, ...]) -> date:
    """The first day on which enough methods have each been in use for the lead-in period.
    A waiver that needs no lead-in (the UK agreement) counts from the start of the calendar."""
    rules = ev.ruleset.contraception
    lead = timedelta(days=ev.lead_in_days)

    def reached(m: MethodRecord) -> date:
        return date.min if m.method in rules.waivers_without_lead_in else m.start_date + lead

    for day in sorted({reached(m) for m in methods}):
        if not _shortfall(ev, (m.method for m in methods if reached(m) <= day)):
            return day
    return date.max


def contraception_in_place(ev: Evaluation) -> None:
    assert ev.category is not None
    if not ev.category.contraception:
        return
    facts, rules = ev.facts, ev.ruleset.contraception
    needed = rules.describe(ev.options)
    if not facts.methods:
        ev.add(rc.CONTRACEPTION_NOT_DOCUMENTED, None, f"the prescriber enters {needed}")
        return
    monthly = rules.prescriber_entry is PrescriberEntry.MONTHLY
    if monthly and facts.methods_cycle != facts.cycle:
        # Each month's entry counts for that month only: last month's does not carry over.
        ev.add(
            rc.CONTRACEPTION_NOT_DOCUMENTED,
            f"the prescriber's entry is of cycle {facts.methods_cycle}, not this cycle "
            f"({facts.cycle})",
            "the prescriber confirms the methods for this month",
        )
        return
    names = [m.method for m in facts.methods]
    for code in _shortfall(ev, names):
        ev.add(code, ", ".join(names), f"at least {needed}")
    confirmed = facts.patient_confirmed.get(facts.cycle)
    if rules.patient_confirmation is Cadence.NONE:
        pass  # the patient confirms their methods in no system (EU/UK)
    elif confirmed is None:
        ev.add(
            rc.CONTRACEPTION_NOT_CONFIRMED,
            f"cycle {facts.cycle}",
            "the patient confirms their methods for this cycle",
        )
    elif confirmed != frozenset(names):
        ev.add(
            rc.CONTRACEPTION_MISMATCH,
            f"prescriber: {', '.join(sorted(names))}; patient: {', '.join(sorted(confirmed))}",
            "correct the entries so both lists agree",
        )
    if not facts.treatment_started and not _shortfall(ev, names):
        reference = ev.test.specimen_date if ev.test else ev.today
        reached = _lead_in_reached(ev, facts.methods)
        if reached > reference:
            ev.add(
                rc.CONTRACEPTION_LEAD_IN_NOT_MET,
                f"{ev.lead_in_days} days of contraception are needed before the "
                f"confirmation test; they are reached on {reached.isoformat()}",
                "wait, then collect the confirmation test",
                reached,
            )


def prescriber_confirmed(ev: Evaluation) -> None:
    """The prescriber confirmed the patient for the result relied on (iPLEDGE); a confirmation
    counts for the result it confirmed only. Listed also while no usable result is on file
    (every failing requirement is listed); not once the result's window has closed or the
    lockout runs, where a new test, not a confirmation, is the next step."""
    assert ev.category is not None
    test = ev.test
    if not ev.ruleset.testing.prescriber_confirms_result or not ev.category.pregnancy_testing:
        return
    if test is not None and ev.window is not None and not ev.window.contains(ev.now):
        return
    if any(r.code == rc.LOCKOUT_19D for r in ev.reasons):
        return  # the test cannot qualify the patient: a new one is the next step
    if test is None:
        on_file = [
            t
            for t in ev.facts.tests
            if t.result is TestResult.NEGATIVE and t.cycle == ev.facts.cycle
        ]
        latest = max(on_file, key=lambda t: (t.specimen_date, t.seq), default=None)
        if latest is not None and latest.id in ev.facts.confirmed_tests:
            return  # confirmed; the test's own codes say why it cannot count
        ev.add(
            rc.PRESCRIBER_CONFIRMATION_MISSING,
            "no negative result the rules accept has been confirmed for this step",
            "once the negative result is in, the prescriber confirms the patient",
        )
        return
    if test.id not in ev.facts.confirmed_tests:
        ev.add(
            rc.PRESCRIBER_CONFIRMATION_MISSING,
            f"the negative result of the test of {test.specimen_date.isoformat()}",
            "the prescriber (or a designee on their behalf) confirms the patient",
        )


# What writing a prescription needs where the status is judged at the request (iPLEDGE).
WRITING_CHECKS: tuple[Check, ...] = (course_is_open, category_assigned, consents_signed)

PRESCRIBE_CHECKS: tuple[Check, ...] = (
    *WRITING_CHECKS,
    counselling_documented,
    comprehension_done,
    pregnancy_tests,  # before contraception: the lead-in is measured to the qualifying test
    contraception_in_place,
)

# Everything the pharmacy's request needs: the month's items and the prescriber's confirmation.
REQUEST_CHECKS: tuple[Check, ...] = (*PRESCRIBE_CHECKS, prescriber_confirmed)


def _run(ev: Evaluation, checks: Iterable[Check]) -> None:
    for check in checks:
        if ev.stop:
            return
        check(ev)


def _decision(ev: Evaluation, gate: str) -> Decision:
    ordered = sorted(ev.reasons, key=lambda r: _ORDER.get(r.code, len(_ORDER)))
    return Decision(
        gate=gate,
        outcome=Outcome.REFUSE if ordered else Outcome.ALLOW,
        reasons=tuple(ordered),
        ruleset_id=ev.ruleset.id,
        evaluated_at=ev.now,
        today=ev.today,
        cycle=ev.facts.cycle,
        window=ev.window,
        test_id=ev.test.id if ev.test else None,
    )


_ORDER = {code: i for i, code in enumerate(rc.MESSAGES)}


def supply_within_limits(
    ev: Evaluation, days_supply: int, refills: int, step: str = "write"
) -> None:
    rules = ev.ruleset.prescription
    limit = ev.ruleset.max_days_supply(ev.category)
    if limit is not None and days_supply > limit:
        ev.add(
            rc.SUPPLY_EXCEEDS_MAX,
            f"{days_supply} days asked, at most {limit}",
            f"{step} at most {limit} days",
        )
    if refills and not rules.refills_allowed:
        ev.add(rc.REFILLS_NOT_ALLOWED, f"{refills} refill(s) asked", "write no refills")


def prescribe_gate(
    facts: CourseFacts,
    now: datetime,
    days_supply: int | None = None,
    refills: int = 0,
    on: date | None = None,
) -> Decision:
    """May this patient be prescribed now (optionally: this supply and these refills, on a
    prescription dated ``on``, by default today)? Where the status is judged at the request,
    writing needs only the course, the category, the consent, the supply and the refills."""
    ev = Evaluation(facts, now, None, on)
    if facts.state is CourseState.AUTHORIZED:  # a blocking state: it decides alone
        ev.add(
            rc.AUTHORIZATION_ALREADY_ISSUED,
            f"cycle {facts.cycle}",
            "dispense or reverse the open authorization first",
        )
        return _decision(ev, "prescribe")
    _run(ev, WRITING_CHECKS if ev.at_request else PRESCRIBE_CHECKS)
    if days_supply is not None and not ev.stop:
        supply_within_limits(ev, days_supply, refills)
    return _decision(ev, "prescribe")


def readiness(facts: CourseFacts, now: datetime) -> Decision:
    """Everything the course's next authorization will need, judged now, for checklists and
    worklists. Where the status is judged at the request (iPLEDGE) that is more than writing
    needs: the month's items and the prescriber's confirmation; elsewhere the prescribe gate."""
    ev = Evaluation(facts, now, None)
    if not ev.at_request:
        return prescribe_gate(facts, now)
    _run(ev, REQUEST_CHECKS)
    return _decision(ev, "readiness")


def _prescription_window(
    ev: Evaluation, rx: PrescriptionRecord, validity_only: bool = False
) -> None:
    """Windows that run from the prescription (office visit / date written), not a test; with
    ``validity_only``, only the prescription's own validity (EU/UK)."""
    rule = ev.category.window if ev.category else None
    if rule is None or rule.anchor is Anchor.SPECIMEN_DATE:
        return
    if validity_only and rule.anchor is not Anchor.PRESCRIPTION_DATE:
        return
    day_one = rx.office_visit_on if rule.anchor is Anchor.OFFICE_VISIT else rx.written_on
    ev.window = window(day_one, rule.days, ev.zone)
    if not ev.window.contains(ev.now):
        code = rc.RX_EXPIRED if rule.anchor is Anchor.PRESCRIPTION_DATE else rc.WINDOW_EXPIRED
        ev.add(
            code,
            f"the window {day_one.isoformat()} to {ev.window.last_day.isoformat()} has closed",
            "the prescriber writes a new prescription",
        )


def dispense_gate(facts: CourseFacts, now: datetime, request: DispenseRequest) -> Decision:
    """May this pharmacy dispense this prescription now? ALLOW means: issue an authorization."""
    rx = facts.prescription(request.prescription_id)
    if rx is None:
        raise LookupError(request.prescription_id)
    ev = Evaluation(facts, now, request.pharmacy_zone, rx.written_on, dispensing=True)
    for code in request.pharmacy_problems:
        ev.add(code, None, "the pharmacy renews or restores its activation")
    course_is_open(ev)
    used = [
        a
        for a in facts.authorizations
        if a.reversed_at is None and (a.prescription_id == rx.id or a.cycle == facts.cycle)
    ]
    if not ev.stop and (used or rx.cycle != facts.cycle):
        ev.add(
            rc.AUTHORIZATION_ALREADY_ISSUED,
            f"prescription {rx.id} (cycle {rx.cycle}); course cycle {facts.cycle}",
            "use the existing authorization, or reverse it and request again",
        )
        ev.stop = True
    if not rx.prescriber_certified:
        ev.add(rc.PRESCRIBER_NOT_CERTIFIED, None, "the prescriber's certification must be active")
    if ev.stop:
        # A blocking state decides alone, with its cause, the participants' certification and
        # the prescription's own validity; not the month's other missing items.
        _prescription_window(ev, rx, validity_only=True)
        return _decision(ev, "dispense")
    _run(ev, REQUEST_CHECKS)
    current = [p for p in facts.prescriptions if p.cycle == facts.cycle]
    latest = current[-1] if current else None  # prescriptions are kept in the order written
    if facts.state is CourseState.PRE_TREATMENT or (latest is not None and latest.id != rx.id):
        ev.add(
            rc.PRESCRIPTION_SUPERSEDED,
            f"prescription {rx.id}",
            "the prescriber writes a new prescription for the current cycle",
        )
    stated = rx.days_supply if request.days_supply is None else request.days_supply
    supply_within_limits(ev, stated, rx.refills, "dispense")
    if stated > rx.days_supply:
        ev.add(
            rc.SUPPLY_EXCEEDS_PRESCRIPTION,
            f"{stated} days stated, the prescription is for {rx.days_supply}",
            f"dispense at most {rx.days_supply} days",
        )
    _prescription_window(ev, rx)
    return _decision(ev, "dispense")
