"""The timeline format: a TOML file of dated events replayed against a throwaway database.

Everything that can be checked without a database is checked here, before one exists, so a
mistake is reported naming the event, the field and the problem, and leaves nothing behind.
``docs/simulate.md`` documents the format; its operations table is generated from ``OPERATIONS``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from compliance.domain import reasons as rc
from compliance.domain import validate as v
from compliance.errors import InvalidInput
from compliance.programs import loader
from compliance.programs.model import Setting, TestKind

OUTCOMES = ("ALLOW", "REFUSE", "CONFLICT", "SKIPPED")
ROLES = ("prescriber", "pharmacist", "patient")
DEFAULT_BIRTH_DATE = date(2000, 1, 1)
FIRST_YEAR, LAST_YEAR = 1900, 9000  # room for the engine's date arithmetic either side
TOP_LEVEL = ("title", "description", "programme", "ruleset", "zone", "parties", "event")
EVENT_KEYS = ("at", "op", "patient", "by", "expect", "expect_codes")


@dataclass(frozen=True)
class Param:
    """One parameter of an operation; ``default`` is how the docs describe its absence."""

    name: str
    kind: str
    meaning: str
    required: bool = False
    default: str = ""


@dataclass(frozen=True)
class Operation:
    name: str
    summary: str
    call: str  # the facade method it drives
    actor: str  # the role that acts unless the event says ``by``
    params: tuple[Param, ...] = ()
    patient: bool = True

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)


_EVENT_DATE = "the event's date"


def _choices(kind: Any) -> str:
    return ", ".join(f"`{k.value}`" for k in kind)


_AUTHORIZATION = Param(
    "authorization",
    "label",
    "the `label` of a `dispense` event",
    default="the patient's latest `dispense` event",
)

OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation(
            "enrol",
            "Open a treatment course; it is governed by the timeline's ruleset.",
            "enrol",
            "prescriber",
            (Param("enrolled_on", "date", "enrolment date", default="today"),),
        ),
        Operation(
            "category",
            "Assign (or change) the reproductive-potential category and its reason.",
            "assign_category",
            "prescriber",
            (
                Param("category", "text", "e.g. `can_get_pregnant`", required=True),
                Param("reason", "text", "e.g. `REPRODUCTIVE_POTENTIAL`", required=True),
            ),
        ),
        Operation(
            "test_schedule",
            "Choose the ruleset's named testing schedule (e.g. `irregular_cycles`).",
            "set_test_schedule",
            "prescriber",
            (Param("schedule", "text", "a schedule the ruleset names", required=True),),
        ),
        Operation(
            "consent",
            "Record one signed consent form.",
            "record_consent",
            "prescriber",
            (
                Param("form", "text", "e.g. `PATIENT_INFORMATION_CONSENT`", required=True),
                Param("signed_on", "date", "date signed", default="today"),
            ),
        ),
        Operation(
            "counselling",
            "Record this cycle's counselling.",
            "record_counselling",
            "prescriber",
            (Param("counselled_on", "date", "date counselled", default="today"),),
        ),
        Operation(
            "comprehension",
            "The patient completes this cycle's comprehension questions.",
            "record_comprehension",
            "patient",
        ),
        Operation(
            "contraception",
            "The prescriber's entry of the patient's methods, each with its start date.",
            "record_contraception",
            "prescriber",
            (
                Param(
                    "methods",
                    "methods",
                    "table of method = start date, e.g. `{ iud = 2026-09-01 }`",
                    required=True,
                ),
            ),
        ),
        Operation(
            "confirm",
            "The patient confirms the methods they use this cycle.",
            "confirm_contraception",
            "patient",
            (
                Param(
                    "methods",
                    "method list",
                    'method names, e.g. `["iud", "male_condom"]`',
                    default="the methods of the patient's latest `contraception` event",
                ),
            ),
        ),
        Operation(
            "test",
            "Record a pregnancy test; a positive one suspends the course.",
            "record_test",
            "prescriber",
            (
                Param(
                    "kind",
                    "choice",
                    f"{_choices(TestKind)}, or a programme's own name (EU/UK `pretreatment`)",
                    required=True,
                ),
                Param("setting", "choice", _choices(Setting), required=True),
                Param("result", "choice", "`negative` or `positive`", default="`negative`"),
                Param(
                    "specimen_date", "date", "date the specimen was collected", default=_EVENT_DATE
                ),
                Param("sensitivity_miu_ml", "number", "sensitivity in mIU/mL", default="25"),
                Param("clia", "flag", "done in a CLIA-certified lab", default="false"),
            ),
        ),
        Operation(
            "confirm_patient",
            "The prescriber confirms the patient for the latest negative result (iPLEDGE).",
            "confirm_patient",
            "prescriber",
        ),
        Operation(
            "prescribe",
            "Write a prescription if the prescribe gate passes.",
            "prescribe",
            "prescriber",
            (
                Param("days_supply", "whole number", "days' supply", required=True),
                Param("refills", "whole number", "refills", default="0"),
                Param("written_on", "date", "date written", default="today"),
                Param("office_visit_on", "date", "office visit date", default="`written_on`"),
                Param("label", "label", "a name later events use to refer to it", default="none"),
            ),
        ),
        Operation(
            "check",
            "Evaluate a gate without writing anything.",
            "check_prescribe / check_dispense",
            "prescriber (pharmacist for the dispense gate)",
            (
                Param("gate", "choice", "`prescribe` or `dispense`", default="`prescribe`"),
                Param(
                    "days_supply",
                    "whole number",
                    "days' supply (prescribe gate: written; dispense gate: dispensed)",
                    default="none (dispense gate: the prescription's)",
                ),
                Param("refills", "whole number", "prescribe gate: refills", default="0"),
                Param(
                    "prescription",
                    "label",
                    "dispense gate: the `label` of a `prescribe` event",
                    default="the patient's latest `prescribe` event",
                ),
            ),
        ),
        Operation(
            "dispense",
            "The pharmacy requests a dispense authorization.",
            "request_authorization",
            "pharmacist",
            (
                Param(
                    "prescription",
                    "label",
                    "the `label` of a `prescribe` event",
                    default="the patient's latest `prescribe` event",
                ),
                Param(
                    "days_supply",
                    "whole number",
                    "days' supply being dispensed",
                    default="the prescription's",
                ),
                Param("label", "label", "a name later events use to refer to it", default="none"),
            ),
        ),
        Operation(
            "pickup",
            "The pharmacy records that the patient picked up.",
            "record_dispense",
            "pharmacist",
            (_AUTHORIZATION,),
        ),
        Operation(
            "reverse",
            "The pharmacy reverses an authorization.",
            "reverse_authorization",
            "pharmacist",
            (
                _AUTHORIZATION,
                Param("reason", "text", "why", default="`not picked up`"),
            ),
        ),
        Operation(
            "end",
            "End treatment with the last dose.",
            "end_treatment",
            "prescriber",
            (Param("last_dose_on", "date", "date of the last dose", default=_EVENT_DATE),),
        ),
        Operation(
            "pregnancy",
            "Report a pregnancy; the course is suspended.",
            "report_pregnancy",
            "prescriber",
            (
                Param("reported_on", "date", "date reported", default="today"),
                Param("note", "text", "free text", default="none"),
            ),
        ),
        Operation(
            "resume",
            "A prescriber resumes a suspended course.",
            "resume_course",
            "prescriber",
            (Param("note", "text", "why the course may resume", required=True),),
        ),
        Operation(
            "home_testing",
            "The prescriber opts in to (or out of) home pregnancy tests.",
            "set_home_testing",
            "prescriber",
            (
                Param("enabled", "flag", "opt in or out", default="true"),
                Param("procedure", "text", "anti-falsification procedure (to opt in)"),
                Param("on", "date", "date it takes effect", default="today"),
            ),
            patient=False,
        ),
        Operation(
            "status",
            "The course's state, checklist, prescribe decision and flags.",
            "status",
            "prescriber",
        ),
    )
}


# --- the parsed timeline ----------------------------------------------------------------------


@dataclass(frozen=True)
class Prescriber:
    name: str
    display: str
    # The clinic's own IANA zone (None: none configured; the ruleset's zone governs).
    zone: str | None = None


@dataclass(frozen=True)
class Pharmacy:
    name: str
    display: str
    zone: str
    expires_on: date | None


@dataclass(frozen=True)
class Pharmacist:
    name: str
    display: str
    pharmacy: str


@dataclass(frozen=True)
class Patient:
    name: str
    display: str
    date_of_birth: date


@dataclass(frozen=True)
class Expectation:
    outcome: str | None
    codes: tuple[str, ...]

    def held(self, outcome: str, codes: tuple[str, ...]) -> bool:
        return (self.outcome is None or self.outcome == outcome) and set(self.codes) <= set(codes)

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "codes": list(self.codes)}


@dataclass(frozen=True)
class Event:
    index: int  # from 1, in the order written
    at: datetime  # aware, in the timeline's zone
    op: str
    patient: str | None
    by: str
    params: Mapping[str, Any]
    expect: Expectation | None
    uses: str | None = None  # "prescription" or "authorization": what the event acts on
    source: int | None = None  # the labelled event that made it (else the patient's latest)


@dataclass(frozen=True)
class Timeline:
    source: str
    title: str | None
    description: str | None
    programme: str
    programme_given: bool
    ruleset: str | None
    zone: ZoneInfo
    prescribers: Mapping[str, Prescriber]
    pharmacies: Mapping[str, Pharmacy]
    pharmacists: Mapping[str, Pharmacist]
    patients: Mapping[str, Patient]
    events: tuple[Event, ...]

    def ruleset_for(self, override: str | None = None) -> str:
        """The ruleset to replay under: the override, the file's, or the one in force on the
        first event's date under the packaged schedule."""
        chosen = override if override is not None else self.ruleset
        if chosen is None:
            first_day = self.events[0].at.date()
            try:
                return loader.in_force(self.programme, first_day, loader.default_schedule()).id
            except InvalidInput as exc:
                raise InvalidInput("ruleset", exc.problem) from None
        ruleset = loader.get(chosen)
        if self.programme_given and ruleset.programme != self.programme:
            raise InvalidInput(
                "ruleset",
                f"{ruleset.id} is a {ruleset.programme} ruleset; the timeline is for "
                f"{self.programme}",
            )
        return ruleset.id


