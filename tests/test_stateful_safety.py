"""Stateful safety test: no dispense authorization is ever issued unless every requirement held.

A hypothesis ``RuleBasedStateMachine`` drives the real public ``Compliance`` API on a real SQLite
file (a copy of the migrated template per machine instance) with random sequences of clinic,
patient and pharmacy operations and clock moves, in two eras: a course enrolled on 2026-06-01
(governed by ``ipledge/2023-03``) and one enrolled on 2027-01-05 (``ipledge/2026-mod``).

Library errors (Refused, InvalidInput, Conflict, NotFound) are expected outcomes of random calls;
any other exception fails the test. Whenever ``request_authorization`` succeeds, an independent
oracle written here re-derives, from the test's own record of what the API accepted, that every
requirement held at that instant. The oracle never calls ``compliance.domain.gates``: its rule
parameters are copied by hand from shared/domain/rules.md section 1 and the ruleset files.

Also checked: at most one live (not reversed, not dispensed) authorization at any time, the
engine's cycle agrees with the count of dispenses, and the audit trail verifies at teardown.
"""

from __future__ import annotations

import copy
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, currently_in_test_context, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from compliance.api import Compliance
from compliance.clock import FixedClock
from compliance.errors import Conflict, InvalidInput, NotFound, Refused
from tests.conftest import World, build_world

pytestmark = pytest.mark.slow

# --- the oracle's own copy of the rules (rules.md section 1, rulesets/ipledge-*.toml) ------------

ET = ZoneInfo("America/New_York")
LA = ZoneInfo("America/Los_Angeles")
LEGACY = "ipledge/2023-03"
MOD = "ipledge/2026-mod"
ERAS = {
    LEGACY: datetime(2026, 6, 1, tzinfo=UTC),
    MOD: datetime(2027, 1, 5, tzinfo=UTC),
}
CAN = "can_get_pregnant"
CANNOT = "cannot_get_pregnant"

ALLOWED_REASONS = {
    CAN: frozenset({"REPRODUCTIVE_POTENTIAL", "TUBAL_LIGATION"}),
    CANNOT: frozenset(
        {"NO_UTERUS", "HYSTERECTOMY", "BILATERAL_OOPHORECTOMY", "POSTMENOPAUSAL_CONFIRMED"}
    ),
}
ALL_REASONS = [*sorted(ALLOWED_REASONS[CAN] | ALLOWED_REASONS[CANNOT]), "NOT_A_REASON"]
DEFAULT_REASON = {CAN: "REPRODUCTIVE_POTENTIAL", CANNOT: "HYSTERECTOMY"}
CONSENTS = {
    CAN: frozenset({"PATIENT_INFORMATION_CONSENT", "BIRTH_DEFECTS_CONSENT"}),
    CANNOT: frozenset({"PATIENT_INFORMATION_CONSENT"}),
}
PRIMARY = frozenset(
    {
        "tubal_ligation",
        "partner_vasectomy",
        "iud",
        "combined_oral_contraceptive",
        "hormonal_patch",
        "hormonal_implant",
        "hormonal_injection",
        "vaginal_ring",
    }
)
SECONDARY = frozenset(
    {
        "male_condom",
        "diaphragm_with_spermicide",
        "cervical_cap_with_spermicide",
        "vaginal_sponge_with_spermicide",
    }
)
NOT_ACCEPTABLE = "progestin_only_pill"
ABSTINENCE = "abstinence"
ALL_METHODS = [*sorted(PRIMARY | SECONDARY), NOT_ACCEPTABLE, ABSTINENCE]

MAX_DAYS_SUPPLY = 30
MIN_SENSITIVITY = 25  # a test counts when it detects hCG at this concentration or lower
PRETREATMENT_SPACING_DAYS = 19
TEST_WINDOW_DAYS = 7  # Day 1 = specimen date, last day = Day 1 + 6, "today" in US Eastern time
LEAD_IN_DAYS = 30
LEGACY_LOCKOUT_DAYS = 19
LEGACY_CANNOT_WINDOW_DAYS = 30  # Day 1 = office visit, last day = visit + 29
PRETREATMENT_KINDS = frozenset({"screening", "confirmation"})
_MEDICAL = {(s, c) for s in ("lab", "clinic") for c in (False, True)}
# (setting, CLIA) pairs under which each kind of test counts; home never counts here because the
# prescriber never opts in to home testing in this test.
VALID_SETTINGS: dict[str, dict[str, set[tuple[str, bool]]]] = {
    LEGACY: {
        "screening": _MEDICAL,
        "confirmation": {("lab", True)},
        "monthly": {("lab", True)},
    },
    MOD: {"screening": _MEDICAL, "confirmation": _MEDICAL, "monthly": _MEDICAL},
}

EXPECTED_ERRORS = (Refused, InvalidInput, Conflict, NotFound)
CLINIC_ROLES = frozenset({"prescriber", "designee"})


@dataclass(frozen=True)
class HcgTest:
    id: str
    kind: str
    specimen: date
    setting: str
    clia: bool
    sensitivity: float
    result: str
    cycle: int


@dataclass(frozen=True)
class RxRec:
    id: str
    cycle: int
    written_on: date
    office_visit_on: date
    days_supply: int
    refills: int
    seq: int


