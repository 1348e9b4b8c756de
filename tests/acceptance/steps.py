"""Common sequences of steps, as the documents describe them (workflows.md §1.1, §2, §4)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.acceptance.model import EU, IPLEDGE, LENA, UK, Builder, Expect, allow
from tests.acceptance.registry import PROGRAMMES

METHODS = ("iud", "male_condom")
# Where each programme's usual pharmacy is: the clinic's own city.
DEFAULT_PHARMACY = {
    "ipledge/2026-mod": "ny",
    "ipledge/2023-03": "ny",
    EU: "brussels",
    UK: "london",
    LENA: "ny",
}
CONSENTS = {
    "can_get_pregnant": {
        "ipledge": ("PATIENT_INFORMATION_CONSENT", "BIRTH_DEFECTS_CONSENT"),
        "eu-iso": ("ACKNOWLEDGEMENT_FORM",),
        "uk-iso": ("ACKNOWLEDGEMENT_OF_RISK",),
        "lenalidomide": ("PATIENT_PHYSICIAN_AGREEMENT",),
    },
    "cannot_get_pregnant": {
        "ipledge": ("PATIENT_INFORMATION_CONSENT",),
        "eu-iso": (),
        "uk-iso": ("ACKNOWLEDGEMENT_OF_RISK",),
        "lenalidomide": ("PATIENT_PHYSICIAN_AGREEMENT",),
    },
}
CAN_REASON = {
    "ipledge": "REPRODUCTIVE_POTENTIAL",
    "eu-iso": "CHILDBEARING_POTENTIAL",
    "lenalidomide": "REPRODUCTIVE_POTENTIAL",
}


def programme(b: Builder) -> str:
    return PROGRAMMES[b.ruleset]


def ipledge(b: Builder) -> bool:
    return b.ruleset in IPLEDGE


def methods_from(b: Builder, day: int, methods: tuple[str, ...] = METHODS) -> dict[str, str]:
    """Methods started ``day`` days from the base (negative: before enrolment)."""
    return {m: b.iso(day) for m in methods}


def enrol_pcgp(
    b: Builder,
    *,
    lead_start: int = -35,
    methods: tuple[str, ...] = METHODS,
    screening: bool = True,
    patient: str = "p",
) -> None:
    """§1.1 step 1 (iPLEDGE) or §4.1 (EU/UK): registration, category with its reason,
    consent, counselling, the prescriber's methods; under iPLEDGE the screening test in the
    office on day 0, its result entered the same afternoon."""
    prog = programme(b)
    b.add("prescriber", 0, "09:00", "register_patient", patient=patient)
    b.add(
        "prescriber", 0, "09:05", "enrol", allow(ruleset=b.ruleset), programme=prog, patient=patient
    )
    reason = CAN_REASON.get(prog, "CHILDBEARING_POTENTIAL")
    b.add(
        "prescriber",
        0,
        "09:10",
        "category",
        category="can_get_pregnant",
        reason=reason,
        patient=patient,
    )
    for n, form in enumerate(CONSENTS["can_get_pregnant"][prog]):
        b.add("prescriber", 0, f"09:{15 + n}", "consent", form=form, patient=patient)
    b.add("prescriber", 0, "09:20", "counsel", patient=patient)
    b.add(
        "prescriber",
        0,
        "09:25",
        "contraception",
        methods=methods_from(b, lead_start, methods),
        patient=patient,
    )
    if screening and ipledge(b):
        b.add("lab", 0, "09:30", "collect", label=f"{patient}-screening")
        b.add(
            "designee",
            0,
            "16:00",
            "result",
            label=f"{patient}-screening",
            kind="screening",
            setting="clinic",
            clia=False,
            patient=patient,
        )


def enrol_pcngp(b: Builder, reason: str = "NO_UTERUS", patient: str = "p") -> None:
    """§2 / §4.6: category with a supporting reason, consent, counselling."""
    prog = programme(b)
    b.add("prescriber", 0, "09:00", "register_patient", patient=patient)
    b.add(
        "prescriber", 0, "09:05", "enrol", allow(ruleset=b.ruleset), programme=prog, patient=patient
    )
    b.add(
        "prescriber",
        0,
        "09:10",
        "category",
        category="cannot_get_pregnant",
        reason=reason,
        patient=patient,
    )
    for n, form in enumerate(CONSENTS["cannot_get_pregnant"][prog]):
        b.add("prescriber", 0, f"09:{15 + n}", "consent", form=form, patient=patient)
    b.add("prescriber", 0, "09:20", "counsel", patient=patient)


def specimen(b: Builder, day: int, hhmm: str, label: str, zone: str | None = None) -> None:
    """The lab (or office) collects a specimen: its local date is the test's Day 1."""
    b.add("lab", day, hhmm, "collect", zone=zone, label=label)


def result(b: Builder, day: int, hhmm: str, label: str, kind: str, **kw: Any) -> None:
    b.add("designee", day, hhmm, "result", label=label, kind=kind, **kw)


