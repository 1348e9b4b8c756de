"""Signed checkpoints against an intruder who can write anything in the database but does not hold
the signing key: every hash recomputed, the head table and checkpoint marks made consistent, old
backups restored. Each tampering here passed ``audit verify`` before checkpoints were signed.

The intruder is modelled by ``rewrite``: it takes the events as the intruder wants them and makes
every chain, head, mark, legacy checkpoint digest and the subject index consistent again, so the
only thing left to catch them is what they cannot recompute: a signature.
"""

from __future__ import annotations

import base64
import copy
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, insert, select, update

from compliance.api import Compliance
from compliance.audit.chain import (
    GENESIS,
    SYSTEM_CHAIN,
    AuditRecord,
    checkpoint_digest,
    compute_hash,
)
from compliance.audit.signing import Ed25519Signer, fingerprint
from compliance.audit.store import CHECKPOINT_ACTION, canonical_json, signed_ref
from compliance.clock import FixedClock
from compliance.db.models import Authorization, Course
from compliance.errors import InvalidInput
from tests.conftest import T0, TEST_SIGNER, _pg_url, create_pg_database, drop_pg_database
from tests.test_audit import (
    EVENT_COLUMNS,
    EVENTS,
    HEADS,
    SUBJECTS,
    build_trail,
    clone_sqlite,
    tampering,
)

Events = list[dict[str, Any]]


# --- the intruder ------------------------------------------------------------------------------


def _hash(row: dict[str, Any]) -> str:
    fields = {k: row[k] for k in EVENT_COLUMNS if k != "hash"}
    record = AuditRecord(
        **{
            **fields,
            "subjects": tuple(row["subjects"]),
            "reason_codes": tuple(row["reason_codes"]),
        }
    )
    return compute_hash(record)


def rewrite(
    url: str,
    edit: Callable[[Events], Events],
    *,
    marks: Callable[[str, int, int], int] | None = None,
    signed: Callable[[list[dict[str, Any]]], None] | None = None,
) -> None:
    """Apply ``edit`` to the events, then make everything the database can check consistent.

    ``marks(chain, old_mark, new_length)`` chooses each chain's checkpoint mark (default: the old
    one, cut to the chain's new length), and the last checkpoint's list of heads is made to agree;
    ``signed`` may rewrite the signed checkpoint documents (the intruder has no key to re-sign).
    """
    with tampering(url) as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(EVENTS))]
        old_marks = {
            str(chain): int(mark)
            for chain, mark in conn.execute(select(HEADS.c.chain_id, HEADS.c.checkpointed_seq))
        }
        rows = edit(copy.deepcopy(rows))
        chains: dict[str, Events] = {}
        for row in sorted(rows, key=lambda r: (r["chain_id"], r["chain_seq"], r["id"])):
            chains.setdefault(row["chain_id"], []).append(row)
        new_hash: dict[tuple[str, int], str] = {}
        final_marks: dict[str, int] = {}
        for chain in sorted(c for c in chains if c != SYSTEM_CHAIN):
            prev = GENESIS
            for seq, row in enumerate(chains[chain], start=1):
                row["chain_seq"], row["prev_hash"] = seq, prev
                row["hash"] = prev = new_hash[(chain, seq)] = _hash(row)
            length = len(chains[chain])
            mark = min(old_marks.get(chain, 0), length)
            final_marks[chain] = marks(chain, old_marks.get(chain, 0), length) if marks else mark
        system = chains.get(SYSTEM_CHAIN, [])
        checkpoints = [r for r in system if r["action"] == CHECKPOINT_ACTION]
        if signed is not None:
            signed([r["payload"]["signed"] for r in checkpoints if "signed" in r["payload"]])
        recorded: dict[str, int] = {}
        prev, previous_digest = GENESIS, GENESIS
        for seq, row in enumerate(system, start=1):
            row["chain_seq"], row["prev_hash"] = seq, prev
            if row["action"] == CHECKPOINT_ACTION:
                heads = {}
                for c, (listed_seq, _) in row["payload"].get("heads", {}).items():
                    if c in chains:
                        s = min(int(listed_seq), len(chains[c]))
                        heads[c] = [s, new_hash[(c, s)]]
                        recorded[c] = s
                if row is checkpoints[-1]:
                    for c, mark in final_marks.items():
                        if mark and mark != recorded.get(c, 0):
                            heads[c] = [mark, new_hash[(c, mark)]]
                row["payload"]["heads"] = heads
                row["payload"]["previous"] = previous_digest
                listed = [(c, s, h) for c, (s, h) in heads.items()]
                row["payload"]["digest"] = previous_digest = checkpoint_digest(
                    listed, previous_digest
                )
            row["hash"] = prev = _hash(row)
        conn.execute(delete(SUBJECTS))
        conn.execute(delete(EVENTS))
        conn.execute(delete(HEADS))
        for chain, chain_rows in chains.items():
            for row in chain_rows:
                conn.execute(insert(EVENTS).values(row))
                for subject in dict.fromkeys(row["subjects"]):
                    conn.execute(insert(SUBJECTS).values(subject=subject, event_id=row["id"]))
            last = chain_rows[-1]
            conn.execute(
                insert(HEADS).values(
                    chain_id=chain,
                    last_seq=len(chain_rows),
                    last_hash=last["hash"],
                    last_event_id=last["id"],
                    checkpointed_seq=final_marks.get(chain, 0),
                )
            )