@dataclass
class AuthRec:
    number: str
    rx: str
    cycle: int
    issued_at: datetime
    do_not_dispense_after: datetime | None
    reversed: bool = False
    dispensed: bool = False

    @property
    def live(self) -> bool:
        return not self.reversed and not self.dispensed


def sufficient(methods: set[str] | frozenset[str]) -> bool:
    """Two acceptable methods with at least one primary, or abstinence."""
    if ABSTINENCE in methods:
        return True
    acceptable = methods & (PRIMARY | SECONDARY)
    return len(acceptable) >= 2 and bool(methods & PRIMARY)


# --- strategies ---------------------------------------------------------------------------------

clinic_actor = st.sampled_from(["prescriber"] * 4 + ["designee", "designee", "pharmacist"])
patient_actor = st.sampled_from(["patient"] * 4 + ["prescriber", "pharmacist"])
pharmacy_actor = st.sampled_from(["pharmacist"] * 6 + ["prescriber"])
start_offset = st.one_of(st.integers(30, 45), st.integers(0, 45))
method_sets = st.one_of(
    st.tuples(st.sampled_from(sorted(PRIMARY)), st.sampled_from(sorted(PRIMARY | SECONDARY))),
    st.tuples(st.sampled_from(sorted(SECONDARY)), st.sampled_from(sorted(SECONDARY))),
    st.tuples(st.sampled_from(sorted(PRIMARY)), st.just(NOT_ACCEPTABLE)),
    st.just((ABSTINENCE,)),
    st.lists(st.sampled_from(ALL_METHODS), min_size=1, max_size=4).map(tuple),
).map(lambda names: tuple(dict.fromkeys(names)))
contraception_entries = method_sets.flatmap(
    lambda names: st.tuples(*[st.tuples(st.just(n), start_offset) for n in names])
)
results = st.sampled_from(["negative"] * 11 + ["positive"])
categories = st.sampled_from([CAN, CAN, CANNOT])
plans = st.sampled_from(["pair", "abstinence", "implant"])


def et_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0, 0), tzinfo=ET).astimezone(UTC)