# --- reading ----------------------------------------------------------------------------------


def load(path: Path) -> Timeline:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput("TIMELINE", f"cannot read {path}: {exc}") from None
    return parse(text, str(path))


def parse(text: str, source: str = "<timeline>") -> Timeline:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput("TIMELINE", f"{source} is not valid TOML: {exc}") from None
    return from_data(data, source)


def from_data(data: dict[str, Any], source: str = "<timeline>") -> Timeline:
    """A timeline from TOML already read (the values ``tomllib`` produces)."""
    return _Reader(data, source).timeline()


class _Reader:
    def __init__(self, data: dict[str, Any], source: str) -> None:
        self.data = data
        self.source = source

    def timeline(self) -> Timeline:
        data = self.data
        _no_unknown_keys("timeline", data, TOP_LEVEL)
        title = _optional_text("title", data.get("title"))
        description = _optional_text("description", data.get("description"), 4000)
        programmes = sorted({r.programme for r in loader.all_rulesets().values()})
        programme_given = "programme" in data
        ruleset = data.get("ruleset")
        if ruleset is not None:
            ruleset = loader.get(v.text("ruleset", ruleset, max_len=64)).id
        own = loader.get(ruleset).programme if ruleset else "ipledge"
        programme = data.get("programme", own)
        if programme not in programmes:
            raise InvalidInput("programme", f"must be one of {', '.join(programmes)}")
        if ruleset is not None and own != programme:
            raise InvalidInput(
                "ruleset", f"{ruleset} is a {own} ruleset; the timeline is for {programme}"
            )
        zone = ZoneInfo(v.time_zone("zone", data.get("zone", "UTC")))
        self.zone = zone
        parties = data.get("parties", {})
        if not isinstance(parties, dict):
            raise InvalidInput("parties", "must be a table")
        _no_unknown_keys(
            "parties", parties, ("prescribers", "pharmacies", "pharmacists", "patients")
        )
        prescribers = self._prescribers(parties)
        pharmacies = self._pharmacies(parties)
        pharmacists = self._pharmacists(parties, pharmacies)
        patients = self._declared_patients(parties)
        raw_events = data.get("event")
        if not isinstance(raw_events, list) or not raw_events:
            raise InvalidInput("event", "the timeline has no [[event]] entries")
        reading = _Events(prescribers, pharmacists, patients, zone)
        events = tuple(reading.event(i, raw) for i, raw in enumerate(raw_events, start=1))
        self._names_unique(prescribers, pharmacies, pharmacists, reading.patients)
        return Timeline(
            source=self.source,
            title=title,
            description=description,
            programme=programme,
            programme_given=programme_given,
            ruleset=ruleset,
            zone=zone,
            prescribers=prescribers,
            pharmacies=pharmacies,
            pharmacists=pharmacists,
            patients=reading.patients,
            events=events,
        )

    def _entries(self, parties: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
        table = parties.get(kind, {})
        if not isinstance(table, dict):
            raise InvalidInput(f"parties.{kind}", "must be a table of name = { ... }")
        entries: dict[str, dict[str, Any]] = {}
        for name, body in table.items():
            where = f"parties.{kind}.{name}"
            _name(where, name)
            if not isinstance(body, dict):
                raise InvalidInput(where, 'must be a table, e.g. { name = "..." }')
            entries[name] = body
        return entries

    def _prescribers(self, parties: dict[str, Any]) -> dict[str, Prescriber]:
        found = {}
        for name, body in self._entries(parties, "prescribers").items():
            where = f"parties.prescribers.{name}"
            _no_unknown_keys(where, body, ("name", "zone"))
            raw = body.get("zone")
            zone = None if raw is None else v.time_zone(f"{where}.zone", raw)
            found[name] = Prescriber(name, _display(where, body, name), zone)
        return found or {"prescriber": Prescriber("prescriber", "Prescriber")}

    def _pharmacies(self, parties: dict[str, Any]) -> dict[str, Pharmacy]:
        found = {}
        for name, body in self._entries(parties, "pharmacies").items():
            where = f"parties.pharmacies.{name}"
            _no_unknown_keys(where, body, ("name", "zone", "expires_on"))
            zone = v.time_zone(f"{where}.zone", body.get("zone", self.zone.key))
            expires = body.get("expires_on")
            expiry = None if expires is None else _date(f"{where}.expires_on", expires)
            found[name] = Pharmacy(name, _display(where, body, name), zone, expiry)
        return found or {"pharmacy": Pharmacy("pharmacy", "Pharmacy", self.zone.key, None)}

    def _pharmacists(
        self, parties: dict[str, Any], pharmacies: Mapping[str, Pharmacy]
    ) -> dict[str, Pharmacist]:
        found = {}
        only = next(iter(pharmacies)) if len(pharmacies) == 1 else None
        for name, body in self._entries(parties, "pharmacists").items():
            where = f"parties.pharmacists.{name}"
            _no_unknown_keys(where, body, ("name", "pharmacy"))
            pharmacy = body.get("pharmacy", only)
            if pharmacy is None:
                raise InvalidInput(f"{where}.pharmacy", f"name one of {', '.join(pharmacies)}")
            if not isinstance(pharmacy, str) or pharmacy not in pharmacies:
                raise InvalidInput(
                    f"{where}.pharmacy",
                    f"{pharmacy!r} is not a declared pharmacy ({', '.join(pharmacies)})",
                )
            found[name] = Pharmacist(name, _display(where, body, name), pharmacy)
        if found:
            return found
        if only is None:
            raise InvalidInput("parties.pharmacists", "declare the pharmacists of the pharmacies")
        return {"pharmacist": Pharmacist("pharmacist", "Pharmacist", only)}

    def _declared_patients(self, parties: dict[str, Any]) -> dict[str, Patient]:
        found = {}
        for name, body in self._entries(parties, "patients").items():
            where = f"parties.patients.{name}"
            _no_unknown_keys(where, body, ("name", "date_of_birth"))
            born = body.get("date_of_birth")
            dob = DEFAULT_BIRTH_DATE if born is None else _date(f"{where}.date_of_birth", born)
            found[name] = Patient(name, _display(where, body, name), dob)
        return found

    @staticmethod
    def _names_unique(*groups: Mapping[str, object]) -> None:
        seen: set[str] = set()
        for group in groups:
            for name in group:
                if name in seen:
                    raise InvalidInput("parties", f"{name!r} names two parties: use another name")
                seen.add(name)


class _Events:
    """Reads events in order, resolving defaults that depend on earlier events."""

    def __init__(
        self,
        prescribers: Mapping[str, Prescriber],
        pharmacists: Mapping[str, Pharmacist],
        patients: dict[str, Patient],
        zone: ZoneInfo,
    ) -> None:
        self.people = {"prescriber": set(prescribers), "pharmacist": set(pharmacists)}
        self.parties = set(prescribers) | set(pharmacists)
        self.patients = patients
        self.zone = zone
        self.previous: Event | None = None
        self.labels: dict[str, tuple[str, int, str | None]] = {}  # label -> (op, index, patient)
        self.latest: dict[tuple[str, str], int] = {}  # (op, patient) -> index
        self.methods: dict[str, list[str]] = {}  # patient -> latest contraception methods

    def event(self, index: int, raw: object) -> Event:
        where = f"event[{index}]"
        if not isinstance(raw, dict):
            raise InvalidInput(where, "must be a table ([[event]])")
        op_name = raw.get("op")
        if op_name is None:
            raise InvalidInput(f"{where}.op", f"is required: one of {', '.join(OPERATIONS)}")
        if not isinstance(op_name, str) or op_name not in OPERATIONS:
            raise InvalidInput(
                f"{where}.op", f"{op_name!r} is not an operation: one of {', '.join(OPERATIONS)}"
            )
        op = OPERATIONS[op_name]
        allowed = [*EVENT_KEYS, *(p.name for p in op.params)]
        if not op.patient:
            allowed.remove("patient")
        for key in raw:
            if key not in allowed:
                raise InvalidInput(
                    f"{where}.{key}", f"is not a parameter of {op.name}: {', '.join(allowed)}"
                )
        if "at" not in raw:
            raise InvalidInput(
                f"{where}.at", "is required: a date and time, e.g. 2026-11-02T09:00:00"
            )
        at = _instant(f"{where}.at", raw["at"], self.zone)
        if self.previous is not None and at < self.previous.at:
            earlier = self.previous.at.isoformat(sep=" ", timespec="minutes")
            raise InvalidInput(
                f"{where}.at",
                f"{at.isoformat(sep=' ', timespec='minutes')} is before event "
                f"[{self.previous.index}] ({earlier}): events must be in chronological order",
            )
        patient = self._patient(where, raw) if op.patient else None
        params = self._params(where, op, raw, at)
        uses, source = self._source(where, op, params, patient)
        by = self._by(where, op, raw, patient, params)
        expect = _expectation(where, raw)
        params = self._defaults(where, op, params, patient, at)
        event = Event(index, at, op.name, patient, by, params, expect, uses, source)
        label = params.get("label")
        if label is not None:
            if label in self.labels:
                raise InvalidInput(f"{where}.label", f"{label!r} is already used by an event")
            self.labels[label] = (op.name, index, patient)
        if patient is not None:
            self.latest[(op.name, patient)] = index
        if op.name == "contraception" and patient is not None:
            self.methods[patient] = list(params["methods"])
        self.previous = event
        return event

    def _patient(self, where: str, raw: Mapping[str, Any]) -> str:
        name = raw.get("patient")
        if name is None:
            raise InvalidInput(
                f"{where}.patient", "is required: the patient's name in the timeline"
            )
        _name(f"{where}.patient", name)
        if name in self.parties:
            raise InvalidInput(f"{where}.patient", f"{name!r} names a prescriber or pharmacist")
        if name not in self.patients:
            self.patients[name] = Patient(name, name, DEFAULT_BIRTH_DATE)
        return str(name)

    def _params(
        self, where: str, op: Operation, raw: Mapping[str, Any], at: datetime
    ) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for p in op.params:
            if p.name not in raw:
                if p.required:
                    raise InvalidInput(f"{where}.{p.name}", f"is required by {op.name}")
                continue
            params[p.name] = _value(f"{where}.{p.name}", p, raw[p.name])
        if op.name == "home_testing" and params.get("enabled", True) and "procedure" not in params:
            raise InvalidInput(f"{where}.procedure", "is required to opt in to home tests")
        return params

    def _source(
        self, where: str, op: Operation, params: Mapping[str, Any], patient: str | None
    ) -> tuple[str | None, int | None]:
        """What the event acts on (a prescription or an authorization) and, when it names a
        label, the event that made it; without a label the patient's latest one is used."""
        if op.name == "dispense" or (op.name == "check" and _gate(params) == "dispense"):
            made_by, key = "prescribe", "prescription"
        elif op.name in {"pickup", "reverse"}:
            made_by, key = "dispense", "authorization"
        else:
            return None, None
        assert patient is not None
        label = params.get(key)
        if label is None:
            if (made_by, patient) not in self.latest:
                raise InvalidInput(
                    f"{where}.{key}", f"no earlier {made_by} event for patient {patient!r}"
                )
            return key, None
        found = self.labels.get(label)
        if found is None or found[0] != made_by:
            raise InvalidInput(
                f"{where}.{key}", f"{label!r} is not the label of an earlier {made_by} event"
            )
        if found[2] != patient:
            raise InvalidInput(
                f"{where}.{key}", f"{label!r} belongs to patient {found[2]!r}, not {patient!r}"
            )
        return key, found[1]

    def _by(
        self,
        where: str,
        op: Operation,
        raw: Mapping[str, Any],
        patient: str | None,
        params: Mapping[str, Any],
    ) -> str:
        name = raw.get("by")
        if name is not None:
            _name(f"{where}.by", name)
            if name not in self.parties and name not in self.patients:
                raise InvalidInput(
                    f"{where}.by", f"{name!r} is not a declared prescriber, pharmacist or patient"
                )
            return str(name)
        role = op.actor
        if op.name == "check":
            role = "pharmacist" if _gate(params) == "dispense" else "prescriber"
        if role == "patient":
            assert patient is not None
            return patient
        candidates = sorted(self.people[role])
        if len(candidates) != 1:
            raise InvalidInput(
                f"{where}.by", f"several {role}s are declared: name one ({', '.join(candidates)})"
            )
        return candidates[0]

    def _defaults(
        self,
        where: str,
        op: Operation,
        params: dict[str, Any],
        patient: str | None,
        at: datetime,
    ) -> dict[str, Any]:
        day = at.date()
        if op.name == "test":
            params.setdefault("specimen_date", day)
            params.setdefault("result", "negative")
        elif op.name == "end":
            params.setdefault("last_dose_on", day)
        elif op.name == "reverse":
            params.setdefault("reason", "not picked up")
        elif op.name == "confirm" and "methods" not in params:
            assert patient is not None
            if patient not in self.methods:
                raise InvalidInput(
                    f"{where}.methods",
                    f"name the methods: no earlier contraception event for patient {patient!r}",
                )
            params["methods"] = list(self.methods[patient])
        return params


def _gate(params: Mapping[str, Any]) -> str:
    return str(params.get("gate", "prescribe"))


# --- values -----------------------------------------------------------------------------------


def _no_unknown_keys(where: str, table: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for key in table:
        if key not in allowed:
            prefix = "" if where == "timeline" else f"{where}."
            raise InvalidInput(f"{prefix}{key}", f"is not a known key here: {', '.join(allowed)}")


def _name(where: str, value: object) -> str:
    return v.identifier(where, value)


def _display(where: str, body: Mapping[str, Any], name: str) -> str:
    return v.text(f"{where}.name", body.get("name", name))


def _optional_text(where: str, value: object, max_len: int = 200) -> str | None:
    """Free text; line breaks are allowed (a description spans lines), other controls are not."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(where, "must be text")
    lines = [
        v.text(where, line, max_len=max_len) if line.strip() else "" for line in value.split("\n")
    ]
    return "\n".join(lines).strip()


def _date(where: str, value: object) -> date:
    if isinstance(value, datetime):
        raise InvalidInput(where, "must be a date (YYYY-MM-DD), not a date and time")
    day = v.calendar_date(where, value)
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise InvalidInput(where, f"must fall between the years {FIRST_YEAR} and {LAST_YEAR}")
    return day


def _instant(where: str, value: object, zone: ZoneInfo) -> datetime:
    """A local date and time read in ``zone`` (refused in a daylight-saving gap; the earlier of
    two readings in an overlap), or a date and time with its own offset."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidInput(where, f"{value!r} is not a date and time") from None
    if not isinstance(value, datetime):
        raise InvalidInput(where, "must be a date and time, e.g. 2026-11-02T09:00:00")
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise InvalidInput(where, f"must fall between the years {FIRST_YEAR} and {LAST_YEAR}")
    if value.tzinfo is not None:
        try:
            return value.astimezone(zone)
        except OverflowError:
            raise InvalidInput(where, f"{value.isoformat()} is out of range") from None
    local = value.replace(tzinfo=zone)
    try:
        round_trip = local.astimezone(UTC).astimezone(zone)
    except OverflowError:
        raise InvalidInput(where, f"{value.isoformat()} is out of range") from None
    if round_trip.replace(tzinfo=None) != value:
        raise InvalidInput(
            where, f"{value.isoformat(sep=' ')} does not exist in {zone.key} (clocks went forward)"
        )
    return local


def _value(where: str, param: Param, raw: object) -> Any:
    return _KINDS[param.kind](where, param, raw)


def _text_value(where: str, param: Param, raw: object) -> str:
    return v.text(where, raw, max_len=2000)


def _whole(where: str, param: Param, raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise InvalidInput(where, "must be a whole number")
    return raw


def _number(where: str, param: Param, raw: object) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise InvalidInput(where, "must be a number")
    return float(raw)


def _flag(where: str, param: Param, raw: object) -> bool:
    if not isinstance(raw, bool):
        raise InvalidInput(where, "must be true or false")
    return raw


def _kind_names() -> list[str]:
    """The names programmes give kinds of test; the course's ruleset judges each."""
    from compliance.programs.loader import all_rulesets

    return sorted({n for r in all_rulesets().values() for n in r.testing.names})


def _choice(where: str, param: Param, raw: object) -> str:
    options = {
        "kind": [k.value for k in TestKind] + _kind_names(),
        "setting": [s.value for s in Setting],
        "result": ["negative", "positive"],
        "gate": ["prescribe", "dispense"],
    }[param.name]
    if not isinstance(raw, str) or raw.strip().lower() not in options:
        raise InvalidInput(where, f"{raw!r} is not one of {', '.join(options)}")
    return raw.strip().lower()


def _methods(where: str, param: Param, raw: object) -> dict[str, date]:
    if not isinstance(raw, dict) or not raw:
        raise InvalidInput(
            where, "must be a table of method = start date, e.g. { iud = 2026-09-01 }"
        )
    return {str(name): _date(f"{where}.{name}", start) for name, start in raw.items()}


def _method_list(where: str, param: Param, raw: object) -> list[str]:
    if not isinstance(raw, list) or not raw or not all(isinstance(m, str) for m in raw):
        raise InvalidInput(where, 'must be a list of method names, e.g. ["iud", "male_condom"]')
    return [str(m) for m in raw]


def _label(where: str, param: Param, raw: object) -> str:
    return _name(where, raw)


def _date_value(where: str, param: Param, raw: object) -> date:
    return _date(where, raw)


_KINDS: dict[str, Callable[[str, Param, object], Any]] = {
    "text": _text_value,
    "date": _date_value,
    "whole number": _whole,
    "number": _number,
    "flag": _flag,
    "choice": _choice,
    "methods": _methods,
    "method list": _method_list,
    "label": _label,
}


def _expectation(where: str, raw: Mapping[str, Any]) -> Expectation | None:
    if "expect" not in raw and "expect_codes" not in raw:
        return None
    outcome = raw.get("expect")
    if outcome is not None:
        if not isinstance(outcome, str) or outcome.strip().upper() not in OUTCOMES:
            raise InvalidInput(
                f"{where}.expect", f"{outcome!r} is not one of {', '.join(OUTCOMES)}"
            )
        outcome = outcome.strip().upper()
    codes = raw.get("expect_codes", [])
    if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
        raise InvalidInput(f"{where}.expect_codes", "must be a list of reason codes")
    for code in codes:
        if code not in rc.MESSAGES:
            raise InvalidInput(f"{where}.expect_codes", f"{code!r} is not a reason code")
    return Expectation(outcome, tuple(codes))


def operations_markdown() -> str:
    """The operations table of docs/simulate.md."""
    lines: list[str] = []
    for op in OPERATIONS.values():
        lines += [f"### `{op.name}`", "", op.summary, ""]
        calls = " / ".join(f"`Compliance.{c}`" for c in op.call.split(" / "))
        lines += [f"Acts: {op.actor}. Calls {calls}.", ""]
        if op.params:
            lines += ["| parameter | type | meaning | when absent |", "|---|---|---|---|"]
            for p in op.params:
                absent = "**required**" if p.required else (p.default or "none")
                lines.append(f"| `{p.name}` | {p.kind} | {p.meaning} | {absent} |")
        else:
            lines.append("No parameters.")
        lines.append("")
    return "\n".join(lines)