# --- the trail ---------------------------------------------------------------------------------


class Trail:
    """A trail with two signed checkpoints, a third one published outside the database, and
    activity after it. ``late`` is a chain begun after the second checkpoint."""

    def __init__(self, url: str) -> None:
        self.url = url
        clock = FixedClock(T0)
        with Compliance.open(url, clock) as app:
            self.admin = build_trail(app, clock)
            self.late = _chains_of(app, "patient.register")[-1]
            clock.set(T0 + timedelta(hours=1))
            self.published = dict(app.checkpoint_audit(self.admin).signed)
            clock.set(T0 + timedelta(hours=2))
            world_designee = _designee(app)
            app.register_patient(world_designee, "Patient After Publishing", "1980-03-03")
            self.prescriber = _chains_of(app, "prescriber.reinstate")[0]

    def verify(self, *, published: bool = True, url: str | None = None) -> Any:
        with Compliance.open(url or self.url, FixedClock(T0 + timedelta(days=1))) as app:
            return app.verify_audit(self.admin, against=self.published if published else None)


def _chains_of(app: Compliance, action: str) -> list[str]:
    with app.engine.connect() as conn:
        return [
            str(c)
            for c in conn.execute(
                select(EVENTS.c.chain_id).where(EVENTS.c.action == action).order_by(EVENTS.c.id)
            ).scalars()
        ]


def _designee(app: Compliance) -> str:
    with app.engine.connect() as conn:
        return str(
            conn.execute(
                select(EVENTS.c.actor_id).where(EVENTS.c.action == "patient.register").limit(1)
            ).scalar_one()
        )


@pytest.fixture
def trail(db_url: str) -> Trail:
    made = Trail(db_url)
    assert made.verify().ok, made.verify().first_break
    return made


def _broken(report: Any) -> str:
    assert not report.ok, "tampering not detected"
    assert report.first_break is not None and report.first_break.problem
    return str(report.first_break.problem)


# --- tamperings that need only the signatures stored in the database ---------------------------


def test_truncating_a_chain_is_detected(trail: Trail) -> None:
    def drop_last(rows: Events) -> Events:
        last = max(r["chain_seq"] for r in rows if r["chain_id"] == trail.prescriber)
        return [r for r in rows if (r["chain_id"], r["chain_seq"]) != (trail.prescriber, last)]

    rewrite(trail.url, drop_last)
    assert "signed checkpoint" in _broken(trail.verify(published=False))
    _broken(trail.verify())


def test_deleting_a_chain_begun_after_the_previous_checkpoint_is_detected(trail: Trail) -> None:
    rewrite(trail.url, lambda rows: [r for r in rows if r["chain_id"] != trail.late])
    _broken(trail.verify(published=False))
    _broken(trail.verify())


def test_editing_and_rehashing_an_event_is_detected(trail: Trail) -> None:
    def edit(rows: Events) -> Events:
        first = next(r for r in sorted(rows, key=lambda r: r["id"]) if r["chain_id"] == trail.late)
        first["payload"] = {**first["payload"], "name": "Someone Else"}
        return rows

    rewrite(trail.url, edit)
    assert "signed checkpoint" in _broken(trail.verify(published=False))


def test_editing_a_signed_checkpoint_is_detected(trail: Trail) -> None:
    def edit(docs: list[dict[str, Any]]) -> None:
        docs[-1]["statement"]["events"] += 1

    rewrite(trail.url, lambda rows: rows, signed=edit)
    assert "signature" in _broken(trail.verify(published=False))