class SafetyMachine(RuleBasedStateMachine):
    """One patient, one course, the whole world real; the model is what the API accepted."""

    template: ClassVar[Path] = Path()
    workdir: ClassVar[Path] = Path()
    stats: ClassVar[dict[str, int]] = {}

    def __init__(self) -> None:
        super().__init__()
        self.app: Compliance | None = None
        self.path: Path | None = None
        self.clock = FixedClock(ERAS[LEGACY])
        self.ruleset = LEGACY
        self.seq = 0
        self.cycle = 1
        self.category: str | None = None
        self.category_reason: str | None = None
        self.category_seq = 0
        self.consents: set[str] = set()
        self.counselled: set[int] = set()
        self.comprehended: set[int] = set()
        self.contraception: dict[str, date] | None = None
        self.contraception_cycle: int | None = None  # the cycle of the prescriber's entry
        self.prescriber_confirmed: set[str] = set()  # tests the prescriber confirmed
        self.confirmed: dict[int, frozenset[str]] = {}
        self.tests: list[HcgTest] = []
        self.rxs: dict[str, RxRec] = {}
        self.auths: dict[str, AuthRec] = {}
        self.suspended = False
        self.positive_accepted = False
        self.ended = False
        self.dispensed_once = False
        self.issued = 0
        self.log: list[str] = []
        self.kinds: dict[str, int] = {}

    # --- plumbing ---------------------------------------------------------------------------

    @property
    def now(self) -> datetime:
        return self.clock.now()

    def today(self) -> date:
        return self.now.astimezone(ET).date()

    def who(self, role: str) -> tuple[str, str | None]:
        w = self.world
        return {
            "prescriber": (w.prescriber.id, None),
            "designee": (w.designee.id, w.prescriber.id),
            "pharmacist": (w.pharmacist.id, None),
            "patient": (self.patient, None),
        }[role]

    def attempt(self, label: str, call: Callable[[], Any]) -> Any:
        """Call the API; a library refusal is an expected outcome, anything else is a failure."""
        stamp = f"{self.now:%Y-%m-%d %H:%M} UTC / {self.today()} ET"
        try:
            out = call()
        except EXPECTED_ERRORS as exc:
            self.note(f"{stamp}  {label} -> {type(exc).__name__} {getattr(exc, 'reasons', '')}")
            return None
        self.seq += 1
        self.note(f"{stamp}  {label} -> ok")
        return out

    def note(self, line: str) -> None:
        self.log.append(line)
        if currently_in_test_context():
            note(line)

    def check_cycle(self, out: Any) -> None:
        assert out.course.cycle == self.cycle, (out.course.cycle, self.cycle)

    # --- setup and teardown -----------------------------------------------------------------

    @initialize(era=st.sampled_from(sorted(ERAS)), hour=st.integers(0, 23))
    def open_world(self, era: str, hour: int) -> None:
        self.ruleset = era
        self.clock = FixedClock(ERAS[era] + timedelta(hours=hour))
        self.path = self.workdir / f"safety-{uuid.uuid4().hex}.db"
        shutil.copy(self.template, self.path)
        self.app = Compliance.open(f"sqlite:///{self.path}", self.clock)
        self.world: World = build_world(self.app)
        self.patient = self.app.register_patient(
            self.world.prescriber.id, "Pat Patient", "2000-01-01"
        ).patient.id
        out = self.app.enrol(self.world.prescriber.id, self.patient)
        assert out.course.ruleset == era
        self.enrolled_on = out.course.enrolled_on
        self.note(f"era {era}, start {self.now.isoformat()}")

    def teardown(self) -> None:
        if self.app is None:
            return
        try:
            report = self.app.verify_audit(self.world.admin.id)
            assert report.ok, report
        finally:
            self.app.close()
            if self.path is not None:
                self.path.unlink(missing_ok=True)
            self.app = None
            stats = type(self).stats
            stats["runs"] = stats.get("runs", 0) + 1
            stats["runs_with_auth"] = stats.get("runs_with_auth", 0) + (self.issued > 0)
            stats["auths"] = stats.get("auths", 0) + self.issued
            for kind, n in self.kinds.items():
                stats[kind] = stats.get(kind, 0) + n

    # --- the clock --------------------------------------------------------------------------

    @rule(days=st.integers(0, 12), hours=st.integers(0, 23), minutes=st.integers(0, 59))
    def advance(self, days: int, hours: int, minutes: int) -> None:
        self.clock.set(self.now + timedelta(days=days, hours=hours, minutes=minutes))

    @rule(hour=st.integers(0, 23), minute=st.integers(0, 59))
    def wait_for_confirmation_day(self, hour: int, minute: int) -> None:
        """Jump to the first day a confirmation test may be collected (19 days after a test)."""
        earliest = [
            t.specimen for t in self.tests if t.kind in PRETREATMENT_KINDS and self.counts(t)
        ]
        if self.dispensed_once or not earliest:
            return
        day = min(earliest) + timedelta(days=PRETREATMENT_SPACING_DAYS)
        target = et_midnight(max(day, self.today())) + timedelta(hours=hour, minutes=minute)
        if target > self.now:
            self.clock.set(target)

    @rule(days_ahead=st.integers(0, 7), seconds=st.integers(-240, 240))
    def near_eastern_midnight(self, days_ahead: int, seconds: int) -> None:
        target = et_midnight(self.today() + timedelta(days=1 + days_ahead))
        target += timedelta(seconds=seconds)
        if target > self.now:
            self.clock.set(target)

    # --- clinic and patient -----------------------------------------------------------------

    @rule(
        role=clinic_actor,
        category=st.sampled_from([CAN, CANNOT]),
        reason=st.sampled_from(ALL_REASONS),
    )
    def assign_category(self, role: str, category: str, reason: str) -> None:
        actor, obo = self.who(role)
        out = self.attempt(
            f"assign_category({role}, {category}, {reason})",
            lambda: self.app.assign_category(
                actor, self.patient, category, reason, on_behalf_of=obo
            ),
        )
        if out is not None:
            assert reason in ALLOWED_REASONS[category], f"{reason} accepted for {category}"
            self.category, self.category_reason, self.category_seq = category, reason, self.seq
            self.check_cycle(out)

    @rule(
        role=clinic_actor,
        form=st.sampled_from(
            ["PATIENT_INFORMATION_CONSENT", "BIRTH_DEFECTS_CONSENT", "SOME_OTHER_FORM"]
        ),
    )
    def record_consent(self, role: str, form: str) -> None:
        actor, obo = self.who(role)
        out = self.attempt(
            f"record_consent({role}, {form})",
            lambda: self.app.record_consent(actor, self.patient, form, on_behalf_of=obo),
        )
        if out is not None and role in CLINIC_ROLES:
            self.consents.add(form)

    @rule(role=clinic_actor)
    def record_counselling(self, role: str) -> None:
        actor, obo = self.who(role)
        out = self.attempt(
            f"record_counselling({role})",
            lambda: self.app.record_counselling(actor, self.patient, on_behalf_of=obo),
        )
        if out is not None and role in CLINIC_ROLES:
            self.counselled.add(self.cycle)
            self.check_cycle(out)

    @rule(role=patient_actor)
    def record_comprehension(self, role: str) -> None:
        actor, _ = self.who(role)
        out = self.attempt(
            f"record_comprehension({role})",
            lambda: self.app.record_comprehension(actor, self.patient),
        )
        if out is not None and role == "patient":
            self.comprehended.add(self.cycle)
            self.check_cycle(out)

    @rule(role=clinic_actor, entry=contraception_entries)
    def record_contraception(self, role: str, entry: tuple[tuple[str, int], ...]) -> None:
        actor, obo = self.who(role)
        methods = {name: self.today() - timedelta(days=back) for name, back in entry}
        entry_dates = {k: d.isoformat() for k, d in methods.items()}
        out = self.attempt(
            f"record_contraception({role}, {entry_dates})",
            lambda: self.app.record_contraception(
                actor, self.patient, entry_dates, on_behalf_of=obo
            ),
        )
        if out is not None and role in CLINIC_ROLES:
            self.contraception, self.contraception_cycle = methods, self.cycle

    @rule(role=clinic_actor)
    def confirm_patient(self, role: str) -> None:
        """workflows.md 1.1 step 4: the prescriber confirms the latest negative result."""
        actor, obo = self.who(role)
        negatives = sorted(
            (t for t in self.tests if t.result == "negative"), key=lambda t: t.specimen
        )
        out = self.attempt(
            f"confirm_patient({role})",
            lambda: self.app.confirm_patient(actor, self.patient, on_behalf_of=obo),
        )
        if out is None:
            return
        assert role in CLINIC_ROLES, f"{role} confirmed the patient"
        assert negatives, "confirmed with no negative result on file"
        latest = negatives[-1]
        assert not self.suspended, "confirmed on a suspended course"
        assert not self.ended, "confirmed after the end of treatment"
        assert out.record["test"] == latest.id, (out.record, latest.id)
        self.prescriber_confirmed.add(latest.id)

    @rule(role=patient_actor, matching=st.booleans(), other=method_sets)
    def confirm_contraception(self, role: str, matching: bool, other: tuple[str, ...]) -> None:
        actor, _ = self.who(role)
        names = sorted(self.contraception) if matching and self.contraception else list(other)
        out = self.attempt(
            f"confirm_contraception({role}, {names})",
            lambda: self.app.confirm_contraception(actor, self.patient, names),
        )
        if out is not None and role == "patient":
            self.confirmed[self.cycle] = frozenset(names)

    @rule(
        role=clinic_actor,
        kind=st.sampled_from(["screening", "confirmation", "monthly"]),
        back=st.integers(0, 3),
        base=st.sampled_from(["et", "et", "utc", "la"]),
        setting=st.sampled_from(["lab", "lab", "clinic", "home"]),
        clia=st.booleans(),
        sensitivity=st.sampled_from([25, 20, 50]),
        result=results,
    )
    def record_test(
        self,
        role: str,
        kind: str,
        back: int,
        base: str,
        setting: str,
        clia: bool,
        sensitivity: int,
        result: str,
    ) -> None:
        zone = {"et": ET, "utc": UTC, "la": LA}[base]
        specimen = self.now.astimezone(zone).date() - timedelta(days=back)
        self._record_test(role, kind, specimen, setting, clia, sensitivity, result)

    def _record_test(
        self,
        role: str,
        kind: str,
        specimen: date,
        setting: str,
        clia: bool,
        sensitivity: float,
        result: str,
    ) -> None:
        actor, obo = self.who(role)
        out = self.attempt(
            f"record_test({role}, {kind}, {specimen}, {setting}, clia={clia}, "
            f"{sensitivity}, {result})",
            lambda: self.app.record_test(
                actor,
                self.patient,
                kind=kind,
                specimen_date=specimen,
                setting=setting,
                result=result,
                sensitivity_miu_ml=sensitivity,
                clia=clia,
                on_behalf_of=obo,
            ),
        )
        if out is None:
            return
        self.check_cycle(out)
        if result == "positive":
            self.positive_accepted = self.suspended = True
            assert out.course.state == "suspended", out.course.state
        if role in CLINIC_ROLES:
            self.tests.append(
                HcgTest(
                    str(out.record["test"]),
                    kind,
                    specimen,
                    setting,
                    clia,
                    float(sensitivity),
                    result,
                    self.cycle,
                )
            )

    @rule(
        role=st.sampled_from(["prescriber"] * 5 + ["designee"]),
        days=st.integers(28, 31),
        refills=st.sampled_from([0, 0, 0, 1]),
        visit_back=st.sampled_from([0, 0, 0, 0, 5, 28, 29, 30, 31]),
    )
    def prescribe(self, role: str, days: int, refills: int, visit_back: int) -> None:
        self._prescribe(role, days, refills, visit_back)

    def _prescribe(self, role: str, days: int, refills: int, visit_back: int) -> str | None:
        actor, _ = self.who(role)
        written = self.today()
        visit = max(written - timedelta(days=visit_back), self.enrolled_on)
        given_visit = visit if visit != written else None
        out = self.attempt(
            f"prescribe({role}, {days}d, {refills} refills, visit {visit})",
            lambda: self.app.prescribe(
                actor, self.patient, days, refills, office_visit_on=given_visit
            ),
        )
        if out is None:
            return None
        rx = out.prescription
        assert (rx.written_on, rx.office_visit_on, rx.cycle) == (written, visit, self.cycle), rx
        self.rxs[rx.id] = RxRec(rx.id, self.cycle, written, visit, days, refills, self.seq)
        return str(rx.id)

    @rule(gate=st.integers(0, 9), back=st.integers(0, 2))
    def end_treatment(self, gate: int, back: int) -> None:
        if gate:  # rarely: ending closes the course for good
            return
        last_dose = self.today() - timedelta(days=back)
        out = self.attempt(
            f"end_treatment({last_dose})",
            lambda: self.app.end_treatment(self.world.prescriber.id, self.patient, last_dose),
        )
        if out is not None:
            self.ended = True

    @rule(gate=st.integers(0, 9), role=st.sampled_from(["patient", "pharmacist", "designee"]))
    def report_pregnancy(self, gate: int, role: str) -> None:
        if gate:
            return
        actor, obo = self.who(role)
        out = self.attempt(
            f"report_pregnancy({role})",
            lambda: self.app.report_pregnancy(actor, self.patient, on_behalf_of=obo),
        )
        if out is not None:
            self.suspended = True

    # --- pharmacy ---------------------------------------------------------------------------

    def _pick(self, items: list[str], pick: int) -> str:
        return items[-1 - pick % len(items)] if pick < 3 else items[pick % len(items)]

    @rule(
        role=pharmacy_actor,
        pick=st.integers(0, 6),
        supply=st.sampled_from([None, None, None, 14, 29, 30, 31]),
    )
    def request_authorization(self, role: str, pick: int, supply: int | None) -> None:
        if not self.rxs:
            return
        self._request(role, self._pick(list(self.rxs), pick), supply)

    def _request(self, role: str, rx_id: str, supply: int | None = None) -> None:
        actor, _ = self.who(role)
        out = self.attempt(
            f"request_authorization({role}, {rx_id}, days_supply={supply})",
            lambda: self.app.request_authorization(actor, rx_id, days_supply=supply),
        )
        if out is None:
            return
        a = out.authorization
        failures = self.requirement_failures(rx_id, a.test, supply)
        assert not failures, f"authorization {a.number} issued although: {failures}"
        stated = self.rxs[rx_id].days_supply if supply is None else supply
        assert a.days_supply == stated, (a.days_supply, stated)
        self.auths[a.number] = AuthRec(
            a.number, rx_id, self.cycle, self.now, a.do_not_dispense_after
        )
        self.issued += 1
        self.check_cycle(out)
        kind = f"{self.ruleset} {self.category} {'later' if self.dispensed_once else 'first'}"
        self.kinds[kind] = self.kinds.get(kind, 0) + 1

    @rule(role=pharmacy_actor, pick=st.integers(0, 6))
    def reverse_authorization(self, role: str, pick: int) -> None:
        if not self.auths:
            return
        number = self._pick(list(self.auths), pick)
        actor, _ = self.who(role)
        out = self.attempt(
            f"reverse_authorization({role}, {number})",
            lambda: self.app.reverse_authorization(actor, number, "not picked up"),
        )
        if out is not None:
            assert self.auths[number].live, f"reversed a non-live authorization {number}"
            self.auths[number].reversed = True

    @rule(role=pharmacy_actor, pick=st.integers(0, 6))
    def record_dispense(self, role: str, pick: int) -> None:
        if not self.auths:
            return
        self._dispense(role, self._pick(list(self.auths), pick))

    def _dispense(self, role: str, number: str) -> None:
        actor, _ = self.who(role)
        out = self.attempt(
            f"record_dispense({role}, {number})", lambda: self.app.record_dispense(actor, number)
        )
        if out is None:
            return
        auth = self.auths[number]
        assert auth.live, f"dispensed a non-live authorization {number}"
        limit = auth.do_not_dispense_after
        assert limit is None or self.now <= limit, f"dispensed after {limit}"
        auth.dispensed = True
        self.dispensed_once = True
        self.cycle += 1
        self.check_cycle(out)

    # --- the biased rule: everything the current cycle needs, done right --------------------

    @rule(
        category=categories,
        plan=plans,
        finish=st.sampled_from([0, 1, 2, 2]),
        backdate=st.sampled_from([True, True, False]),
    )
    def do_the_paperwork(
        self, category: str, plan: str, finish: int, backdate: bool = False
    ) -> None:
        """Record what the current cycle needs, correctly; with ``backdate``, a screening test
        collected 19-25 days ago is documented first when no spaced earlier test is on file."""
        p = self.world.prescriber.id
        if self.category is None:
            self.assign_category("prescriber", category, DEFAULT_REASON[category])
        category = self.category or category
        for form in sorted(CONSENTS[category] - self.consents):
            self.record_consent("prescriber", form)
        self.record_counselling("prescriber")
        self.record_comprehension("patient")
        if category == CAN:
            start = self.today() - timedelta(days=45)
            methods = {
                "pair": {"iud": start, "male_condom": start},
                "abstinence": {ABSTINENCE: start},
                "implant": {"hormonal_implant": start, "diaphragm_with_spermicide": start},
            }[plan]
            # The prescriber's entry counts for its month only (workflows.md 1.2).
            if self.contraception != methods or self.contraception_cycle != self.cycle:
                entry_dates = {k: d.isoformat() for k, d in methods.items()}
                out = self.attempt(
                    f"record_contraception(prescriber, {entry_dates})",
                    lambda: self.app.record_contraception(p, self.patient, entry_dates),
                )
                if out is not None:
                    self.contraception, self.contraception_cycle = methods, self.cycle
            if self.confirmed.get(self.cycle) != frozenset(self.contraception or ()):
                self.confirm_contraception("patient", True, ())
            today = self.today()
            spaced = today - timedelta(days=PRETREATMENT_SPACING_DAYS)
            earlier = any(
                t.kind in PRETREATMENT_KINDS and self.counts(t) and t.specimen <= spaced
                for t in self.tests
            )
            if not self.dispensed_once and not earlier and backdate:
                back = spaced - timedelta(days=self.seq % 7)
                self._record_test("prescriber", "screening", back, "clinic", False, 25, "negative")
                earlier = True
            kind = "monthly" if self.dispensed_once else "confirmation" if earlier else "screening"
            self._record_test("prescriber", kind, today, "lab", True, 25, "negative")
            self.confirm_patient("prescriber")
        if finish >= 1:
            rx = self._prescribe("prescriber", 30, 0, 0)
            if finish >= 2 and rx is not None:
                self._request("pharmacist", rx)

    # Swarm testing disables a random subset of the rules in each run (each with one random
    # probability p): with the same biased step under k names, a run lacks it with chance
    # E[p^k] = 1/(k+1). The names differ because hypothesis flags rules by function name.

    @rule(category=categories, plan=plans)
    def paperwork_and_authorize(self, category: str, plan: str) -> None:
        self._visit(category, plan)

    @rule(category=categories, plan=plans)
    def monthly_visit(self, category: str, plan: str) -> None:
        self._visit(category, plan)

    @rule(category=categories, plan=plans)
    def another_monthly_visit(self, category: str, plan: str) -> None:
        self._visit(category, plan)

    def _visit(self, category: str, plan: str) -> None:
        """The patient picks up what is authorized, then the clinic documents the (next) cycle
        correctly, prescribes, and the pharmacy asks for an authorization."""
        self.dispense_the_live_authorization()
        self.do_the_paperwork(category, plan, 2, backdate=True)

    @rule()
    def dispense_the_live_authorization(self) -> None:
        live = [a.number for a in self.auths.values() if a.live]
        if live:
            self._dispense("pharmacist", live[0])

    # --- the oracle -------------------------------------------------------------------------

    def counts(self, t: HcgTest) -> bool:
        """A negative test that the ruleset accepts (sensitivity, setting, CLIA)."""
        return (
            t.result == "negative"
            and t.sensitivity <= MIN_SENSITIVITY
            and (t.setting, t.clia) in VALID_SETTINGS[self.ruleset].get(t.kind, set())
        )

    def spaced(self, t: HcgTest) -> bool:
        """Another valid negative pre-treatment test at least 19 days earlier."""
        limit = t.specimen - timedelta(days=PRETREATMENT_SPACING_DAYS)
        return any(
            u.kind in PRETREATMENT_KINDS and self.counts(u) and u.specimen <= limit
            for u in self.tests
        )

    def lead_in_met(self, t: HcgTest) -> bool:
        if self.contraception is None:
            return False
        limit = t.specimen - timedelta(days=LEAD_IN_DAYS)
        return sufficient({m for m, start in self.contraception.items() if start <= limit})

    def lockout_respected(self, t: HcgTest, today: date) -> bool:
        """2023-03: after the FIRST confirmation window closed unused, wait 19 days."""
        if self.ruleset != LEGACY:
            return True
        confirmations = sorted(
            (
                u
                for u in self.tests
                if u.kind in PRETREATMENT_KINDS and self.counts(u) and self.spaced(u)
            ),
            key=lambda u: u.specimen,
        )
        if not confirmations:
            return True
        first = confirmations[0].specimen
        if first >= t.specimen or today <= first + timedelta(days=TEST_WINDOW_DAYS - 1):
            return True
        return t.specimen >= first + timedelta(days=LEGACY_LOCKOUT_DAYS)

    def requirement_failures(
        self, rx_id: str, test_id: str | None, supply: int | None = None
    ) -> list[str]:
        """Every requirement of an authorization now that the model shows was not met. iPLEDGE
        judges the patient's status at the request (workflows.md 1.1), so every requirement is
        judged now, whatever the prescription's date; ``supply`` is the days' supply the
        pharmacy states (None: the prescription's)."""
        failures: list[str] = []
        today = self.today()
        if self.suspended or self.positive_accepted:
            failures.append("course suspended (positive test or pregnancy)")
        if self.ended:
            failures.append("treatment ended")
        category = self.category
        if category is None:
            return [*failures, "no category assigned"]
        if self.category_reason not in ALLOWED_REASONS[category]:
            failures.append(f"reason {self.category_reason} cannot support {category}")
        if CONSENTS[category] - self.consents:
            failures.append(f"consents missing: {sorted(CONSENTS[category] - self.consents)}")
        if category == CANNOT and self.ruleset == MOD:
            if not self.counselled:
                failures.append("counselling never documented")
        elif self.cycle not in self.counselled:
            failures.append(f"counselling not documented in cycle {self.cycle}")
        # Comprehension questions are for patients who can get pregnant only (workflows.md 2).
        if category == CAN and self.cycle not in self.comprehended:
            failures.append(f"comprehension not done in cycle {self.cycle}")
        rx = self.rxs.get(rx_id)
        if rx is None:
            return [*failures, f"prescription {rx_id} was never accepted"]
        if rx.days_supply > MAX_DAYS_SUPPLY:
            failures.append(f"{rx.days_supply} days' supply")
        stated = rx.days_supply if supply is None else supply
        if stated > min(MAX_DAYS_SUPPLY, rx.days_supply):
            failures.append(f"{stated} days' supply stated on a {rx.days_supply}-day prescription")
        if rx.refills:
            failures.append(f"{rx.refills} refills")
        if rx.cycle != self.cycle:
            failures.append(f"prescription of cycle {rx.cycle}, course in cycle {self.cycle}")
        latest = max((r for r in self.rxs.values() if r.cycle == rx.cycle), key=lambda r: r.seq)
        if latest.id != rx.id:
            failures.append(f"prescription superseded by {latest.id}")
        if rx.seq < self.category_seq:
            failures.append("prescription written before the category was (re)assigned")
        if category == CAN:
            failures += self.pcgp_failures(today, test_id)
            failures += self.relied_on_failures(rx)
        elif self.ruleset == LEGACY:
            last = rx.office_visit_on + timedelta(days=LEGACY_CANNOT_WINDOW_DAYS - 1)
            if not rx.office_visit_on <= today <= last:
                failures.append(f"today {today} outside {rx.office_visit_on}..{last}")
        return failures

    def pcgp_failures(self, today: date, test_id: str | None) -> list[str]:
        failures: list[str] = []
        names = frozenset(self.contraception or ())
        if not sufficient(names):
            failures.append(f"contraception insufficient: {sorted(names)}")
        if self.contraception_cycle != self.cycle:
            failures.append(
                f"the prescriber's methods entry is of cycle {self.contraception_cycle}, "
                f"not {self.cycle}"
            )
        if self.confirmed.get(self.cycle) != names:
            failures.append(
                f"patient confirmed {sorted(self.confirmed.get(self.cycle, ()))} in cycle "
                f"{self.cycle}, prescriber entered {sorted(names)}"
            )
        last_day = timedelta(days=TEST_WINDOW_DAYS - 1)
        in_window = [
            t for t in self.tests if self.counts(t) and t.specimen <= today <= t.specimen + last_day
        ]
        if self.dispensed_once:
            qualifying = [t for t in in_window if t.kind == "monthly" and t.cycle == self.cycle]
        else:
            qualifying = [
                t
                for t in in_window
                if t.kind in PRETREATMENT_KINDS
                and self.spaced(t)
                and self.lead_in_met(t)
                and self.lockout_respected(t, today)
            ]
        if not qualifying:
            failures.append(f"no qualifying negative test whose window covers {today}")
        elif test_id not in {t.id for t in qualifying}:
            failures.append(f"the authorization cites test {test_id}, which does not qualify")
        elif test_id not in self.prescriber_confirmed:
            failures.append(f"the prescriber did not confirm the patient for test {test_id}")
        return failures

    def relied_on_failures(self, rx: RxRec) -> list[str]:
        """reason-codes.md: the latest negative test of the step on file at the request is
        the one relied on (iPLEDGE judges at the request, so it may be collected after the
        prescription was written); a test the rules do not accept is never hidden behind an
        older acceptable one."""
        if self.dispensed_once:
            step = [t for t in self.tests if t.kind == "monthly" and t.cycle == self.cycle]
        else:
            step = [t for t in self.tests if t.kind in PRETREATMENT_KINDS]
        candidates = [t for t in step if t.result == "negative"]
        if not candidates:
            return []
        latest = sorted(candidates, key=lambda t: t.specimen)[-1]  # stable: entry order on ties
        if self.counts(latest):
            return []
        return [f"the latest test {latest.id} ({latest.setting}, CLIA {latest.clia}) is refused"]

    # --- invariants -------------------------------------------------------------------------

    @invariant()
    def at_most_one_live_authorization(self) -> None:
        if self.app is None:
            return
        live = [a for a in self.auths.values() if a.live]
        assert len(live) <= 1, f"live authorizations: {[a.number for a in live]}"
        status = self.app.status(self.world.prescriber.id, self.patient)
        assert status.course.cycle == self.cycle, (status.course.cycle, self.cycle)
        engine_live = status.open_authorization
        if engine_live is None:
            for a in live:  # the engine reverses open authorizations when it suspends a course
                assert self.suspended, f"authorization {a.number} vanished"
                a.reversed = True
        else:
            assert [a.number for a in live] == [engine_live.number], engine_live


