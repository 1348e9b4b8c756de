"""The embedding surface: one ``Compliance`` object per database, every call naming who acts.

Each call is one transaction. A refusal (wrong role, inactive person, out of scope) rolls back
whatever the call had begun, then is written to the audit trail in a transaction of its own and
raised as ``NotPermitted``. Invalid input, unknown records and conflicts write nothing.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy import text as text_sql
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from compliance.api import (
    clients,
    course_list,
    course_status,
    courses,
    dispense_read,
    dispensing,
    etasu,
    parties,
    patients,
    rule_changes,
    settings,
    worklist,
)
from compliance.api.authz import Acting, Actor, authorize, refuse
from compliance.api.course_list import CourseListing
from compliance.api.etasu import EtasuAnswer
from compliance.api.results import (
    DateInput,
    GrantInfo,
    PatientInfo,
    PatientRegistration,
    PersonInfo,
    PharmacyInfo,
    SchemaStatus,
)
from compliance.api.results_clients import Caller, ClientInfo, Credential, IssuedKey
from compliance.api.results_course import (
    AuthorizationInfo,
    AuthorizationUpdated,
    Authorized,
    CourseStatus,
    Flag,
    Prescribed,
    PrescriptionInfo,
    StepResult,
)
from compliance.api.rule_changes import ImpactReport, MigrationReport
from compliance.audit import store as audit
from compliance.audit.chain import AuditRecord
from compliance.audit.signing import KEY_ENV, KEY_FILE_ENV, Signer, configured_signer
from compliance.clock import Clock, SystemClock, ensure_utc
from compliance.db import migrate
from compliance.db.engine import make_engine
from compliance.domain import reasons
from compliance.domain.course import mermaid
from compliance.domain.facts import TestResult
from compliance.domain.gates import Decision
from compliance.domain.ids import Kind, kind_of, normalise
from compliance.domain.roles import READ_ONLY, Action, Role
from compliance.domain.validate import choice, safe_ref, text, whole_number
from compliance.errors import (
    Busy,
    ComplianceError,
    Conflict,
    DatabaseNotReady,
    InvalidInput,
    Refused,
)
from compliance.programs import loader
from compliance.programs.diff import RulesetDiff, diff
from compliance.programs.model import Ruleset, Setting, TestKind

T = TypeVar("T")

#: The audit trail's actor for a refusal of someone the database does not know.
UNKNOWN_ACTOR = "UNKNOWN_ACTOR"
# How far a host's clock may be from the real time before it counts as simulated: ordinary
# drift of a synchronised clock is seconds; a clock minutes off is set, not drifting.
CLOCK_TOLERANCE = timedelta(minutes=5)
RETRIES = 5  # attempts for an operation that meets a transient lock or a lost race


class Compliance:
    """A handle on one compliance database.

    ``Compliance.open(url)`` creates and owns an engine; ``Compliance(engine)`` uses a host's own
    engine as it is (configure SQLite durability with ``compliance.db.engine.configure_sqlite``).
    """

    def __init__(
        self,
        engine: Engine,
        clock: Clock | None = None,
        *,
        owns_engine: bool = False,
        simulated: bool = False,
    ):
        self.engine = engine
        self.clock: Clock = clock or SystemClock()
        # A simulated clock (the CLI's --now) is written into every audit event it produces.
        self.simulated = simulated
        self._owns_engine = owns_engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._reads = sessionmaker(
            engine.execution_options(sqlite_begin="DEFERRED"), expire_on_commit=False
        )
        # Reads that must see one moment of the whole trail (verify, export) while writers go on:
        # SQLite's read transaction is already a snapshot; PostgreSQL needs REPEATABLE READ.
        snapshot = engine.execution_options(sqlite_begin="DEFERRED")
        if engine.dialect.name == "postgresql":
            snapshot = engine.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
        self._snapshots = sessionmaker(snapshot, expire_on_commit=False)
        self._schema_checked = False

    @classmethod
    def open(
        cls,
        url: str | None = None,
        clock: Clock | None = None,
        *,
        simulated: bool = False,
        create: bool = True,
    ) -> Compliance:
        """Open by URL (default: ``COMPLIANCE_DATABASE_URL``, else ``compliance.db`` here).

        With ``create=False`` a SQLite file that does not exist is ``DatabaseNotReady`` instead
        of a new empty file, so a mistyped path never leaves a database behind.
        """
        return cls(make_engine(url, create=create), clock, owns_engine=True, simulated=simulated)

    def close(self) -> None:
        """Release the database connections, if this object opened the engine itself."""
        if self._owns_engine:
            self.engine.dispose()

    def __enter__(self) -> Compliance:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- schema ---------------------------------------------------------------------------

    def migrate(self, revision: str = "head") -> SchemaStatus:
        """Bring the schema to ``revision`` (the newest by default) and say where it stands."""
        with _database_errors():
            migrate.upgrade(self.engine, revision)
        self._schema_checked = False
        status = self.schema_status()
        if status.up_to_date:
            self._index_worklist()
        return status

    def _index_worklist(self) -> None:
        """Work out the worklist's index for courses that lack it (written before it existed
        or by other tools), a chunk per transaction; until then they are examined every time."""
        now = ensure_utc(self.clock.now(), "clock")
        while True:
            with self._transaction() as session:
                if worklist.index_missing(session, now) == 0:
                    return

    def schema_status(self) -> SchemaStatus:
        """Which migration the database is at, and whether that is the newest."""
        with _database_errors():
            current = migrate.current_revision(self.engine)
        head = migrate.head_revision()
        url = self.engine.url.render_as_string(hide_password=True)
        return SchemaStatus(url, current, head, current == head)

    def drift(self) -> str | None:
        """None when the schema matches the models, else a description of the differences."""
        self._require_schema()
        with _database_errors():
            return migrate.drift(self.engine)

    def initialize(
        self, admin_name: str, *, training: bool = False, remember_as: str | None = None
    ) -> PersonInfo:
        """Migrate a new or existing database and create its first administrator.

        A ``training`` database accepts simulated clocks (the CLI's ``--now``); an ordinary one
        refuses them unless an administrator enables it. ``remember_as`` stores the
        administrator's id under that settings key, for tools (such as the demonstration) that
        come back to the same database.
        """
        if self.is_simulated() and not training:
            raise InvalidInput(
                "--now" if self.simulated else "clock",
                "only a training database may be created on a simulated clock (one declared"
                " simulated, or more than 5 minutes from the real time)",
            )
        self.migrate()
        now = ensure_utc(self.clock.now(), "clock")
        with self._transaction() as session:
            admin = parties.create_first_administrator(session, admin_name, now)
            settings.put(session, settings.MODE, {"training": training}, now)
            if remember_as is not None:
                settings.put(session, remember_as, {"id": admin.id}, now)
            return admin

    def set_clock_override(
        self, actor: str, enabled: bool, *, hours: int = settings.OVERRIDE_HOURS
    ) -> dict[str, object]:
        """Let (or stop letting) this database accept simulated clocks, for ``hours`` of real
        time (a day by default, at most 30); administrators only."""
        return self._call(
            Acting(actor),
            Action.CLOCK_OVERRIDE_SET,
            lambda s, a, now: settings.set_clock_override(
                s, a, now, SystemClock().now(), enabled, hours, isinstance(actor, Credential)
            ),
        )

    def is_simulated(self) -> bool:
        """Whether this engine's clock is simulated: declared so (the CLI's ``--now``), or more
        than ``CLOCK_TOLERANCE`` away from the real time. A simulated clock is refused on a
        database not made for training unless an administrator's override lasts, and every
        event it writes carries both the simulated and the real instant."""
        if self.simulated:
            return True
        if isinstance(self.clock, SystemClock):
            return False
        drift = ensure_utc(self.clock.now(), "clock") - SystemClock().now()
        return abs(drift) > CLOCK_TOLERANCE

    def is_training(self) -> bool | None:
        """Whether this database was made for training; None when it has no schema yet."""
        with _database_errors():
            if migrate.current_revision(self.engine) is None:
                return None
        with self._transaction(read_only=True) as session:
            return bool((settings.get(session, settings.MODE) or {}).get("training"))

    def remembered(self, key: str) -> str | None:
        """The id stored by ``initialize(remember_as=key)``, if any."""
        self._require_schema()
        with self._transaction(read_only=True) as session:
            value = settings.get(session, key)
        return None if value is None else str(value["id"])

    # --- the call wrapper -----------------------------------------------------------------

    def _require_schema(self) -> None:
        if not self._schema_checked:
            with _database_errors():
                migrate.require_current(self.engine)
            self._schema_checked = True

    @contextmanager
    def _transaction(self, *, read_only: bool = False, snapshot: bool = False) -> Iterator[Session]:
        factory = self._snapshots if snapshot else self._reads if read_only else self._sessions
        with _database_errors(), factory() as session, session.begin():
            notes = clients.audit_notes()  # the HTTP client a request came through, if any
            if self.is_simulated():
                notes |= {
                    "simulated_now": self.clock.now().isoformat(),
                    "recorded_at": SystemClock().now().isoformat(),
                }
            if notes:
                session.info[audit.ANNOTATIONS] = notes
                clients.recheck(session, ensure_utc(self.clock.now(), "clock"))
            yield session
            # Derived data about the courses this transaction changed, in the same commit.
            worklist.refresh(session, ensure_utc(self.clock.now(), "clock"))

    def _call(
        self,
        acting: Acting,
        action: Action,
        body: Callable[[Session, Actor, datetime], T],
        about: tuple[object, ...] = (),
    ) -> T:
        self._require_schema()
        now = ensure_utc(self.clock.now(), "clock")
        presented = acting.actor if isinstance(acting.actor, Credential) else None
        if presented is not None and acting.on_behalf_of is not None:
            raise InvalidInput(
                "on_behalf_of", "a credential names the prescriber it acts for (X-On-Behalf-Of)"
            )
        read_only = action in READ_ONLY
        # On SQLite a write transaction takes the database's write lock at BEGIN. A credential's
        # transaction begins as a read and takes the lock only once its caller is allowed, so a
        # request with a bad key never holds it (see _claim_writer).
        deferred = [presented is not None and not read_only and self._is_sqlite()]
        resolved: list[Caller] = []

        def attempt() -> T:
            with self._transaction(
                read_only=read_only or deferred[0], snapshot=action in _SNAPSHOT
            ) as session:
                who = acting
                if presented is not None:
                    resolved[:] = [self._resolve(session, presented, now)]
                    who = Acting(resolved[0].actor, resolved[0].on_behalf_of)
                actor = authorize(session, who, action, now)
                if self.is_simulated():
                    settings.require_clock_override(session, action, SystemClock().now())
                if deferred[0]:
                    deferred[0] = False  # the caller is allowed: a retry may begin as a writer
                    _claim_writer(session)
                return body(session, actor, now)

        try:
            return _with_retries(attempt)
        except Refused as refusal:
            if presented is None:
                self._record_refusal(acting, action, refusal, now, about)
            elif resolved and reasons.SCOPE_NOT_GRANTED not in refusal.reasons:
                # a refusal of the key itself (its person, its scope) writes nothing
                caller = resolved[0]
                with clients.calling_as(caller):
                    who = Acting(caller.actor, caller.on_behalf_of)
                    self._record_refusal(who, action, refusal, now, about)
            raise

    def _is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @staticmethod
    def _resolve(session: Session, credential: Credential, now: datetime) -> Caller:
        """Who a credential stands for, checked in ``session``; the audit events the session
        writes then name the client and key."""
        caller = clients.authenticate(
            session,
            now,
            credential.pepper,
            credential.key,
            credential.acting_person,
            credential.on_behalf_of,
        )
        clients.require_scope(caller, credential.scope)
        notes = session.info.get(audit.ANNOTATIONS) or {}
        session.info[audit.ANNOTATIONS] = {**notes, **clients.notes_of(caller)}
        session.info[_CALLER] = caller  # for a body whose further scopes depend on who calls
        return caller

    def _record_refusal(
        self,
        acting: Acting,
        action: Action,
        refusal: Refused,
        now: datetime,
        about: tuple[object, ...],
    ) -> None:
        """File the refusal under what it was about, else under the person who tried. An actor
        the database does not know is recorded as ``UNKNOWN_ACTOR``, never as what was typed:
        that text could be anything, and the audit trail keeps it for ever."""
        actor_ref = safe_ref(acting.actor)
        if reasons.ACTOR_UNKNOWN in refusal.reasons:
            actor_ref = UNKNOWN_ACTOR
        subjects = refusal.subjects or _short_ids(about) or _short_ids((actor_ref,))
        on_behalf_of = refusal.on_behalf_of or safe_ref(acting.on_behalf_of)
        payload: dict[str, object] = {"message": refusal.message}
        if refusal.decision is not None:
            payload["decision"] = refusal.decision.to_dict()
        draft = audit.EventDraft(
            action=action.value,
            outcome="refused",
            actor_id=actor_ref,
            on_behalf_of=on_behalf_of,
            subjects=subjects,
            state_before=refusal.state,
            state_after=refusal.state,
            reason_codes=refusal.reasons,
            ruleset_id=refusal.ruleset_id,
            payload=payload,
        )
        # A refused simulated clock is recorded at the real time: nobody backdates anything.
        when = SystemClock().now() if reasons.CLOCK_OVERRIDE_NOT_ALLOWED in refusal.reasons else now

        def write() -> None:
            with self._transaction() as session:
                audit.append(session, draft, when)

        _with_retries(write)

    # --- administrators -------------------------------------------------------------------

    def add_administrator(self, actor: str, name: str) -> PersonInfo:
        """Add an administrator (an administrator acts); audited."""
        return self._call(
            Acting(actor),
            Action.ADMINISTRATOR_CREATE,
            lambda s, a, now: parties.add_administrator(s, a, now, name),
        )

    def deactivate_administrator(self, actor: str, administrator: str) -> PersonInfo:
        """Deactivate an administrator; the last active one cannot be."""
        return self._call(
            Acting(actor),
            Action.ADMINISTRATOR_DEACTIVATE,
            lambda s, a, now: parties.deactivate_administrator(s, a, now, administrator),
            about=(administrator,),
        )

    # --- prescribers ----------------------------------------------------------------------

    def register_prescriber(
        self,
        actor: str,
        name: str,
        external_id: str,
        id_system: str = "NPI",
        time_zone: str | None = None,
    ) -> PersonInfo:
        """``time_zone``: the clinic's own IANA zone, used where the ruleset judges the
        clinic's steps in the prescriber's zone (EU/UK)."""
        return self._call(
            Acting(actor),
            Action.PRESCRIBER_REGISTER,
            lambda s, a, now: parties.register_prescriber(
                s, a, now, name, external_id, id_system, time_zone
            ),
        )

    def set_prescriber_zone(self, actor: str, prescriber: str, time_zone: str | None) -> PersonInfo:
        """Set (or, with None, clear) the clinic's own zone of a prescriber; audited."""
        return self._call(
            Acting(actor),
            Action.PRESCRIBER_ZONE_SET,
            lambda s, a, now: parties.set_prescriber_zone(s, a, now, prescriber, time_zone),
            about=(prescriber,),
        )

    def _prescriber(self, actor: str, action: Action, ref: str, note: str | None) -> PersonInfo:
        return self._call(
            Acting(actor),
            action,
            lambda s, a, now: parties.change_prescriber(s, a, now, action, ref, note),
            about=(ref,),
        )

    def activate_prescriber(
        self, actor: str, prescriber: str, note: str | None = None
    ) -> PersonInfo:
        """Activate a registered prescriber: only then may they prescribe."""
        return self._prescriber(actor, Action.PRESCRIBER_ACTIVATE, prescriber, note)

    def suspend_prescriber(
        self, actor: str, prescriber: str, note: str | None = None
    ) -> PersonInfo:
        """Suspend a prescriber's certification: their courses stop at the gates."""
        return self._prescriber(actor, Action.PRESCRIBER_SUSPEND, prescriber, note)

    def reinstate_prescriber(
        self, actor: str, prescriber: str, note: str | None = None
    ) -> PersonInfo:
        """Lift a prescriber's suspension."""
        return self._prescriber(actor, Action.PRESCRIBER_REINSTATE, prescriber, note)

    def deactivate_prescriber(
        self, actor: str, prescriber: str, note: str | None = None
    ) -> PersonInfo:
        """Deactivate a prescriber for good; their records remain."""
        return self._prescriber(actor, Action.PRESCRIBER_DEACTIVATE, prescriber, note)

    # --- designees ------------------------------------------------------------------------

    def register_designee(self, actor: str, name: str) -> PersonInfo:
        """Register a designee: someone who acts for prescribers under grants."""
        return self._call(
            Acting(actor),
            Action.DESIGNEE_REGISTER,
            lambda s, a, now: parties.register_designee(s, a, now, name),
        )

    def deactivate_designee(self, actor: str, designee: str) -> PersonInfo:
        """Deactivate a designee; every grant to them stops acting at once."""
        return self._call(
            Acting(actor),
            Action.DESIGNEE_DEACTIVATE,
            lambda s, a, now: parties.deactivate_designee(s, a, now, designee),
            about=(designee,),
        )

    def grant_designee(
        self,
        actor: str,
        designee: str,
        prescriber: str,
        scopes: list[str] | None = None,
        expires_at: datetime | None = None,
    ) -> GrantInfo:
        """Let a designee act for a prescriber in ``scopes`` (default: every delegable
        step) until ``expires_at``, an aware instant (None: until revoked)."""
        if expires_at is not None and not isinstance(expires_at, datetime):
            raise InvalidInput("expires_at", "must be an instant (a datetime with its zone)")
        expiry = ensure_utc(expires_at, "expires_at") if expires_at is not None else None
        return self._call(
            Acting(actor),
            Action.GRANT_CREATE,
            lambda s, a, now: parties.grant_designee(
                s, a, now, designee, prescriber, scopes, expiry
            ),
            about=(designee, prescriber),
        )

    def amend_grant(
        self,
        actor: str,
        designee: str,
        prescriber: str,
        reason: str,
        scopes: list[str] | None = None,
        expires_at: datetime | None = None,
        clear_expiry: bool = False,
    ) -> GrantInfo:
        """Correct a live grant's scopes or expiry (``clear_expiry``: no expiry), with the
        reason; the audit event keeps the values before and after."""
        if expires_at is not None and not isinstance(expires_at, datetime):
            raise InvalidInput("expires_at", "must be an instant (a datetime with its zone)")
        expiry = ensure_utc(expires_at, "expires_at") if expires_at is not None else None
        clear = bool(clear_expiry) if isinstance(clear_expiry, bool) else None
        if clear is None:
            raise InvalidInput("clear_expiry", "must be true or false")
        return self._call(
            Acting(actor),
            Action.GRANT_AMEND,
            lambda s, a, now: parties.amend_grant(
                s, a, now, designee, prescriber, reason, scopes, expiry, clear
            ),
            about=(designee, prescriber),
        )

    def revoke_grant(self, actor: str, designee: str, prescriber: str) -> GrantInfo:
        """End a designee's grant for a prescriber at once; the grant stays on record."""
        return self._call(
            Acting(actor),
            Action.GRANT_REVOKE,
            lambda s, a, now: parties.revoke_grant(s, a, now, designee, prescriber),
            about=(designee, prescriber),
        )

    def list_grants(
        self, actor: str, designee: str | None = None, on_behalf_of: str | None = None
    ) -> list[GrantInfo]:
        """Grants, live and ended, of one designee or of all that the actor may see."""
        return self._call(
            Acting(actor, on_behalf_of),
            Action.PARTY_READ,
            lambda s, a, now: parties.list_grants(s, a, now, designee),
        )

    # --- pharmacies -----------------------------------------------------------------------

    def register_pharmacy(
        self, actor: str, name: str, external_id: str, time_zone: str, id_system: str = "NCPDP"
    ) -> PharmacyInfo:
        """Register a pharmacy by its identifier (NCPDP by default) and IANA zone:
        its pharmacists' windows and do-not-dispense-after times are judged there."""
        return self._call(
            Acting(actor),
            Action.PHARMACY_REGISTER,
            lambda s, a, now: parties.register_pharmacy(
                s, a, now, name, external_id, time_zone, id_system
            ),
        )

    def activate_pharmacy(
        self, actor: str, pharmacy: str, expires_on: DateInput | None = None
    ) -> PharmacyInfo:
        """Activate (or re-certify) a pharmacy, until ``expires_on`` if given."""
        return self._call(
            Acting(actor),
            Action.PHARMACY_ACTIVATE,
            lambda s, a, now: parties.activate_pharmacy(s, a, now, pharmacy, expires_on),
            about=(pharmacy,),
        )

    def deactivate_pharmacy(self, actor: str, pharmacy: str) -> PharmacyInfo:
        """Deactivate a pharmacy: the dispense gate refuses its requests from then on."""
        return self._call(
            Acting(actor),
            Action.PHARMACY_DEACTIVATE,
            lambda s, a, now: parties.deactivate_pharmacy(s, a, now, pharmacy),
            about=(pharmacy,),
        )

    def register_pharmacist(self, actor: str, name: str, pharmacy: str) -> PersonInfo:
        """Register a pharmacist at a pharmacy they will act for."""
        return self._call(
            Acting(actor),
            Action.PHARMACIST_REGISTER,
            lambda s, a, now: parties.register_pharmacist(s, a, now, name, pharmacy),
            about=(pharmacy,),
        )

    def deactivate_pharmacist(self, actor: str, pharmacist: str) -> PersonInfo:
        """Deactivate a pharmacist; their past authorizations remain."""
        return self._call(
            Acting(actor),
            Action.PHARMACIST_DEACTIVATE,
            lambda s, a, now: parties.deactivate_pharmacist(s, a, now, pharmacist),
            about=(pharmacist,),
        )

    def get_pharmacy(
        self, actor: str, pharmacy: str, on_behalf_of: str | None = None
    ) -> PharmacyInfo:
        """One pharmacy, for those who may see it (not the clinic's staff)."""
        return self._call(
            Acting(actor, on_behalf_of),
            Action.PARTY_READ,
            lambda s, a, now: parties.show_pharmacy(s, a, pharmacy),
            about=(pharmacy,),
        )

    def list_pharmacies(
        self, actor: str, status: str | None = None, on_behalf_of: str | None = None
    ) -> list[PharmacyInfo]:
        """Pharmacies, optionally of one status, that the actor may see."""
        return self._call(
            Acting(actor, on_behalf_of),
            Action.PARTY_READ,
            lambda s, a, now: parties.list_pharmacies(s, a, status),
        )

    # --- people ---------------------------------------------------------------------------

    def get_person(self, actor: str, person: str, on_behalf_of: str | None = None) -> PersonInfo:
        """An administrator, prescriber, designee or pharmacist, by short id."""
        kind = kind_of(normalise(person)) if isinstance(person, str) else None
        people = {Kind.ADMINISTRATOR, Kind.PRESCRIBER, Kind.DESIGNEE, Kind.PHARMACIST}
        if kind not in people:
            raise InvalidInput(
                "person", f"{person!r} is not the id of a person (ADM-, PRS-, DSG-, RPH-)"
            )
        return self._call(
            Acting(actor, on_behalf_of),
            Action.PARTY_READ,
            lambda s, a, now: parties.show_person(s, a, person, kind),
            about=(person,),
        )

    def list_people(
        self, actor: str, role: str, status: str | None = None, on_behalf_of: str | None = None
    ) -> list[PersonInfo]:
        """The people of one role (``administrator``, ``prescriber``, ``designee`` or
        ``pharmacist``), optionally of one status, that the actor may see."""
        kinds = {
            "administrator": Kind.ADMINISTRATOR,
            "prescriber": Kind.PRESCRIBER,
            "designee": Kind.DESIGNEE,
            "pharmacist": Kind.PHARMACIST,
        }
        choice("role", role, kinds)
        return self._call(
            Acting(actor, on_behalf_of),
            Action.PARTY_READ,
            lambda s, a, now: parties.list_people(s, a, kinds[role], status),
        )

    # --- patients -------------------------------------------------------------------------

    def register_patient(
        self,
        actor: str,
        name: str,
        date_of_birth: DateInput,
        external_ids: Mapping[str, object] | None = None,
        on_behalf_of: str | None = None,
    ) -> PatientRegistration:
        """Register a patient; the answer lists existing patients with the same
        name and birth date, which the clinic decides about (nothing is merged)."""
        return self._call(
            Acting(actor, on_behalf_of),
            Action.PATIENT_REGISTER,
            lambda s, a, now: patients.register(s, a, now, name, date_of_birth, external_ids),
        )

    def add_patient_external_id(
        self, actor: str, patient: str, system: str, value: str, on_behalf_of: str | None = None
    ) -> PatientInfo:
        """Add an identifier from another system (``MRN``, ...) to a patient."""
        return self._call(
            Acting(actor, on_behalf_of),
            Action.PATIENT_UPDATE,
            lambda s, a, now: patients.add_external_id(s, a, now, patient, system, value),
            about=(patient,),
        )

    def correct_patient(
        self,
        actor: str,
        patient: str,
        reason: str,
        name: str | None = None,
        date_of_birth: str | date | None = None,
        on_behalf_of: str | None = None,
    ) -> PatientInfo:
        """Correct a misspelt name or a wrong date of birth, with the reason; the audit event
        keeps the values before and after."""
        return self._call(
            Acting(actor, on_behalf_of),
            Action.PATIENT_CORRECT,
            lambda s, a, now: patients.correct(s, a, now, patient, reason, name, date_of_birth),
            about=(patient,),
        )

    def get_patient(self, actor: str, patient: str, on_behalf_of: str | None = None) -> PatientInfo:
        """By short id, internal UUID, or ``SYSTEM:VALUE`` external id."""
        return self._call(
            Acting(actor, on_behalf_of),
            Action.PATIENT_READ,
            lambda s, a, now: patients.show(s, a, patient),
            about=(patient,),
        )

    def find_patients(
        self,
        actor: str,
        name: str | None = None,
        date_of_birth: DateInput | None = None,
        limit: int = 50,
        on_behalf_of: str | None = None,
    ) -> list[PatientInfo]:
        """Patients matching a name and/or birth date, among those the actor may see."""
        return self._call(
            Acting(actor, on_behalf_of),
            Action.PATIENT_READ,
            lambda s, a, now: patients.search(s, a, name, date_of_birth, limit),
        )

    # --- rules --------------------------------------------------------------------------

    @staticmethod
    def rulesets() -> dict[str, Ruleset]:
        """Every ruleset this version knows, validated, by id."""
        return dict(loader.all_rulesets())

    @staticmethod
    def ruleset(ruleset_id: str) -> Ruleset:
        """One ruleset by id (e.g. ``ipledge/2026-mod``); ``NotFound`` if unknown."""
        if not isinstance(ruleset_id, str):
            raise InvalidInput("ruleset", "must be a ruleset id such as ipledge/2026-mod")
        return loader.get(ruleset_id)

    @staticmethod
    def course_diagram(ruleset_id: str) -> str:
        """The course state machine as Mermaid, titled with the ruleset it is drawn for."""
        return mermaid(loader.get(ruleset_id).id)

    @staticmethod
    def ruleset_diff(old: str, new: str) -> RulesetDiff:
        """Every parameter added, removed or changed from ``old`` to ``new`` (any two rulesets)."""
        return diff(rule_changes.ruleset_arg("old", old), rule_changes.ruleset_arg("new", new))

    def rules_impact(
        self,
        actor: str,
        ruleset: str,
        as_of: object = None,
        pharmacy_zone: str | None = None,
    ) -> ImpactReport:
        """A dry run: how the gates would answer for every in-flight course of the programme if
        it moved to ``ruleset``, now or at the start of ``as_of`` (a date) in that ruleset's
        zone. Changes nothing."""
        return self._call(
            Acting(actor),
            Action.RULES_IMPACT,
            lambda s, a, now: rule_changes.impact(s, a, now, ruleset, as_of, pharmacy_zone),
        )

    @contextmanager
    def rules_impact_stream(
        self,
        actor: str,
        ruleset: str,
        as_of: object = None,
        pharmacy_zone: str | None = None,
        *,
        chunk: int = rule_changes.IMPACT_CHUNK,
        processes: int | None = None,
    ) -> Iterator[rule_changes.ImpactStream]:
        """``rules_impact`` for any number of courses, in memory flat in their number: the
        courses as they are judged, ``chunk`` at a time, in one read snapshot, and the totals
        once all are read. The actor and the arguments are checked (a refusal audited) before
        anything is read, as for every call. ``processes``: see ``impact_plan``."""
        plan = self._call(
            Acting(actor),
            Action.RULES_IMPACT,
            lambda s, a, now: rule_changes.impact_plan(
                a, now, ruleset, as_of, pharmacy_zone, chunk, processes
            ),
        )
        with self._transaction(read_only=True, snapshot=True) as session:
            yield rule_changes.ImpactStream(session, plan)

    def migrate_courses(
        self,
        actor: str,
        to: str,
        patients: list[str] | None = None,
        all_from: str | None = None,
    ) -> MigrationReport:
        """Move the open courses of ``patients`` (or every open course on ``all_from``) to the
        ruleset ``to``: all of them or, on any invalid one, none. Audited per course."""
        about = tuple(patients) if isinstance(patients, list | tuple) else ()
        return self._call(
            Acting(actor),
            Action.COURSE_MIGRATE,
            lambda s, a, now: rule_changes.migrate(s, a, now, to, patients, all_from),
            about=about,
        )

    def rules_schedule(self) -> dict[str, date]:
        """When each ruleset takes effect: the packaged dates with this database's overrides."""
        self._require_schema()
        with self._transaction(read_only=True) as session:
            return courses.schedule(session)

    def set_rules_schedule(self, actor: str, ruleset: str, effective: DateInput) -> dict[str, date]:
        """From ``effective`` on, new courses of the ruleset's programme are governed
        by it (administrators only); the schedule afterwards."""
        return self._call(
            Acting(actor),
            Action.RULES_SCHEDULE,
            lambda s, a, now: courses.set_schedule(s, a, now, ruleset, effective),
        )

    def set_home_testing(
        self, actor: str, enabled: bool, procedure: str | None = None, on: DateInput | None = None
    ) -> dict[str, object]:
        """A prescriber's opt-in (with the anti-falsification procedure) to home tests."""
        return self._call(
            Acting(actor),
            Action.HOME_TESTING_SET,
            lambda s, a, now: courses.set_home_testing(s, a, now, enabled, procedure, on),
        )

    # --- courses ----------------------------------------------------------------------------

    def _course_call(
        self,
        actor: str,
        on_behalf_of: str | None,
        action: Action,
        patient: str,
        body: Callable[[Session, Actor, datetime], T],
    ) -> T:
        return self._call(Acting(actor, on_behalf_of), action, body, about=(patient,))

    def enrol(
        self,
        actor: str,
        patient: str,
        enrolled_on: DateInput | None = None,
        programme: str = "ipledge",
        on_behalf_of: str | None = None,
    ) -> StepResult:
        """Open a course; it is governed by the ruleset in force on the enrolment date."""
        return self._course_call(
            actor,
            on_behalf_of,
            Action.COURSE_ENROL,
            patient,
            lambda s, a, now: courses.enrol(s, a, now, patient, programme, enrolled_on),
        )

    def assign_category(
        self, actor: str, patient: str, category: str, reason: str, on_behalf_of: str | None = None
    ) -> StepResult:
        """Record the patient's category (``can_get_pregnant`` or
        ``cannot_get_pregnant``) with the ruleset's reason code for it."""
        return self._course_call(
            actor,
            on_behalf_of,
            Action.CATEGORY_ASSIGN,
            patient,
            lambda s, a, now: courses.assign_category(s, a, now, patient, category, reason),
        )

    def record_consent(
        self,
        actor: str,
        patient: str,
        form: str,
        signed_on: DateInput | None = None,
        on_behalf_of: str | None = None,
    ) -> StepResult:
        """Record a signed consent form of the ruleset (its name, e.g.
        ``PATIENT_INFORMATION_CONSENT``) on ``signed_on`` (default: today)."""
        return self._course_call(
            actor,
            on_behalf_of,
            Action.CONSENT_RECORD,
            patient,
            lambda s, a, now: courses.record_consent(s, a, now, patient, form, signed_on),
        )

    def record_counselling(
        self,
        actor: str,
        patient: str,
        counselled_on: DateInput | None = None,
        on_behalf_of: str | None = None,
    ) -> StepResult:
        """Record the prescriber's risk counselling on ``counselled_on``."""
        return self._course_call(
            actor,
            on_behalf_of,
            Action.COUNSELLING_RECORD,
            patient,
            lambda s, a, now: courses.record_counselling(s, a, now, patient, counselled_on),
        )

    def set_test_schedule(
        self, actor: str, patient: str, schedule: str, on_behalf_of: str | None = None
    ) -> StepResult:
        """Choose the ruleset's named testing schedule for this course (e.g. irregular cycles)."""
        return self._course_call(
            actor,
            on_behalf_of,
            Action.TEST_SCHEDULE_SET,
            patient,
            lambda s, a, now: courses.set_test_schedule(s, a, now, patient, schedule),
        )

    def record_comprehension(self, actor: str, patient: str) -> StepResult:
        """The patient completed this cycle's comprehension questions (the patient acts)."""
        return self._course_call(
            actor,
            None,
            Action.COMPREHENSION_RECORD,
            patient,
            lambda s, a, now: courses.record_comprehension(s, a, now, patient),
        )

    def record_contraception(
        self,
        actor: str,
        patient: str,
        methods: Mapping[str, object],
        on_behalf_of: str | None = None,
    ) -> StepResult:
        """The prescriber's entry: each method with its start date (``abstinence`` allowed)."""
        return self._course_call(
            actor,
            on_behalf_of,
            Action.CONTRACEPTION_RECORD,
            patient,
            lambda s, a, now: courses.record_contraception(s, a, now, patient, methods),
        )

    def confirm_contraception(self, actor: str, patient: str, methods: list[str]) -> StepResult:
        """The patient's own confirmation of their methods for this cycle."""
        return self._course_call(
            actor,
            None,
            Action.CONTRACEPTION_CONFIRM,
            patient,
            lambda s, a, now: courses.confirm_contraception(s, a, now, patient, methods),
        )

    def record_test(
        self,
        actor: str,
        patient: str,
        *,
        kind: TestKind | str,
        specimen_date: DateInput,
        setting: Setting | str,
        result: TestResult | str,
        sensitivity_miu_ml: float = 25,
        clia: bool = False,
        on_behalf_of: str | None = None,
    ) -> StepResult:
        """A pregnancy test (``kind``, ``setting`` and ``result`` as the enums or their values;
        a programme's own name for a kind is accepted too); a positive one suspends the course
        at once."""
        return self._course_call(
            actor,
            on_behalf_of,
            Action.TEST_RECORD,
            patient,
            lambda s, a, now: courses.record_test(
                s,
                a,
                now,
                patient,
                kind=kind,
                specimen_date=specimen_date,
                setting=setting,
                result=result,
                sensitivity_miu_ml=sensitivity_miu_ml,
                clia=clia,
            ),
        )

    def confirm_patient(
        self, actor: str, patient: str, on_behalf_of: str | None = None
    ) -> StepResult:
        """The prescriber confirms the patient for the latest negative result on file (iPLEDGE):
        the pharmacy's request needs it; a new test needs a new confirmation."""
        return self._course_call(
            actor,
            on_behalf_of,
            Action.PATIENT_CONFIRM,
            patient,
            lambda s, a, now: courses.confirm_patient(s, a, now, patient),
        )

    def prescribe(
        self,
        actor: str,
        patient: str,
        days_supply: int,
        refills: int = 0,
        written_on: DateInput | None = None,
        office_visit_on: DateInput | None = None,
    ) -> Prescribed:
        """Write a prescription if the prescribe gate passes; refused with every reason if not."""
        return self._course_call(
            actor,
            None,
            Action.PRESCRIBE,
            patient,
            lambda s, a, now: courses.prescribe(
                s, a, now, patient, days_supply, refills, written_on, office_visit_on
            ),
        )

    def end_treatment(self, actor: str, patient: str, last_dose_on: DateInput) -> StepResult:
        """The last dose was taken on ``last_dose_on``: the course moves to the tests
        owed after treatment; no prescription follows."""
        return self._course_call(
            actor,
            None,
            Action.TREATMENT_END,
            patient,
            lambda s, a, now: courses.end_treatment(s, a, now, patient, last_dose_on),
        )

    def report_pregnancy(
        self,
        actor: str,
        patient: str,
        reported_on: DateInput | None = None,
        note: str | None = None,
        on_behalf_of: str | None = None,
    ) -> StepResult:
        """A pregnancy reported (on ``reported_on``): the course is suspended and
        the pregnancy actions are owed, as for a positive test."""
        return self._course_call(
            actor,
            on_behalf_of,
            Action.PREGNANCY_REPORT,
            patient,
            lambda s, a, now: courses.report_pregnancy(s, a, now, patient, reported_on, note),
        )

    def resume_course(self, actor: str, patient: str, note: str) -> StepResult:
        """Resume a suspended course (a prescriber, with the reason)."""
        return self._course_call(
            actor,
            None,
            Action.COURSE_RESUME,
            patient,
            lambda s, a, now: courses.change_state(
                s, a, now, Action.COURSE_RESUME, patient, "resume", note
            ),
        )

    def withdraw_course(self, actor: str, patient: str, note: str | None = None) -> StepResult:
        """Close the course: the patient stopped treatment or left the programme."""
        return self._course_call(
            actor,
            None,
            Action.COURSE_WITHDRAW,
            patient,
            lambda s, a, now: courses.change_state(
                s, a, now, Action.COURSE_WITHDRAW, patient, "withdraw", note
            ),
        )

    def mark_lost_to_follow_up(
        self, actor: str, patient: str, note: str | None = None
    ) -> StepResult:
        """Close the course as lost to follow-up (the tests owed were not had)."""
        return self._course_call(
            actor,
            None,
            Action.COURSE_LOST,
            patient,
            lambda s, a, now: courses.change_state(
                s, a, now, Action.COURSE_LOST, patient, "lose_to_follow_up", note
            ),
        )

    def check_prescribe(
        self,
        actor: str,
        patient: str,
        days_supply: int | None = None,
        refills: int = 0,
        on_behalf_of: str | None = None,
    ) -> Decision:
        """May this patient be prescribed now? Evaluates, changes nothing."""
        return self._course_call(
            actor,
            on_behalf_of,
            Action.COURSE_READ,
            patient,
            lambda s, a, now: courses.check_prescribe(s, a, now, patient, days_supply, refills),
        )

    def status(self, actor: str, patient: str, on_behalf_of: str | None = None) -> CourseStatus:
        """Where the patient's course stands: the prescribe decision now, the checklist
        with dates, the open authorization, flags, and what is next."""
        return self._course_call(
            actor,
            on_behalf_of,
            Action.COURSE_READ,
            patient,
            lambda s, a, now: course_status.status(s, a, now, patient),
        )

    def due(self, actor: str, within_days: int = 7, on_behalf_of: str | None = None) -> list[Flag]:
        """Flags across courses: tests due, windows closing, reversals owed, pregnancies. Each
        role sees only its own work: a prescriber (or their designee) their own courses, a
        pharmacist the reversals its own pharmacy owes, an administrator everything."""
        whole_number("within", within_days, 0, 366)

        def body(s: Session, a: Actor, now: datetime) -> list[Flag]:
            if a.role is Role.PATIENT:
                raise refuse(Action.COURSE_READ, [reasons.OUT_OF_SCOPE])
            if a.role is Role.PHARMACIST:  # its own authorizations, nothing about the patient
                return worklist.pharmacy_due(s, now, a.pharmacy_uuid)
            mine = a.prescriber_uuid if a.role in {Role.PRESCRIBER, Role.DESIGNEE} else None
            return worklist.due(s, now, within_days, mine)

        return self._call(Acting(actor, on_behalf_of), Action.COURSE_READ, body)

    def list_courses(
        self,
        actor: str,
        state: str | None = None,
        prescriber: str | None = None,
        programme: str | None = None,
        limit: int = 500,
        on_behalf_of: str | None = None,
    ) -> list[CourseListing]:
        """Courses with patient and prescriber names, newest enrolment first; a prescriber (or
        their designee) sees only their own courses, as in ``due``."""

        def body(s: Session, a: Actor, now: datetime) -> list[CourseListing]:
            if a.role in {Role.PATIENT, Role.PHARMACIST}:
                raise refuse(Action.COURSE_READ, [reasons.OUT_OF_SCOPE])
            mine = a.prescriber_uuid if a.role in {Role.PRESCRIBER, Role.DESIGNEE} else None
            return course_list.list_courses(
                s,
                scope_prescriber=mine,
                state=state,
                prescriber=prescriber,
                programme=programme,
                limit=limit,
            )

        return self._call(Acting(actor, on_behalf_of), Action.COURSE_READ, body)

    # --- dispensing -------------------------------------------------------------------------

    def check_dispense(
        self,
        actor: str,
        prescription: str,
        on_behalf_of: str | None = None,
        *,
        days_supply: int | None = None,
    ) -> Decision:
        """May this pharmacy dispense this prescription now (``days_supply`` days, by default
        the prescription's own)? Evaluates, changes nothing."""
        return self._call(
            Acting(actor, on_behalf_of),
            Action.COURSE_READ,
            lambda s, a, now: dispensing.check_dispense(s, a, now, prescription, days_supply),
        )

    def find_prescription(
        self, actor: str, patient: str, date_of_birth: DateInput, prescriber_npi: str
    ) -> PrescriptionInfo:
        """The latest undispensed prescription of the prescriber with this NPI for this patient
        (programme id and date of birth): what a pharmacy holding a paper prescription knows.
        NotFound when nothing matches, without saying which part did not."""
        return self._call(
            Acting(actor),
            Action.PRESCRIPTION_FIND,
            lambda s, a, now: dispensing.find_prescription(
                s, a, now, patient, date_of_birth, prescriber_npi
            ),
            about=(patient,),
        )

    def rems_etasu(
        self,
        actor: str,
        *,
        case: str | None = None,
        patient: str | None = None,
        date_of_birth: DateInput | None = None,
        prescriber_npi: str | None = None,
        on_behalf_of: str | None = None,
    ) -> EtasuAnswer:
        """Are the REMS requirements met (the FHIR ``$rems-etasu``)? A pharmacist gets the
        dispense gate of ``case`` (a prescription), or of the prescription in hand found from
        ``patient``, ``date_of_birth`` and ``prescriber_npi``; anyone else the prescribe gate of
        ``patient``. One read: the caller, the gate chosen for them, and its answer."""
        return self._call(
            Acting(actor, on_behalf_of),
            Action.COURSE_READ,
            lambda s, a, now: etasu.answer(
                s, a, now, s.info.get(_CALLER), case, patient, date_of_birth, prescriber_npi
            ),
            about=(patient,) if case is None and patient is not None else (),
        )

    def request_authorization(
        self,
        actor: str,
        prescription: str,
        idempotency_key: str | None = None,
        *,
        days_supply: int | None = None,
    ) -> Authorized:
        """Issue a dispense authorization if the dispense gate passes now.

        ``days_supply`` is the supply the pharmacy dispenses (by default the prescription's
        own): above the category's maximum it is ``SUPPLY_EXCEEDS_MAX``, above the
        prescription's ``SUPPLY_EXCEEDS_PRESCRIPTION``; the authorization records it. With an
        ``idempotency_key`` (the pharmacy's own request id), a retried request returns the
        authorization the first one produced and never creates a second.
        """
        return self._call(
            Acting(actor),
            Action.AUTHORIZATION_REQUEST,
            lambda s, a, now: dispensing.request_authorization(
                s, a, now, prescription, idempotency_key, days_supply
            ),
        )

    def reverse_authorization(self, actor: str, number: str, reason: str) -> AuthorizationUpdated:
        """Reverse an unused authorization (the patient did not collect, or
        the pharmacy made a mistake) with the reason; the cycle can be authorized again."""
        return self._call(
            Acting(actor),
            Action.AUTHORIZATION_REVERSE,
            lambda s, a, now: dispensing.reverse_authorization(s, a, now, number, reason),
        )

    def record_dispense(self, actor: str, number: str) -> AuthorizationUpdated:
        """The patient picked up: refused after do-not-dispense-after or once reversed."""
        return self._call(
            Acting(actor),
            Action.DISPENSE_RECORD,
            lambda s, a, now: dispensing.record_dispense(s, a, now, number),
        )

    # --- audit ----------------------------------------------------------------------------

    def verify_audit(
        self,
        actor: str,
        *,
        public_key: bytes | None = None,
        against: Mapping[str, object] | None = None,
    ) -> audit.VerifyReport:
        """Verify in one snapshot. Signatures are checked against ``public_key``, else the
        configured signing key's, else the published checkpoint's (``against``), else only
        against the key the database itself names (reported as not trusted)."""
        if public_key is None:
            configured = configured_signer()
            public_key = configured.public_key if configured else None
        return self._call(
            Acting(actor),
            Action.AUDIT_VERIFY,
            lambda s, a, now: audit.verify(s, trusted_key=public_key, against=against, beside=True),
        )

    def checkpoint_audit(self, actor: str, signer: Signer | None = None) -> audit.Checkpoint:
        """A signed checkpoint; the key is ``signer``, else the one configured outside the
        database (``COMPLIANCE_AUDIT_KEY_FILE`` or ``COMPLIANCE_AUDIT_KEY``)."""
        key = signer or configured_signer()
        if key is None:
            raise InvalidInput(
                "signing key",
                f"a checkpoint must be signed: give --key-file, or set {KEY_FILE_ENV} or {KEY_ENV}",
            )
        if not isinstance(key, Signer):
            raise InvalidInput("signer", "must provide public_key and sign()")
        return self._call(
            Acting(actor),
            Action.AUDIT_CHECKPOINT,
            lambda s, a, now: audit.checkpoint(s, a.short_id, now, key),
        )

    def audit_log(self, actor: str, log_filter: audit.LogFilter | None = None) -> list[AuditRecord]:
        """Audit events matching ``log_filter`` in recorded order (the latest first with
        ``newest_first``); administrators only."""
        f = _checked_filter(log_filter)
        return self._call(
            Acting(actor), Action.AUDIT_READ, lambda s, a, now: list(audit.stream(s, f))
        )

    def audit_count(self, actor: str, log_filter: audit.LogFilter | None = None) -> int:
        """How many audit events match ``log_filter`` (to say when more exist)."""
        f = _checked_filter(log_filter)
        return self._call(Acting(actor), Action.AUDIT_READ, lambda s, a, now: audit.count(s, f))

    @contextmanager
    def audit_stream(
        self, actor: str, log_filter: audit.LogFilter | None = None
    ) -> Iterator[Iterator[AuditRecord]]:
        """Stream events of any volume inside one read transaction."""
        f = _checked_filter(log_filter)
        self._call(Acting(actor), Action.AUDIT_READ, lambda s, a, now: None)
        with self._transaction(read_only=True, snapshot=True) as session:
            yield audit.stream(session, f)

    @contextmanager
    def audit_export(
        self, actor: str, log_filter: audit.LogFilter | None = None
    ) -> Iterator[Iterator[dict[str, Any]]]:
        """Like ``audit_stream``, each event as its JSON data (``AuditRecord.to_dict()``),
        built straight from the stored values: what an export of millions of events writes."""
        f = _checked_filter(log_filter)
        self._call(Acting(actor), Action.AUDIT_READ, lambda s, a, now: None)
        with self._transaction(read_only=True, snapshot=True) as session:
            yield audit.stream_dicts(session, f)

    @contextmanager
    def audit_export_lines(
        self, actor: str, log_filter: audit.LogFilter | None = None
    ) -> Iterator[Iterator[str]]:
        """Like ``audit_export``, each event as its JSON Lines record (``audit.json_line``); a
        large export is encoded by two processes on the same snapshot (``audit.export_lines``)."""
        f = _checked_filter(log_filter)
        self._call(Acting(actor), Action.AUDIT_READ, lambda s, a, now: None)
        with self._transaction(read_only=True, snapshot=True) as session:
            yield audit.export_lines(session, f, beside=True)

    # --- API clients (the HTTP service's callers) -------------------------------------------

    def add_client(
        self,
        actor: str,
        name: str,
        kind: str,
        party: str,
        scopes: list[str] | None = None,
        lifetime_days: int = 365,
        *,
        pepper: bytes | None = None,
    ) -> IssuedKey:
        """Register a client bound to ``party`` and issue its first key (shown only here)."""
        secret = clients.load_pepper(pepper)
        return self._call(
            Acting(actor),
            Action.CLIENT_ADD,
            lambda s, a, now: clients.add_client(
                s, a, now, secret, name, kind, party, scopes, lifetime_days
            ),
            about=(party,),
        )

    def list_clients(self, actor: str) -> list[ClientInfo]:
        """Every API client with its keys' ids and dates (never a secret)."""
        return self._call(
            Acting(actor), Action.CLIENT_READ, lambda s, a, now: clients.list_clients(s, now)
        )

    def get_client(self, actor: str, client: str) -> ClientInfo:
        """One API client with its keys' ids and dates (never a secret)."""
        return self._call(
            Acting(actor),
            Action.CLIENT_READ,
            lambda s, a, now: clients.show_client(s, now, client),
            about=(client,),
        )

    def rotate_client_key(
        self,
        actor: str,
        client: str,
        overlap_days: int = 7,
        lifetime_days: int = 365,
        *,
        pepper: bytes | None = None,
    ) -> IssuedKey:
        """A new key; the previous one keeps working for ``overlap_days``, older ones stop."""
        secret = clients.load_pepper(pepper)
        return self._call(
            Acting(actor),
            Action.CLIENT_ROTATE,
            lambda s, a, now: clients.rotate(
                s, a, now, secret, client, overlap_days, lifetime_days
            ),
            about=(client,),
        )

    def revoke_client(self, actor: str, client: str, key_id: str | None = None) -> ClientInfo:
        """End one key now, or (without ``key_id``) the client and all its keys."""
        return self._call(
            Acting(actor),
            Action.CLIENT_REVOKE,
            lambda s, a, now: clients.revoke(s, a, now, client, key_id),
            about=(client,),
        )

    def authenticate(
        self,
        key: str | None,
        acting_person: str | None = None,
        on_behalf_of: str | None = None,
        *,
        pepper: bytes | None = None,
    ) -> Caller:
        """The client a presented key belongs to and the person it acts as; raises
        ``Unauthenticated`` (no, unknown, expired or revoked key) or ``NotPermitted``.

        ``key`` may be a ``Credential``, which carries the person, the pepper and the scope it
        needs (checked too). An operation called with a credential checks it again itself, in
        its own transaction: this is for a caller who must know who calls before choosing."""
        if isinstance(key, Credential):
            credential = key
        else:
            credential = Credential(
                key,
                pepper=clients.load_pepper(pepper),
                acting_person=acting_person,
                on_behalf_of=on_behalf_of,
            )
        return self._authenticated(credential, lambda s, caller: caller)

    def rules_schedule_as(self, credential: Credential) -> dict[str, date]:
        """``rules_schedule`` for the holder of any valid key, checked in the same read."""
        return self._authenticated(credential, lambda s, caller: courses.schedule(s))

    def _authenticated(self, credential: Credential, body: Callable[[Session, Caller], T]) -> T:
        """``body`` in one read transaction that first resolves ``credential``."""
        self._require_schema()
        now = ensure_utc(self.clock.now(), "clock")

        def attempt() -> T:
            with self._transaction(read_only=True) as session:
                return body(session, self._resolve(session, credential, now))

        return _with_retries(attempt)

    def get_authorization(
        self, actor: str, number: str, on_behalf_of: str | None = None
    ) -> AuthorizationInfo:
        """One authorization with its reversal and pickup, for those who may see it."""
        return self._call(
            Acting(actor, on_behalf_of),
            Action.COURSE_READ,
            lambda s, a, now: dispense_read.get_authorization(s, a, number),
        )