def visit(
    b: Builder,
    day: int,
    hhmm: str = "10:00",
    *,
    rx: str | None = "rx",
    counsel: bool = True,
    methods: bool = True,
    lead_start: int = -35,
    days: int = 30,
    expect: Expect | None = None,
) -> None:
    """§1.1 step 3 / §1.2: the prescriber counsels, confirms this month's methods (enters them
    again) and writes the prescription, in that order here."""
    h, m = (int(x) for x in hhmm.split(":"))
    if counsel:
        b.add("prescriber", day, f"{h:02d}:{m:02d}", "counsel")
    if methods:
        b.add(
            "prescriber",
            day,
            f"{h:02d}:{m + 5:02d}",
            "contraception",
            methods=methods_from(b, lead_start),
        )
    if rx is not None:
        b.add("prescriber", day, f"{h:02d}:{m + 10:02d}", "prescribe", expect, rx=rx, days=days)


def patient_month(
    b: Builder, day: int, hhmm: str = "20:00", methods: tuple[str, ...] = METHODS
) -> None:
    """§1.1 step 5: the patient answers the questions and enters her methods at home."""
    b.add("patient", day, hhmm, "comprehension")
    h, m = (int(x) for x in hhmm.split(":"))
    b.add("patient", day, f"{h:02d}:{m + 5:02d}", "confirm_methods", methods=list(methods))


def confirm(b: Builder, day: int, hhmm: str = "17:00", expect: Expect | None = None) -> None:
    """§1.1 step 4: the prescriber confirms the patient once the negative result is in."""
    b.add("prescriber", day, hhmm, "confirm_patient", expect)


def rma(
    b: Builder,
    day: int,
    hhmm: str,
    expect: Expect,
    *,
    pharmacy: str | None = None,
    rx: str = "rx",
    auth: str = "auth",
    days_supply: int | None = None,
    pickup: bool = True,
) -> None:
    """§1.1 step 6: the pharmacist asks for an authorization; the patient picks up a minute
    later when it is issued. The days' supply is stated only where a timeline is about it:
    a request that states none dispenses what the prescription says."""
    pharmacy = pharmacy or DEFAULT_PHARMACY[b.ruleset]
    kw: dict[str, Any] = {"days_supply": days_supply} if days_supply is not None else {}
    b.add("pharmacist", day, hhmm, "authorize", expect, pharmacy=pharmacy, rx=rx, auth=auth, **kw)
    if pickup and expect.outcome == "ALLOW":
        h, m = (int(x) for x in hhmm.split(":"))
        b.add("pharmacist", day, f"{h:02d}:{m + 1:02d}", "pickup", pharmacy=pharmacy, auth=auth)


def check(
    b: Builder,
    day: int,
    hhmm: str,
    expect: Expect,
    *,
    pharmacy: str | None = None,
    rx: str = "rx",
    days_supply: int | None = None,
) -> None:
    pharmacy = pharmacy or DEFAULT_PHARMACY[b.ruleset]
    kw: dict[str, Any] = {"days_supply": days_supply} if days_supply is not None else {}
    b.add("pharmacist", day, hhmm, "check_dispense", expect, pharmacy=pharmacy, rx=rx, **kw)


def ipledge_first_month(b: Builder, d: int = 21, rx: str = "rx") -> None:
    """§1.1 steps 3-6 in the usual order: specimen and visit on day ``d``, result the next
    morning, the prescriber's confirmation, the patient that evening, the RMA on ``d + 2``."""
    specimen(b, d, "09:30", "conf")
    visit(b, d, "10:00", rx=rx)
    result(b, d + 1, "08:30", "conf", "confirmation")
    confirm(b, d + 1, "09:00")
    patient_month(b, d + 1, "19:00")
    rma(b, d + 2, "11:00", allow(last_day=b.d(d + 6), dnda_on=b.d(d + 6)), rx=rx, auth=f"a-{rx}")


def ipledge_month(b: Builder, d: int, rx: str, *, kind: str = "monthly") -> None:
    """§1.2: a following month, same order."""
    specimen(b, d, "09:30", f"t-{rx}")
    visit(b, d, "10:00", rx=rx)
    result(b, d + 1, "08:30", f"t-{rx}", kind)
    confirm(b, d + 1, "09:00")
    patient_month(b, d + 1, "19:00")


def eu_initiation(
    b: Builder, *, lead_start: int = -35, methods: tuple[str, ...] = ("iud",)
) -> None:
    """§4.1-4.2: initiation, a medically supervised test, the prescription the same day."""
    enrol_pcgp(b, lead_start=lead_start, methods=methods, screening=False)
    specimen(b, 0, "10:00", "t0")
    result(b, 0, "11:00", "t0", "confirmation", setting="clinic", clia=False)


def days(b: Builder, n: int) -> timedelta:
    return b.d(n) - b.base


__all__ = ["EU", "UK"]