SETTINGS = settings(
    max_examples=30,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def _machine_class(template: Path, workdir: Path) -> type[SafetyMachine]:
    class Machine(SafetyMachine):
        pass

    Machine.template, Machine.workdir, Machine.stats = template, workdir, {}
    return Machine


def test_no_authorization_without_its_requirements(sqlite_template: Path, tmp_path: Path) -> None:
    machine = _machine_class(sqlite_template, tmp_path)
    run_state_machine_as_test(machine, settings=SETTINGS)
    stats = machine.stats
    print(
        f"\nstateful safety: {stats.get('runs_with_auth', 0)}/{stats.get('runs', 0)} runs issued "
        f"at least one authorization, {stats.get('auths', 0)} authorizations in all"
    )
    for kind in sorted(k for k in stats if k.startswith("ipledge")):
        print(f"  {kind}: {stats[kind]}")


# --- the fixed good sequences: the happy path issues authorizations, so the test is not vacuous


def _happy_course(machine: SafetyMachine, category: str) -> None:
    """Three monthly cycles done by the book; each request must be authorized and dispensed."""
    machine.do_the_paperwork(category=category, plan="pair", finish=0 if category == CAN else 2)
    if category == CAN:
        machine.advance(days=20, hours=0, minutes=0)
        machine.do_the_paperwork(category=category, plan="pair", finish=2)
    for cycle in (1, 2, 3):
        assert machine.issued == cycle, machine.issued
        machine._dispense("pharmacist", next(a.number for a in machine.auths.values() if a.live))
        assert machine.cycle == cycle + 1
        machine.advance(days=27, hours=3, minutes=0)
        machine.do_the_paperwork(category=category, plan="pair", finish=2)
        machine.at_most_one_live_authorization()


@pytest.mark.parametrize("category", [CAN, CANNOT])
@pytest.mark.parametrize("era", [LEGACY, MOD])
def test_happy_path_issues_authorizations(
    sqlite_template: Path, tmp_path: Path, era: str, category: str
) -> None:
    machine = _machine_class(sqlite_template, tmp_path)()
    try:
        machine.open_world(era=era, hour=15)
        _happy_course(machine, category)
        assert machine.issued == 4
    finally:
        machine.teardown()
    assert machine.stats["runs_with_auth"] == 1
    assert machine.stats["auths"] == 4


MODEL_FIELDS = (
    "counselled",
    "comprehended",
    "consents",
    "confirmed",
    "contraception",
    "contraception_cycle",
    "prescriber_confirmed",
    "tests",
    "rxs",
    "category_reason",
    "positive_accepted",
    "dispensed_once",
)


def test_oracle_has_teeth(sqlite_template: Path, tmp_path: Path) -> None:
    """After a lawful authorization, removing any one requirement from the model is noticed."""
    machine = _machine_class(sqlite_template, tmp_path)()
    try:
        machine.open_world(era=LEGACY, hour=15)
        machine.do_the_paperwork(category=CAN, plan="pair", finish=0)
        machine.advance(days=20, hours=0, minutes=0)
        machine.do_the_paperwork(category=CAN, plan="pair", finish=1)
        rx = next(reversed(machine.rxs))
        test = machine.tests[-1].id
        assert machine.requirement_failures(rx, test) == []
        assert machine.requirement_failures(rx, "another-test")
        assert machine.requirement_failures(rx, test, 31)
        assert machine.requirement_failures(rx, test, 29) == []
        first = machine.tests[0]
        mutations: dict[str, Callable[[SafetyMachine], object]] = {
            "counselling": lambda m: m.counselled.clear(),
            "comprehension": lambda m: m.comprehended.clear(),
            "consent": lambda m: m.consents.discard("BIRTH_DEFECTS_CONSENT"),
            "confirmation": lambda m: m.confirmed.clear(),
            "prescriber confirmation": lambda m: m.prescriber_confirmed.clear(),
            "last month's entry": lambda m: setattr(m, "contraception_cycle", m.cycle - 1),
            "methods": lambda m: setattr(m, "contraception", {"male_condom": m.today()}),
            "lead-in": lambda m: setattr(
                m, "contraception", {"iud": m.today(), ABSTINENCE: m.today()}
            ),
            "spacing": lambda m: setattr(m, "tests", m.tests[-1:]),
            "CLIA": lambda m: setattr(
                m, "tests", [first, *(replace(t, clia=False) for t in m.tests[1:])]
            ),
            "latest relied on": lambda m: m.tests.append(
                replace(m.tests[-1], id="later-home", setting="home", clia=False)
            ),
            "window": lambda m: m.clock.set(et_midnight(m.today() + timedelta(days=7))),
            "not yet": lambda m: m.clock.set(et_midnight(m.today()) - timedelta(seconds=1)),
            "positive": lambda m: setattr(m, "positive_accepted", True),
            "reason": lambda m: setattr(m, "category_reason", "HYSTERECTOMY"),
            "supply": lambda m: m.rxs.update({rx: replace(m.rxs[rx], days_supply=31)}),
            "refills": lambda m: m.rxs.update({rx: replace(m.rxs[rx], refills=1)}),
            "treating": lambda m: setattr(m, "dispensed_once", True),
        }
        for name, mutate in mutations.items():
            saved = {f: copy.deepcopy(getattr(machine, f)) for f in MODEL_FIELDS}
            now = machine.now
            mutate(machine)
            assert machine.requirement_failures(rx, test), name
            for field, value in saved.items():
                setattr(machine, field, value)
            machine.clock.set(now)
        assert machine.requirement_failures(rx, test) == []
    finally:
        machine.teardown()


@pytest.mark.parametrize("era", [LEGACY, MOD])
def test_reclassified_patient_needs_pretreatment_tests_and_lead_in(
    sqlite_template: Path, tmp_path: Path, era: str
) -> None:
    """rules.md 1.4/1.5: two pre-treatment tests and one month of contraception before
    treatment as a patient who can get pregnant. Outside the stateful oracle as specified, whose
    pre-treatment conditions end at the first dispense whatever the category then was."""
    machine = _machine_class(sqlite_template, tmp_path)()
    try:
        machine.open_world(era=era, hour=15)
        machine.do_the_paperwork(category=CANNOT, plan="pair", finish=2)
        machine.dispense_the_live_authorization()
        assert machine.cycle == 2
        machine.advance(days=3, hours=0, minutes=0)
        machine.assign_category("prescriber", CAN, "REPRODUCTIVE_POTENTIAL")
        machine.record_consent("prescriber", "BIRTH_DEFECTS_CONSENT")
        machine.record_contraception("prescriber", (("iud", 0), ("male_condom", 0)))
        machine.confirm_contraception("patient", True, ())
        machine.record_counselling("prescriber")
        machine.record_comprehension("patient")
        machine._record_test("prescriber", "monthly", machine.today(), "lab", True, 25, "negative")
        machine.confirm_patient("prescriber")
        assert [t.kind for t in machine.tests] == ["monthly"]
        # Writing needs no test (iPLEDGE judges at the request); the request is refused.
        rx = machine._prescribe("prescriber", 30, 0, 0)
        assert rx is not None
        with pytest.raises(Refused) as caught:
            machine.app.request_authorization(machine.world.pharmacist.id, rx)
        assert {"PRETREATMENT_TESTS_INCOMPLETE", "CONTRACEPTION_LEAD_IN_NOT_MET"} <= set(
            caught.value.reasons
        )
    finally:
        machine.teardown()
