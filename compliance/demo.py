"""The demonstration run by the Quickstart, on a real database file.

It uses only the public API, as an embedding host would, and prints what happens at each step:
the parties and their permissions, then whole treatment courses on a simulated clock (every
event it writes says so), printing each gate decision. Run again on the same database, it reuses
its administrator and adds a fresh set of parties and patients.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from compliance.api.service import Compliance
from compliance.audit.signing import Ed25519Signer, configured_signer
from compliance.domain.gates import Decision
from compliance.errors import Conflict, NotPermitted, Refused
from compliance.training import SimulatedTime, describe, fresh_ncpdp, fresh_npi

DEMO_ADMIN_KEY = "demo.administrator"
#: The demonstration's own database, used when none is named.
DEMO_URL = "sqlite:///compliance-demo.db"


def administrator(app: Compliance, actor: str | None) -> tuple[str, bool]:
    """The administrator to act as: given, remembered from an earlier run, or created now.

    Refuses, before anything is written, a database that was not made for training: the demo
    fills a database with fictional people that could never be removed from its audit trail.
    """
    training = app.is_training()
    if training is False:
        raise Conflict(
            f"{app.schema_status().url} is not a training database, and the demonstration "
            "writes fictional prescribers, pharmacies and patients: run 'compliance demo' "
            "without --db to use its own database (compliance-demo.db), or name a new file"
        )
    if training is None:
        admin = app.initialize("Demo Administrator", training=True, remember_as=DEMO_ADMIN_KEY)
        return admin.id, True
    app.migrate()
    if actor:
        return actor, False
    remembered = app.remembered(DEMO_ADMIN_KEY)
    if remembered is None:
        raise Conflict(
            "this training database was not made by the demonstration: name its "
            "administrator with --as ADMIN_ID"
        )
    return remembered, False


def run(app: Compliance, actor: str | None, say: Callable[[str], None]) -> bool:
    """Walk the foundation; True when the audit trail verifies at the end."""
    admin, created = administrator(app, actor)
    status = app.schema_status()
    say(f"Database {status.url} migrated to schema {app.schema_status().current}.")
    say(
        f"1. Administrator {admin} {'created' if created else 'reused'}"
        f"{' (a training database: simulated clocks allowed)' if created else ''}."
    )

    prescriber = app.register_prescriber(admin, "Dr Maria Okafor", fresh_npi())
    prescriber = app.activate_prescriber(admin, prescriber.id)
    say(
        f"2. Prescriber {prescriber.id} (NPI {prescriber.external_id}) registered and "
        f"{prescriber.status}."
    )

    designee = app.register_designee(prescriber.id, "Sam Lee")
    grant = app.grant_designee(prescriber.id, designee.id, prescriber.id)
    say(
        f"3. {prescriber.id} registered designee {designee.id} and granted: "
        f"{', '.join(grant.scopes)}."
    )

    pharmacy = app.register_pharmacy(admin, "Sunset Pharmacy", fresh_ncpdp(), "America/Los_Angeles")
    pharmacy = app.activate_pharmacy(admin, pharmacy.id)
    pharmacist = app.register_pharmacist(admin, "Alex Rivera, PharmD", pharmacy.id)
    say(
        f"4. Pharmacy {pharmacy.id} ({pharmacy.time_zone}) activated until "
        f"{pharmacy.activation_expires_on}; pharmacist {pharmacist.id} registered."
    )

    first = app.register_patient(designee.id, "Jordan Smith", "2004-05-17", {"MRN": fresh_ncpdp()})
    second = app.register_patient(designee.id, "Casey Nguyen", "1979-11-02")
    same = app.register_patient(designee.id, "jordan smith", "2004-05-17")
    say(
        f"5. Designee {designee.id}, for {prescriber.id}, registered patients "
        f"{first.patient.id}, {second.patient.id} and {same.patient.id}."
    )
    if same.possible_duplicates:
        say(
            f"   Warning for {same.patient.id}: same name and date of birth as "
            f"{', '.join(same.possible_duplicates)}; a person decides, nothing is merged."
        )

    found = app.get_patient(prescriber.id, first.patient.id)
    say(f"6. Prescriber {prescriber.id} looked up {found.id} ({found.name}), registered for them.")

    def attempt(label: str, call: Callable[[], object]) -> None:
        try:
            call()
        except NotPermitted as refusal:
            say(f"   REFUSED {label}: {', '.join(refusal.reasons)} (recorded in the audit trail)")
        else:
            say(f"   unexpectedly allowed: {label}")

    say("7. Refusals:")
    attempt(
        f"{pharmacist.id} registering a prescriber",
        lambda: app.register_prescriber(pharmacist.id, "Dr Nobody", fresh_npi()),
    )
    attempt(
        f"{pharmacist.id} looking up {first.patient.id} by id (a pharmacy finds a patient only"
        " through the prescription in hand)",
        lambda: app.get_patient(pharmacist.id, first.patient.id),
    )
    app.suspend_prescriber(admin, prescriber.id, note="licence under review")
    attempt(
        f"{designee.id} registering a patient for suspended {prescriber.id}",
        lambda: app.register_patient(designee.id, "Robin Park", "1990-01-01"),
    )
    app.reinstate_prescriber(admin, prescriber.id, note="review closed")
    say(f"   {prescriber.id} suspended, then reinstated.")

    courses_ok = walk_courses(app, admin, prescriber.id, pharmacist.id, say)

    # A training run signs with the configured key, else with a key that lives only for the demo.
    signer = configured_signer() or Ed25519Signer.generate()
    point = app.checkpoint_audit(admin, signer)
    report = app.verify_audit(admin, public_key=signer.public_key)
    say(f"Audit checkpoint over {point.chains} chains, digest {point.digest[:16]}...")
    state = "intact" if report.ok else f"BROKEN: {report.first_break}"
    say(f"Audit trail {state}: {report.events} events in {report.chains} chains.")
    say("")
    say("Explore:")
    say(f"   compliance --as {admin} audit log --subject {first.patient.id}")
    say(f"   compliance --as {prescriber.id} due --within 30")
    say(f"   compliance --as {admin} audit verify")
    return report.ok and courses_ok


def _decision(say: Callable[[str], None], label: str, decision: Decision) -> None:
    say(f"   {label}: {describe(decision)}")


class _Sim:
    """Simulated time over the demonstration's database, counted in days from day 0."""

    def __init__(self, app: Compliance, say: Callable[[str], None]) -> None:
        self.start = app.clock.now().replace(hour=15, minute=0, second=0, microsecond=0)
        self.time = SimulatedTime(app, self.start)
        self.app = self.time.app
        self.say = say

    def at(self, days: int) -> str:
        self.time.move_to(self.start + timedelta(days=days))
        return (self.start.date() + timedelta(days=days)).isoformat()

    def refused(self, label: str, call: Callable[[], object]) -> None:
        try:
            call()
        except Refused as refusal:
            self.say(f"   {label}: REFUSE ({', '.join(refusal.reasons)})")
        else:
            self.say(f"   {label}: unexpectedly allowed")


