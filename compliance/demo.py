"""The demonstration run by the Quickstart: the foundation at work on a real database file.

It uses only the public API, as an embedding host would, and prints what happens at each step.
Run again on the same database, it reuses its administrator and adds a fresh set of parties.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from compliance.api.service import Compliance
from compliance.domain.validate import npi_with_check_digit
from compliance.errors import Conflict, NotPermitted

DEMO_ADMIN_KEY = "demo.administrator"


def _fresh_npi() -> str:
    return npi_with_check_digit("1" + "".join(secrets.choice("0123456789") for _ in range(8)))


def _fresh_ncpdp() -> str:
    return "".join(secrets.choice("0123456789") for _ in range(7))


def administrator(app: Compliance, actor: str | None) -> tuple[str, bool]:
    """The administrator to act as: given, remembered from an earlier run, or created now."""
    if actor:
        return actor, False
    app.migrate()
    remembered = app.remembered(DEMO_ADMIN_KEY)
    if remembered:
        return remembered, False
    try:
        admin = app.initialize("Demo Administrator", remember_as=DEMO_ADMIN_KEY)
    except Conflict:
        raise Conflict(
            "this database was set up by 'compliance init'; run the demo with --as ADMIN_ID "
            "or point it at a new file with --db sqlite:///demo.db"
        ) from None
    return admin.id, True


def run(app: Compliance, actor: str | None, say: Callable[[str], None]) -> bool:
    """Walk the foundation; True when the audit trail verifies at the end."""
    status = app.schema_status()
    admin, created = administrator(app, actor)
    say(f"Database {status.url} migrated to schema {app.schema_status().current}.")
    say(f"1. Administrator {admin} {'created' if created else 'reused'}.")

    prescriber = app.register_prescriber(admin, "Dr Maria Okafor", _fresh_npi())
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

    pharmacy = app.register_pharmacy(
        admin, "Sunset Pharmacy", _fresh_ncpdp(), "America/Los_Angeles"
    )
    pharmacy = app.activate_pharmacy(admin, pharmacy.id)
    pharmacist = app.register_pharmacist(admin, "Alex Rivera, PharmD", pharmacy.id)
    say(
        f"4. Pharmacy {pharmacy.id} ({pharmacy.time_zone}) activated until "
        f"{pharmacy.activation_expires_on}; pharmacist {pharmacist.id} registered."
    )

    first = app.register_patient(designee.id, "Jordan Smith", "2004-05-17", {"MRN": _fresh_ncpdp()})
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

    found = app.get_patient(pharmacist.id, first.patient.id)
    say(f"6. Pharmacist {pharmacist.id} looked up {found.id} ({found.name}).")

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
        lambda: app.register_prescriber(pharmacist.id, "Dr Nobody", _fresh_npi()),
    )
    app.suspend_prescriber(admin, prescriber.id, note="licence under review")
    attempt(
        f"{designee.id} registering a patient for suspended {prescriber.id}",
        lambda: app.register_patient(designee.id, "Robin Park", "1990-01-01"),
    )
    app.reinstate_prescriber(admin, prescriber.id, note="review closed")
    say(f"   {prescriber.id} suspended, then reinstated.")

    point = app.checkpoint_audit(admin)
    report = app.verify_audit(admin)
    say(f"8. Audit checkpoint over {point.chains} chains, digest {point.digest[:16]}...")
    state = "intact" if report.ok else f"BROKEN: {report.first_break}"
    say(f"   Audit trail {state}: {report.events} events in {report.chains} chains.")
    say("")
    say("Explore:")
    say(f"   compliance --as {admin} audit log --subject {first.patient.id}")
    say(f"   compliance --as {admin} prescriber list")
    say(f"   compliance --as {admin} audit verify")
    return report.ok