def test_a_forged_event_inside_the_signed_part_is_detected(trail: Trail) -> None:
    """A forged event appended to a chain, its head moved and its mark moved, as if the last
    checkpoint had covered it."""

    def forge(rows: Events) -> Events:
        chain = [r for r in rows if r["chain_id"] == trail.prescriber]
        last = max(chain, key=lambda r: r["chain_seq"])
        forged = {
            **copy.deepcopy(last),
            "id": max(r["id"] for r in rows) + 1,
            "chain_seq": last["chain_seq"] + 1,
            "payload": {**last["payload"], "forged": True},
        }
        return [*rows, forged]

    rewrite(trail.url, forge, marks=lambda chain, old, n: n if chain == trail.prescriber else old)
    _broken(trail.verify(published=False))


def test_checkpoints_re_signed_with_another_key_are_detected(trail: Trail) -> None:
    intruder = Ed25519Signer.generate()

    def resign(docs: list[dict[str, Any]]) -> None:
        previous = GENESIS
        for doc in docs:
            doc["statement"]["key"] = fingerprint(intruder.public_key)
            doc["statement"]["previous"] = previous
            doc["signature"] = base64.b64encode(
                intruder.sign(canonical_json(doc["statement"]))
            ).decode()
            doc["public_key"] = base64.b64encode(intruder.public_key).decode()
            previous = signed_ref(doc)

    rewrite(trail.url, lambda rows: rows, signed=resign)
    assert "another key" in _broken(trail.verify(published=False))


def test_a_forged_checkpoint_signed_with_another_key_is_refused_as_published(
    trail: Trail,
) -> None:
    intruder = Ed25519Signer.generate()
    forged = copy.deepcopy(trail.published)
    forged["statement"]["key"] = fingerprint(intruder.public_key)
    forged["signature"] = base64.b64encode(
        intruder.sign(canonical_json(forged["statement"]))
    ).decode()
    forged["public_key"] = base64.b64encode(intruder.public_key).decode()
    with (
        Compliance.open(trail.url, FixedClock(T0 + timedelta(days=1))) as app,
        pytest.raises(InvalidInput, match="another key"),
    ):
        app.verify_audit(trail.admin, against=forged)


# --- tamperings only a published checkpoint can catch ------------------------------------------


def test_removing_every_signature_is_detected_against_the_published_checkpoint(
    trail: Trail,
) -> None:
    def unsign(rows: Events) -> Events:
        for row in rows:
            if row["action"] == CHECKPOINT_ACTION:
                row["payload"].pop("signed", None)
        return rows

    rewrite(trail.url, unsign)
    assert "published" in _broken(trail.verify())


@contextmanager
def backup_of(url: str, label: str) -> Iterator[str]:
    """A full copy of the database as it is now, as a restored backup would be."""
    if url.startswith("sqlite"):
        source = Path(url.removeprefix("sqlite:///"))
        path = source.with_name(f"{source.stem}-{label}.db")
        clone_sqlite(source, path)
        try:
            yield f"sqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm"):
                path.with_name(path.name + suffix).unlink(missing_ok=True)
    else:
        name = create_pg_database(template=url.rsplit("/", 1)[1])
        try:
            yield _pg_url(name)
        finally:
            drop_pg_database(name)


def test_restoring_an_older_backup_is_detected(db_url: str) -> None:
    clock = FixedClock(T0)
    with Compliance.open(db_url, clock) as app:
        admin = build_trail(app, clock)
    with backup_of(db_url, "before") as old:
        with Compliance.open(db_url, clock) as app:
            clock.set(T0 + timedelta(hours=1))
            published = dict(app.checkpoint_audit(admin).signed)
            assert app.verify_audit(admin, against=published).ok
        with Compliance.open(old, clock) as app:
            assert app.verify_audit(admin).ok
            report = app.verify_audit(admin, against=published)
    assert "older backup" in _broken(report)


# --- business rows written around the service --------------------------------------------------


@pytest.fixture
def authorized(db_url: str) -> Iterator[tuple[Compliance, str]]:
    from tests.conftest import build_world
    from tests.test_course_api import START, Clinic, qualified_pcgp

    clock = FixedClock(START)
    app = Compliance.open(db_url, clock)
    c = Clinic(app, clock, build_world(app), honolulu="")
    pat = qualified_pcgp(c)
    rx = c.app.prescribe(c.prs, pat, 30).prescription
    assert rx is not None
    auth = c.app.request_authorization(c.rph, rx.id).authorization
    assert auth is not None
    assert c.app.verify_audit(c.world.admin.id).ok
    yield c.app, c.world.admin.id
    c.app.close()


