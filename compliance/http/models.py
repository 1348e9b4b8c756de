"""Request bodies. Unknown fields are refused, so nobody slips an ``actor`` into a body; values
are checked again by the engine, which names the field in a 422."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


Ref = Field(min_length=1, max_length=64)


class DispenseCheck(Body):
    prescription: str = Ref
    days_supply: int | None = Field(default=None, description="The days' supply to dispense.")


class AuthorizationRequest(DispenseCheck):
    pass


class Reversal(Body):
    reason: str = Field(min_length=1, max_length=200)


class PrescriptionCheck(Body):
    patient: str = Ref
    days_supply: int | None = None
    refills: int = 0


class Prescription(Body):
    patient: str = Ref
    days_supply: int
    refills: int = 0
    written_on: date | None = None
    office_visit_on: date | None = None


class Enrolment(Body):
    patient: str = Ref
    programme: str = Field(default="ipledge", max_length=64)
    enrolled_on: date | None = None


class Category(Body):
    category: str = Field(max_length=64)
    reason: str = Field(max_length=64)


class Consent(Body):
    form: str = Field(max_length=64)
    signed_on: date | None = None


class TestResult(Body):
    kind: str = Field(max_length=32)
    specimen_date: date
    setting: str = Field(max_length=32)
    result: str = Field(max_length=32)
    sensitivity_miu_ml: float = 25
    clia: bool = False


class PrescriptionLookup(Body):
    """What a paper prescription and the patient in front of the pharmacist give."""

    patient: str = Field(description="The patient's programme id (PAT-...).")
    date_of_birth: date
    prescriber_npi: str = Field(description="The prescriber's NPI as written on the prescription.")


class Counselling(Body):
    counselled_on: date | None = None


class Contraception(Body):
    methods: dict[str, date] = Field(description="Each method with the date it started.")


class NewClient(Body):
    name: str = Field(min_length=1, max_length=200)
    kind: str = Field(description="pharmacy-terminal, prescriber-system or administrator")
    party: str = Ref
    scopes: list[str] | None = None
    lifetime_days: int = 365


class Rotation(Body):
    overlap_days: int = 7
    lifetime_days: int = 365


class ClockOverride(Body):
    enabled: bool


class RulesSchedule(Body):
    ruleset: str = Field(max_length=64)
    effective: date


# --- the prescriber's further steps, patients and grants ----------------------------------------


class NewPatient(Body):
    name: str = Field(min_length=1, max_length=200)
    date_of_birth: date
    external_ids: dict[str, str] | None = Field(
        default=None, description='Identifiers by system, e.g. {"MRN": "A-123"}.'
    )


class PatientCorrection(Body):
    """A misspelt name or a wrong date of birth; the audit event keeps both values."""

    reason: str = Field(min_length=1, max_length=200)
    name: str | None = Field(default=None, max_length=200)
    date_of_birth: date | None = None


class ExternalId(Body):
    system: str = Field(min_length=1, max_length=64)
    value: str = Field(min_length=1, max_length=128)


class TreatmentEnd(Body):
    last_dose_on: date


class PregnancyReport(Body):
    reported_on: date | None = None
    note: str | None = Field(default=None, max_length=500)


class Note(Body):
    note: str | None = Field(default=None, max_length=500)


class Resumption(Body):
    note: str = Field(min_length=1, max_length=500)


class TestSchedule(Body):
    schedule: str = Field(max_length=64)


class HomeTesting(Body):
    enabled: bool
    procedure: str | None = Field(default=None, max_length=500)
    on: date | None = None


class NewDesignee(Body):
    name: str = Field(min_length=1, max_length=200)


class Grant(Body):
    scopes: list[str] | None = Field(
        default=None, description="Actions the grant covers; default: every delegable action."
    )
    expires_at: datetime | None = Field(default=None, description="An instant with its offset.")


class GrantAmendment(Body):
    reason: str = Field(min_length=1, max_length=200)
    scopes: list[str] | None = None
    expires_at: datetime | None = None
    clear_expiry: bool = False


# --- administration of parties ------------------------------------------------------------------


class PrescriberZone(Body):
    time_zone: str | None = Field(
        max_length=64, description="The clinic's IANA zone, e.g. Europe/Lisbon; null clears it."
    )


class NewPrescriber(Body):
    name: str = Field(min_length=1, max_length=200)
    npi: str = Field(min_length=1, max_length=32, description="The identifier (NPI by default).")
    id_system: str = Field(default="NPI", max_length=32)
    time_zone: str | None = Field(default=None, max_length=64)


class NewPharmacy(Body):
    name: str = Field(min_length=1, max_length=200)
    ncpdp: str = Field(min_length=1, max_length=32, description="The identifier (NCPDP).")
    time_zone: str = Field(max_length=64)
    id_system: str = Field(default="NCPDP", max_length=32)


class PharmacyActivation(Body):
    expires_on: date | None = None


class NewPharmacist(Body):
    name: str = Field(min_length=1, max_length=200)
    pharmacy: str = Ref
