"""Privileges for a PostgreSQL runtime role that is not the owner of the tables.

The owner of a table can ``ALTER TABLE ... DISABLE TRIGGER`` and so rewrite the audit trail past its
append-only triggers. The running service therefore connects as a separate role, which the owner
(the role that ran the migrations) grants only what the engine uses: SELECT and INSERT on the audit
events and their subject index, SELECT/INSERT/UPDATE on the chain heads (each append moves its
chain's head; a row lock needs UPDATE) and on the business tables (the engine never deletes), the
audit id sequence, and reading the schema revision. Nothing else: no DELETE, no TRUNCATE, no
ownership, no trigger changes.
"""

from __future__ import annotations

import re

from compliance.db.base import Base
from compliance.db.models import AUDIT_ID_SEQUENCE
from compliance.errors import InvalidInput

#: Rows the runtime role may add and read but never change.
APPEND_ONLY_TABLES = ("audit_events", "audit_event_subjects")
_ROLE = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def check_role(role: object) -> str:
    if not isinstance(role, str) or not _ROLE.fullmatch(role):
        raise InvalidInput(
            "--role",
            "must be a lower-case PostgreSQL role name: letters, digits and _, at most 63",
        )
    if role in {"postgres", "public"} or role.startswith("pg_"):
        raise InvalidInput("--role", f"{role!r} is reserved: name a role made for the service")
    return role


def grant_statements(role: str, database: str) -> list[str]:
    """The SQL that gives ``role`` exactly the runtime privileges (idempotent: revoke first)."""
    role = check_role(role)
    if not re.fullmatch(r"[A-Za-z0-9_]{1,63}", database):
        raise InvalidInput("database URL", f"database name {database!r} must be a plain identifier")
    tables = sorted(Base.metadata.tables)
    out = [
        f"GRANT CONNECT ON DATABASE {database} TO {role}",
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {role}",
        f"GRANT SELECT ON TABLE alembic_version TO {role}",
    ]
    for table in tables:
        rights = "SELECT, INSERT" if table in APPEND_ONLY_TABLES else "SELECT, INSERT, UPDATE"
        out.append(f"GRANT {rights} ON TABLE {table} TO {role}")
    out.append(f"GRANT USAGE ON SEQUENCE {AUDIT_ID_SEQUENCE.name} TO {role}")
    return out