def test_an_authorization_without_its_event_is_detected(
    authorized: tuple[Compliance, str],
) -> None:
    app, admin = authorized
    with app.engine.begin() as conn:
        row = dict(conn.execute(select(Authorization.__table__)).one()._mapping)
        row.update(number="FORGED" + row["number"][6:], cycle=row["cycle"] + 5)
        conn.execute(insert(Authorization.__table__).values(row))
    assert "no dispense.authorize event" in _broken(app.verify_audit(admin))


def test_a_dispense_without_its_event_is_detected(authorized: tuple[Compliance, str]) -> None:
    app, admin = authorized
    with app.engine.begin() as conn:
        conn.execute(
            update(Authorization.__table__).values(
                dispensed_at=T0 + timedelta(days=90), dispensed_by="RPH-FORGED00"
            )
        )
    assert "no dispense.record event" in _broken(app.verify_audit(admin))


def test_a_course_state_changed_without_its_event_is_detected(
    authorized: tuple[Compliance, str],
) -> None:
    app, admin = authorized
    with app.engine.begin() as conn:
        conn.execute(update(Course.__table__).values(state="dispensed"))
    assert "last audit event" in _broken(app.verify_audit(admin))


def test_beside_the_walk_the_first_break_is_the_same_as_in_one_pass(
    authorized: tuple[Compliance, str],
) -> None:
    """The business tables are checked on a second connection beside the walk: what is reported
    is what a single pass reports, a broken chain first, a business row once the chains hold."""
    from sqlalchemy.orm import Session

    from compliance.audit import store
    from compliance.db.models import AuditEvent

    app, admin = authorized

    def one_pass() -> Any:
        with Session(app.engine) as session, session.begin():
            return store.verify(session)

    with app.engine.begin() as conn:
        conn.execute(update(Course.__table__).values(state="dispensed"))
    both = app.verify_audit(admin), one_pass()
    assert [r.first_break for r in both] == [both[1].first_break] * 2
    assert "last audit event" in _broken(both[0])
    from tests.test_audit import tampering

    with tampering(str(app.engine.url.render_as_string(hide_password=False))) as conn:
        first = conn.execute(select(AuditEvent.id).order_by(AuditEvent.id).limit(1)).scalar_one()
        conn.execute(
            update(AuditEvent.__table__).where(AuditEvent.id == first).values(action="forged")
        )
    both = app.verify_audit(admin), one_pass()
    assert both[0].first_break == both[1].first_break
    assert both[0].first_break is not None and both[0].first_break.event_id == first


# --- keys and the CLI --------------------------------------------------------------------------


def test_a_checkpoint_needs_a_key(app: Compliance, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import build_world

    admin = build_world(app).admin.id
    monkeypatch.delenv("COMPLIANCE_AUDIT_KEY")
    with pytest.raises(InvalidInput, match="must be signed"):
        app.checkpoint_audit(admin)
    point = app.checkpoint_audit(admin, TEST_SIGNER)
    assert point.signed["statement"]["key"] == fingerprint(TEST_SIGNER.public_key)


def test_keygen_checkpoint_out_and_verify_against(tmp_path: Path, sqlite_url: str) -> None:
    from click.testing import CliRunner

    from compliance.cli.main import cli

    runner = CliRunner()
    key = tmp_path / "audit-key.pem"
    made = runner.invoke(cli, ["audit", "keygen", "--out", str(key)])
    assert made.exit_code == 0, made.output
    assert "BEGIN PUBLIC KEY" in made.stdout
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    again = runner.invoke(cli, ["audit", "keygen", "--out", str(key)])
    assert again.exit_code == 2 and "never overwritten" in again.output
    public = tmp_path / "audit-key.pub"
    public.write_text(made.stdout)
    with Compliance.open(sqlite_url, FixedClock(T0)) as app:
        from tests.conftest import build_world

        admin = build_world(app).admin.id
    base = ["--db", sqlite_url, "--as", admin, "audit"]
    published = tmp_path / "checkpoint.json"
    out = runner.invoke(cli, [*base, "checkpoint", "--key-file", str(key), "--out", str(published)])
    assert out.exit_code == 0, out.output
    to_stdout = runner.invoke(cli, [*base, "checkpoint", "--key-file", str(key), "--out", "-"])
    assert to_stdout.exit_code == 0 and to_stdout.stdout.startswith('{"public_key":')
    check = [*base, "verify", "--against", str(published), "--public-key", str(public)]
    ok = runner.invoke(cli, check)
    assert ok.exit_code == 0, ok.output
    assert "2 signed" in ok.output
    # The suite's own key is not the one these checkpoints were signed with.
    other = runner.invoke(cli, [*base, "verify"])
    assert other.exit_code == 7 and "another key" in other.output