def walk_courses(
    app: Compliance, admin: str, prescriber: str, pharmacist: str, say: Callable[[str], None]
) -> bool:
    """Whole courses on a simulated clock, printing every gate decision."""
    sim = _Sim(app, say)
    first = _can_get_pregnant(sim, prescriber, pharmacist)
    second = _cannot_get_pregnant(sim, prescriber, pharmacist)
    _positive_test(sim, prescriber)
    uk = _uk_patient(sim, admin, prescriber)
    return first == second == "completed" and uk == "dispensed"


def _can_get_pregnant(s: _Sim, prescriber: str, pharmacist: str) -> str:
    sim, at, say = s.app, s.at, s.say
    day0 = s.start.date()
    say("")
    say("A patient who can get pregnant, through a whole course (simulated clock):")
    ana = sim.register_patient(prescriber, "Ana Flores", "2003-08-21").patient.id
    course = sim.enrol(prescriber, ana).course
    say(f"Day 0 ({at(0)}): {ana} enrolled under {course.ruleset}.")
    sim.assign_category(prescriber, ana, "can_get_pregnant", "REPRODUCTIVE_POTENTIAL")
    for form in ("PATIENT_INFORMATION_CONSENT", "BIRTH_DEFECTS_CONSENT"):
        sim.record_consent(prescriber, ana, form)
    started = (day0 - timedelta(days=12)).isoformat()
    sim.record_contraception(prescriber, ana, {"iud": started, "male_condom": started})
    sim.record_test(
        prescriber, ana, kind="screening", specimen_date=at(0), setting="clinic", result="negative"
    )
    _decision(say, "may prescribe now?", sim.check_prescribe(prescriber, ana))
    say(f"Day 19 ({at(19)}): confirmation visit: counselling; the prescription is written at the")
    say("   visit, before the lab result is back (iPLEDGE judges the status at the request).")
    sim.record_counselling(prescriber, ana)
    rx = sim.prescribe(prescriber, ana, 30).prescription
    assert rx is not None
    say(f"   prescription {rx.id} written for {rx.days_supply} days.")
    _decision(say, "may the pharmacy dispense?", sim.check_dispense(pharmacist, rx.id))
    say(f"Day 20 ({at(20)}): the result (specimen of day 19) is entered; the prescriber confirms")
    say("   the patient; that evening the patient answers and enters her methods.")
    sim.record_test(
        prescriber, ana, kind="confirmation", specimen_date=at(19), setting="lab", result="negative"
    )
    sim.confirm_patient(prescriber, ana)
    sim.record_comprehension(ana, ana)
    sim.confirm_contraception(ana, ana, ["iud", "male_condom"])
    _decision(say, "may the pharmacy dispense?", sim.check_dispense(pharmacist, rx.id))
    auth = sim.request_authorization(pharmacist, rx.id, days_supply=30).authorization
    assert auth is not None
    say(
        f"   authorization {auth.formatted} for {auth.days_supply} days, do not dispense after "
        f"{auth.do_not_dispense_after} (UTC)"
    )
    s.refused(
        "a second authorization for the same cycle",
        lambda: sim.request_authorization(pharmacist, rx.id),
    )
    sim.record_dispense(pharmacist, auth.number)
    say("   dispensed; cycle 2 begins.")
    return _later_cycles(s, prescriber, pharmacist, ana)


