"""The embedding surface: one ``Compliance`` object per database, every call naming who acts.

Each call is one transaction. A refusal (wrong role, inactive person, out of scope) rolls back
whatever the call had begun, then is written to the audit trail in a transaction of its own and
raised as ``NotPermitted``. Invalid input, unknown records and conflicts write nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from compliance.api import parties, patients, settings
from compliance.api.authz import Acting, Actor, authorize
from compliance.api.results import (
    GrantInfo,
    PatientInfo,
    PatientRegistration,
    PersonInfo,
    PharmacyInfo,
    SchemaStatus,
)
from compliance.audit import store as audit
from compliance.audit.chain import AuditRecord
from compliance.clock import Clock, SystemClock, ensure_utc
from compliance.db import migrate
from compliance.db.engine import make_engine, resolve_url
from compliance.domain.ids import Kind, kind_of, normalise
from compliance.domain.roles import READ_ONLY, Action
from compliance.errors import Busy, ComplianceError, DatabaseNotReady, InvalidInput, NotPermitted

T = TypeVar("T")


class Compliance:
    """A handle on one compliance database.

    ``Compliance.open(url)`` creates and owns an engine; ``Compliance(engine)`` uses a host's own
    engine as it is (configure SQLite durability with ``compliance.db.engine.configure_sqlite``).
    """

    def __init__(self, engine: Engine, clock: Clock | None = None, *, owns_engine: bool = False):
        self.engine = engine
        self.clock: Clock = clock or SystemClock()
        self._owns_engine = owns_engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._reads = sessionmaker(
            engine.execution_options(sqlite_begin="DEFERRED"), expire_on_commit=False
        )
        self._schema_checked = False

    @classmethod
    def open(cls, url: str | None = None, clock: Clock | None = None) -> Compliance:
        """Open by URL (default: ``COMPLIANCE_DATABASE_URL``, else ``compliance.db`` here)."""
        return cls(make_engine(url), clock, owns_engine=True)

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    def __enter__(self) -> Compliance:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- schema ---------------------------------------------------------------------------

    def migrate(self, revision: str = "head") -> SchemaStatus:
        with _database_errors():
            migrate.upgrade(self.engine, revision)
        self._schema_checked = False
        return self.schema_status()

    def schema_status(self) -> SchemaStatus:
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

    def initialize(self, admin_name: str, *, remember_as: str | None = None) -> PersonInfo:
        """Migrate a new or existing database and create its first administrator.

        ``remember_as`` stores the administrator's id under that settings key, in the same
        transaction, for tools (such as the demonstration) that come back to the same database.
        """
        self.migrate()
        now = ensure_utc(self.clock.now(), "clock")
        with self._transaction() as session:
            admin = parties.create_first_administrator(session, admin_name, now)
            if remember_as is not None:
                settings.put(session, remember_as, {"id": admin.id}, now)
            return admin

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
    def _transaction(self, *, read_only: bool = False) -> Iterator[Session]:
        factory = self._reads if read_only else self._sessions
        with _database_errors(), factory() as session, session.begin():
            yield session

    def _call(
        self,
        acting: Acting,
        action: Action,
        body: Callable[[Session, Actor, datetime], T],
        about: tuple[object, ...] = (),
    ) -> T:
        self._require_schema()
        now = ensure_utc(self.clock.now(), "clock")
        try:
            with self._transaction(read_only=action in READ_ONLY) as session:
                actor = authorize(session, acting, action, now)
                return body(session, actor, now)
        except NotPermitted as refusal:
            self._record_refusal(acting, action, refusal, now, about)
            raise

    def _record_refusal(
        self,
        acting: Acting,
        action: Action,
        refusal: NotPermitted,
        now: datetime,
        about: tuple[object, ...],
    ) -> None:
        """File the refusal under what it was about, else under the person who tried."""
        actor_ref = normalise(acting.actor)[:64] if isinstance(acting.actor, str) else None
        subjects = refusal.subjects or _short_ids(about) or _short_ids((actor_ref,))
        on_behalf_of = refusal.on_behalf_of or (
            normalise(acting.on_behalf_of)[:64] if acting.on_behalf_of else None
        )
        draft = audit.EventDraft(
            action=action.value,
            outcome="refused",
            actor_id=actor_ref,
            on_behalf_of=on_behalf_of,
            subjects=subjects,
            reason_codes=refusal.reasons,
            payload={"message": refusal.message},
        )
        with self._transaction() as session:
            audit.append(session, draft, now)

    # --- administrators -------------------------------------------------------------------

    def add_administrator(self, actor: str, name: str) -> PersonInfo:
        return self._call(
            Acting(actor),
            Action.ADMINISTRATOR_CREATE,
            lambda s, a, now: parties.add_administrator(s, a, now, name),
        )

    def deactivate_administrator(self, actor: str, administrator: str) -> PersonInfo:
        return self._call(
            Acting(actor),
            Action.ADMINISTRATOR_DEACTIVATE,
            lambda s, a, now: parties.deactivate_administrator(s, a, now, administrator),
            about=(administrator,),
        )

    # --- prescribers ----------------------------------------------------------------------

    def register_prescriber(
        self, actor: str, name: str, external_id: str, id_system: str = "NPI"
    ) -> PersonInfo:
        return self._call(
            Acting(actor),
            Action.PRESCRIBER_REGISTER,
            lambda s, a, now: parties.register_prescriber(s, a, now, name, external_id, id_system),
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
        return self._prescriber(actor, Action.PRESCRIBER_ACTIVATE, prescriber, note)

    def suspend_prescriber(
        self, actor: str, prescriber: str, note: str | None = None
    ) -> PersonInfo:
        return self._prescriber(actor, Action.PRESCRIBER_SUSPEND, prescriber, note)

    def reinstate_prescriber(
        self, actor: str, prescriber: str, note: str | None = None
    ) -> PersonInfo:
        return self._prescriber(actor, Action.PRESCRIBER_REINSTATE, prescriber, note)

    def deactivate_prescriber(
        self, actor: str, prescriber: str, note: str | None = None
    ) -> PersonInfo:
        return self._prescriber(actor, Action.PRESCRIBER_DEACTIVATE, prescriber, note)

    # --- designees ------------------------------------------------------------------------

    def register_designee(self, actor: str, name: str) -> PersonInfo:
        return self._call(
            Acting(actor),
            Action.DESIGNEE_REGISTER,
            lambda s, a, now: parties.register_designee(s, a, now, name),
        )

    def deactivate_designee(self, actor: str, designee: str) -> PersonInfo:
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
        expiry = ensure_utc(expires_at, "expires_at") if expires_at is not None else None
        return self._call(
            Acting(actor),
            Action.GRANT_CREATE,
            lambda s, a, now: parties.grant_designee(
                s, a, now, designee, prescriber, scopes, expiry
            ),
            about=(designee, prescriber),
        )

    def revoke_grant(self, actor: str, designee: str, prescriber: str) -> GrantInfo:
        return self._call(
            Acting(actor),
            Action.GRANT_REVOKE,
            lambda s, a, now: parties.revoke_grant(s, a, now, designee, prescriber),
            about=(designee, prescriber),
        )

    def list_grants(
        self, actor: str, designee: str | None = None, on_behalf_of: str | None = None
    ) -> list[GrantInfo]:
        return self._call(
            Acting(actor, on_behalf_of),
            Action.PARTY_READ,
            lambda s, a, now: parties.list_grants(s, now, designee),
        )

    # --- pharmacies -----------------------------------------------------------------------

    def register_pharmacy(
        self, actor: str, name: str, external_id: str, time_zone: str, id_system: str = "NCPDP"
    ) -> PharmacyInfo:
        return self._call(
            Acting(actor),
            Action.PHARMACY_REGISTER,
            lambda s, a, now: parties.register_pharmacy(
                s, a, now, name, external_id, time_zone, id_system
            ),
        )

    def activate_pharmacy(
        self, actor: str, pharmacy: str, expires_on: object = None
    ) -> PharmacyInfo:
        return self._call(
            Acting(actor),
            Action.PHARMACY_ACTIVATE,
            lambda s, a, now: parties.activate_pharmacy(s, a, now, pharmacy, expires_on),
            about=(pharmacy,),
        )

    def deactivate_pharmacy(self, actor: str, pharmacy: str) -> PharmacyInfo:
        return self._call(
            Acting(actor),
            Action.PHARMACY_DEACTIVATE,
            lambda s, a, now: parties.deactivate_pharmacy(s, a, now, pharmacy),
            about=(pharmacy,),
        )

    def register_pharmacist(self, actor: str, name: str, pharmacy: str) -> PersonInfo:
        return self._call(
            Acting(actor),
            Action.PHARMACIST_REGISTER,
            lambda s, a, now: parties.register_pharmacist(s, a, now, name, pharmacy),
            about=(pharmacy,),
        )

    def deactivate_pharmacist(self, actor: str, pharmacist: str) -> PersonInfo:
        return self._call(
            Acting(actor),
            Action.PHARMACIST_DEACTIVATE,
            lambda s, a, now: parties.deactivate_pharmacist(s, a, now, pharmacist),
            about=(pharmacist,),
        )

    def get_pharmacy(
        self, actor: str, pharmacy: str, on_behalf_of: str | None = None
    ) -> PharmacyInfo:
        return self._call(
            Acting(actor, on_behalf_of),
            Action.PARTY_READ,
            lambda s, a, now: parties.show_pharmacy(s, pharmacy),
            about=(pharmacy,),
        )

    def list_pharmacies(
        self, actor: str, status: str | None = None, on_behalf_of: str | None = None
    ) -> list[PharmacyInfo]:
        return self._call(
            Acting(actor, on_behalf_of),
            Action.PARTY_READ,
            lambda s, a, now: parties.list_pharmacies(s, status),
        )

    # --- people ---------------------------------------------------------------------------

    def get_person(self, actor: str, person: str, on_behalf_of: str | None = None) -> PersonInfo:
        """An administrator, prescriber, designee or pharmacist, by short id."""
        kind = kind_of(normalise(person)) if isinstance(person, str) else None
        if kind is None or kind in {Kind.PATIENT, Kind.PHARMACY}:
            raise InvalidInput(
                "person", f"{person!r} is not the id of a person (ADM-, PRS-, DSG-, RPH-)"
            )
        return self._call(
            Acting(actor, on_behalf_of),
            Action.PARTY_READ,
            lambda s, a, now: parties.show_person(s, person, kind),
            about=(person,),
        )

    def list_people(
        self, actor: str, role: str, status: str | None = None, on_behalf_of: str | None = None
    ) -> list[PersonInfo]:
        kinds = {
            "administrator": Kind.ADMINISTRATOR,
            "prescriber": Kind.PRESCRIBER,
            "designee": Kind.DESIGNEE,
            "pharmacist": Kind.PHARMACIST,
        }
        if role not in kinds:
            raise InvalidInput("role", f"must be one of {', '.join(kinds)}")
        return self._call(
            Acting(actor, on_behalf_of),
            Action.PARTY_READ,
            lambda s, a, now: parties.list_people(s, kinds[role], status),
        )

    # --- patients -------------------------------------------------------------------------

    def register_patient(
        self,
        actor: str,
        name: str,
        date_of_birth: object,
        external_ids: Mapping[str, object] | None = None,
        on_behalf_of: str | None = None,
    ) -> PatientRegistration:
        return self._call(
            Acting(actor, on_behalf_of),
            Action.PATIENT_REGISTER,
            lambda s, a, now: patients.register(s, a, now, name, date_of_birth, external_ids),
        )

    def add_patient_external_id(
        self, actor: str, patient: str, system: str, value: str, on_behalf_of: str | None = None
    ) -> PatientInfo:
        return self._call(
            Acting(actor, on_behalf_of),
            Action.PATIENT_UPDATE,
            lambda s, a, now: patients.add_external_id(s, a, now, patient, system, value),
            about=(patient,),
        )

    def get_patient(self, actor: str, patient: str, on_behalf_of: str | None = None) -> PatientInfo:
        """By short id, internal UUID, or ``SYSTEM:VALUE`` external id."""
        return self._call(
            Acting(actor, on_behalf_of),
            Action.PATIENT_READ,
            lambda s, a, now: patients.info(s, patients.find_one(s, patient)),
            about=(patient,),
        )

    def find_patients(
        self,
        actor: str,
        name: str | None = None,
        date_of_birth: object = None,
        limit: int = 50,
        on_behalf_of: str | None = None,
    ) -> list[PatientInfo]:
        return self._call(
            Acting(actor, on_behalf_of),
            Action.PATIENT_READ,
            lambda s, a, now: patients.search(s, name, date_of_birth, limit),
        )

    # --- audit ----------------------------------------------------------------------------

    def verify_audit(self, actor: str) -> audit.VerifyReport:
        return self._call(Acting(actor), Action.AUDIT_VERIFY, lambda s, a, now: audit.verify(s))

    def checkpoint_audit(self, actor: str) -> audit.Checkpoint:
        return self._call(
            Acting(actor),
            Action.AUDIT_CHECKPOINT,
            lambda s, a, now: audit.checkpoint(s, a.short_id, now),
        )

    def audit_log(self, actor: str, log_filter: audit.LogFilter | None = None) -> list[AuditRecord]:
        f = log_filter or audit.LogFilter()
        return self._call(
            Acting(actor), Action.AUDIT_READ, lambda s, a, now: list(audit.stream(s, f))
        )

    def audit_count(self, actor: str, log_filter: audit.LogFilter | None = None) -> int:
        f = log_filter or audit.LogFilter()
        return self._call(Acting(actor), Action.AUDIT_READ, lambda s, a, now: audit.count(s, f))

    @contextmanager
    def audit_stream(
        self, actor: str, log_filter: audit.LogFilter | None = None
    ) -> Iterator[Iterator[AuditRecord]]:
        """Stream events of any volume inside one read transaction."""
        f = log_filter or audit.LogFilter()
        self._call(Acting(actor), Action.AUDIT_READ, lambda s, a, now: None)
        with self._transaction(read_only=True) as session:
            yield audit.stream(session, f)


def _short_ids(refs: tuple[object, ...]) -> tuple[str, ...]:
    """The well-formed short ids among ``refs``; anything else is not a subject to file under."""
    found = (normalise(r) for r in refs if isinstance(r, str))
    return tuple(r for r in found if kind_of(r) is not None)


@contextmanager
def _database_errors() -> Iterator[None]:
    """Turn driver failures into the library's errors; our own errors pass through."""
    try:
        yield
    except ComplianceError:
        raise
    except OperationalError as exc:
        text = str(exc.orig).lower()
        if "locked" in text or "busy" in text or "serializ" in text or "deadlock" in text:
            raise Busy(f"database busy: {exc.orig}") from None
        raise DatabaseNotReady(f"database unavailable: {exc.orig}") from None
    except ProgrammingError as exc:
        raise DatabaseNotReady(f"database schema problem: {exc.orig}") from None
    except DBAPIError as exc:
        raise DatabaseNotReady(f"database error: {exc.orig}") from None


def open_default(url: str | None = None, clock: Clock | None = None) -> Compliance:
    return Compliance.open(resolve_url(url), clock)


__all__ = ["Compliance"]
_ = Any