def _short_ids(refs: tuple[object, ...]) -> tuple[str, ...]:
    """The well-formed short ids among ``refs``; anything else is not a subject to file under."""
    found = (normalise(r) for r in refs if isinstance(r, str))
    return tuple(r for r in found if kind_of(r) is not None)


def _checked_filter(log_filter: audit.LogFilter | None) -> audit.LogFilter:
    """Every field of a log filter checked like any other input, before it reaches SQL."""
    f = log_filter or audit.LogFilter()
    if not isinstance(f, audit.LogFilter):
        raise InvalidInput("log_filter", "must be a LogFilter")

    def ref(field: str, value: object) -> str | None:
        return None if value is None else text(field, value, max_len=64)

    def instant(field: str, value: object) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise InvalidInput(field, "must be an instant (a datetime with its zone)")
        return ensure_utc(value, field)

    limit = None if f.limit is None else whole_number("limit", f.limit, 1, 100_000)
    if not isinstance(f.newest_first, bool):
        raise InvalidInput("newest_first", "must be true or false")
    return audit.LogFilter(
        subject=ref("subject", f.subject),
        actor=ref("actor", f.actor),
        action=ref("action", f.action),
        since=instant("since", f.since),
        until=instant("until", f.until),
        limit=limit,
        newest_first=f.newest_first,
    )