def _later_cycles(s: _Sim, prescriber: str, pharmacist: str, ana: str) -> str:
    sim, at, say = s.app, s.at, s.say
    say(f"Day 47 ({at(47)}): monthly visit: test, counselling, the prescriber's methods entry")
    say("   for this month, prescription, confirmation; the patient's answers.")
    sim.record_test(
        prescriber, ana, kind="monthly", specimen_date=at(47), setting="clinic", result="negative"
    )
    sim.record_counselling(prescriber, ana)
    started = (s.start.date() - timedelta(days=12)).isoformat()
    sim.record_contraception(prescriber, ana, {"iud": started, "male_condom": started})
    rx2 = sim.prescribe(prescriber, ana, 30).prescription
    assert rx2 is not None
    sim.confirm_patient(prescriber, ana)
    sim.record_comprehension(ana, ana)
    sim.confirm_contraception(ana, ana, ["iud", "male_condom"])
    say(f"Day 54 ({at(54)}), Day 8 of the window:")
    s.refused("authorization", lambda: sim.request_authorization(pharmacist, rx2.id))
    say(f"Day 55 ({at(55)}): a new monthly test, confirmed; the same prescription, never")
    say("   dispensed, is authorized in the new window and dispensed.")
    sim.record_test(
        prescriber, ana, kind="monthly", specimen_date=at(55), setting="clinic", result="negative"
    )
    sim.confirm_patient(prescriber, ana)
    auth3 = sim.request_authorization(pharmacist, rx2.id).authorization
    assert auth3 is not None
    sim.record_dispense(pharmacist, auth3.number)
    say(f"Day 85 ({at(85)}): last dose; end-of-treatment test; post-treatment month begins.")
    sim.end_treatment(prescriber, ana, at(85))
    sim.record_test(
        prescriber,
        ana,
        kind="end_of_treatment",
        specimen_date=at(85),
        setting="clinic",
        result="negative",
    )
    at(120)
    flags = ", ".join(f.code for f in sim.due(prescriber, 7) if f.patient == ana) or "none"
    say(f"Day 120 ({at(120)}): flags for {ana}: {flags}")
    done = sim.record_test(
        prescriber,
        ana,
        kind="post_treatment",
        specimen_date=at(120),
        setting="clinic",
        result="negative",
    ).course
    say(f"   post-treatment test negative: course {done.state}.")

    return done.state