def _with_retries(operation: Callable[[], T]) -> T:
    """Run ``operation`` (one whole transaction); rerun it after a lost race or a transient
    lock failure, so the retry sees the winner's commit and decides afresh."""
    for attempt in range(1, RETRIES + 1):
        try:
            return operation()
        except (Busy, _Race) as exc:
            if attempt == RETRIES:
                raise
            if not isinstance(exc, _WriterLost):  # that retry waits for the lock by itself
                time.sleep(random.uniform(0, 0.02 * 2**attempt))  # noqa: S311 - jitter only
    raise AssertionError("unreachable")


class _WriterLost(Busy):
    """SQLite: another writer held or took the lock while a credential was being checked."""


# A write that changes no row but makes SQLite take the write lock (WAL: the writer's lock).
_CLAIM_WRITER = text_sql("UPDATE settings SET key = key WHERE 0")


def _claim_writer(session: Session) -> None:
    """Upgrade a SQLite read transaction to a write transaction, now that its caller is known
    to be allowed. If another writer holds the lock or has committed since this transaction's
    first read, SQLite refuses at once (it cannot wait without breaking the snapshot): the call
    is then retried at once with ``BEGIN IMMEDIATE``, which waits for the lock and checks the
    credential again inside it."""
    try:
        session.execute(_CLAIM_WRITER)
    except OperationalError as exc:
        if "locked" not in str(exc.orig).lower() and "busy" not in str(exc.orig).lower():
            raise
        raise _WriterLost("another writer holds the database") from None


_SNAPSHOT = frozenset({Action.AUDIT_VERIFY, Action.AUDIT_READ})
_CALLER = "compliance.caller"  # session.info: the Caller a credential resolved to


class _Race(Conflict):
    """A uniqueness rule fired because another transaction won a race: worth a retry."""


_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03"})  # serialization, deadlock, lock


@contextmanager
def _database_errors() -> Iterator[None]:
    """Turn driver failures into the library's errors; our own errors pass through."""
    try:
        yield
    except ComplianceError:
        raise
    except IntegrityError as exc:
        raise _Race(f"conflicts with a concurrent change: {exc.orig}") from None
    except DBAPIError as exc:
        state = getattr(exc.orig, "sqlstate", None)
        text = str(exc.orig).lower()
        if state in _TRANSIENT_SQLSTATES or "locked" in text or "busy" in text:
            raise Busy(f"database busy: {exc.orig}") from None
        if isinstance(exc, OperationalError):
            raise DatabaseNotReady(f"database unavailable: {exc.orig}") from None
        if isinstance(exc, ProgrammingError):
            raise DatabaseNotReady(f"database schema problem: {exc.orig}") from None
        raise DatabaseNotReady(f"database error: {exc.orig}") from None


__all__ = ["Compliance"]