def _cannot_get_pregnant(s: _Sim, prescriber: str, pharmacist: str) -> str:
    sim, at, say = s.app, s.at, s.say
    say("")
    say("A patient who cannot get pregnant (the shorter path):")
    day = at(0)
    ben = sim.register_patient(prescriber, "Ben Okoro", "1998-02-14").patient.id
    sim.enrol(prescriber, ben)
    say(f"Day 0 ({day}): {ben} enrolled.")
    sim.assign_category(prescriber, ben, "cannot_get_pregnant", "NO_UTERUS")
    sim.record_consent(prescriber, ben, "PATIENT_INFORMATION_CONSENT")
    sim.record_counselling(prescriber, ben)
    sim.record_comprehension(ben, ben)
    _decision(say, "may prescribe now?", sim.check_prescribe(prescriber, ben, 30))
    for month in range(2):
        rx_b = sim.prescribe(prescriber, ben, 30).prescription
        assert rx_b is not None
        auth_b = sim.request_authorization(pharmacist, rx_b.id).authorization
        assert auth_b is not None
        sim.record_dispense(pharmacist, auth_b.number)
        say(f"   cycle {month + 1}: {rx_b.id} authorized {auth_b.formatted} and dispensed.")
        at(30 * (month + 1))
    ended = sim.end_treatment(prescriber, ben, at(60)).course
    say(f"Day 60 ({at(60)}): last dose; course {ended.state}.")

    return ended.state


def _positive_test(s: _Sim, prescriber: str) -> None:
    sim, at, say = s.app, s.at, s.say
    say("")
    say("A positive test mid-course suspends at once:")
    cleo = sim.register_patient(prescriber, "Cleo Martin", "2001-12-03").patient.id
    sim.enrol(prescriber, cleo)
    sim.assign_category(prescriber, cleo, "can_get_pregnant", "TUBAL_LIGATION")
    suspended = sim.record_test(
        prescriber,
        cleo,
        kind="screening",
        specimen_date=at(60),
        setting="clinic",
        result="positive",
    ).course
    say(
        f"   {cleo}: course {suspended.state}; flags: "
        + ", ".join(f.code for f in sim.due(prescriber, 7) if f.patient == cleo)
    )
    s.refused("may prescribe?", lambda: sim.prescribe(prescriber, cleo, 30))


def _uk_patient(s: _Sim, admin: str, prescriber: str) -> str:
    """The same engine under the UK programme: no central authorization, the prescription's
    validity judged in the pharmacy's own zone, the test dated against the prescription."""
    sim, at, say = s.app, s.at, s.say
    say("")
    say("The UK isotretinoin programme (uk-iso), same engine, different ruleset:")
    pharmacy = sim.register_pharmacy(admin, "Camden Pharmacy", fresh_ncpdp(), "Europe/London")
    sim.activate_pharmacy(admin, pharmacy.id)
    pharmacist = sim.register_pharmacist(admin, "Morgan Lee", pharmacy.id).id
    day = at(70)
    olivia = sim.register_patient(prescriber, "Olivia Hart", "2004-05-06").patient.id
    course = sim.enrol(prescriber, olivia, programme="uk-iso").course
    say(f"Day 70 ({day}): {olivia} enrolled under {course.ruleset}.")
    sim.assign_category(prescriber, olivia, "can_get_pregnant", "CHILDBEARING_POTENTIAL")
    sim.record_consent(prescriber, olivia, "ACKNOWLEDGEMENT_OF_RISK")
    since = (s.start.date() - timedelta(days=90)).isoformat()
    sim.record_contraception(prescriber, olivia, {"no_expected_risk_agreement": since})
    sim.record_counselling(prescriber, olivia)
    sim.confirm_contraception(olivia, olivia, ["no_expected_risk_agreement"])
    say("   a documented 'no expected risk of pregnancy' agreement stands in for contraception.")
    sim.record_test(
        prescriber,
        olivia,
        kind="confirmation",
        specimen_date=at(70),
        setting="clinic",
        result="negative",
    )
    say(f"Day 74 ({at(74)}): the test is four days old.")
    _decision(say, "may prescribe today?", sim.check_prescribe(prescriber, olivia, 30))
    rx = sim.prescribe(prescriber, olivia, 30, written_on=at(73)).prescription
    assert rx is not None
    say(f"   prescription {rx.id} dated {rx.written_on} (three days after the test) recorded.")
    say(f"Day 79 ({at(79)}): the last day of its 7-day validity, in London.")
    record = sim.request_authorization(pharmacist, rx.id).authorization
    assert record is not None
    say(f"   {record.kind.replace('_', ' ')} {record.formatted}: no central service is asked.")
    return sim.record_dispense(pharmacist, record.number).course.state
