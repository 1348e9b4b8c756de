"""API clients and keys: issued once, stored only as a keyed hash, expiring, rotated with
overlap, revoked at once, scopes that only narrow, the asserted person checked against the
key's party, every key event audited; and the 0006 migration over a database at 0003."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text

from compliance.api import Compliance
from compliance.audit.store import LogFilter
from compliance.cli.main import cli
from compliance.clock import FixedClock
from compliance.db import migrate
from compliance.db import models as m
from compliance.db.engine import make_engine
from compliance.domain import credentials as cred
from compliance.domain import reasons as rc
from compliance.errors import InvalidInput, NotPermitted, Unauthenticated
from tests.conftest import T0, World, build_world

PEPPER = b"p" * 32


@pytest.fixture(autouse=True)
def _pepper(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPLIANCE_API_PEPPER", PEPPER.decode())


def _codes(
    exc: pytest.ExceptionInfo[Unauthenticated] | pytest.ExceptionInfo[NotPermitted],
) -> tuple[str, ...]:
    return tuple(exc.value.reasons)


def test_key_is_shown_once_and_stored_only_as_a_keyed_hash(world: World) -> None:
    app, admin = world.app, world.admin.id
    issued = app.add_client(admin, "Terminal 1", "pharmacy-terminal", world.pharmacy.id)
    key_id, secret = cred.parse_key(issued.key) or ("", "")
    assert key_id == issued.key_id and len(secret) >= 43
    with app.engine.connect() as conn:
        stored = conn.execute(select(m.ApiKey.secret_hash, m.ApiKey.pepper_id)).one()
        dump = json.dumps(
            [list(r) for r in conn.execute(text("SELECT * FROM api_keys"))], default=str
        )
    assert secret not in dump
    assert stored.secret_hash == cred.digest(PEPPER, key_id, secret)
    # Listing never shows a secret.
    listed = json.dumps([c.to_dict() for c in app.list_clients(admin)])
    assert secret not in listed and issued.key_id in listed
    caller = app.authenticate(issued.key, world.pharmacist.id)
    assert (caller.client, caller.actor, caller.kind) == (
        issued.client.id,
        world.pharmacist.id,
        "pharmacy-terminal",
    )


def test_a_different_pepper_rejects_every_key(world: World) -> None:
    issued = world.app.add_client(world.admin.id, "Admin tool", "administrator", world.admin.id)
    with pytest.raises(Unauthenticated) as exc:
        world.app.authenticate(issued.key, pepper=b"q" * 32)
    assert _codes(exc) == (rc.CREDENTIAL_INVALID,)


@pytest.mark.parametrize(
    ("key", "code"),
    [
        (None, rc.CREDENTIAL_MISSING),
        ("", rc.CREDENTIAL_MISSING),
        ("nonsense", rc.CREDENTIAL_INVALID),
        ("cpl_0123456789abcdef_" + "A" * 43, rc.CREDENTIAL_INVALID),
    ],
)
def test_missing_or_unknown_keys_are_unauthenticated(
    world: World, key: str | None, code: str
) -> None:
    with pytest.raises(Unauthenticated) as exc:
        world.app.authenticate(key)
    assert _codes(exc) == (code,)


def test_a_tampered_secret_is_refused(world: World) -> None:
    issued = world.app.add_client(world.admin.id, "Admin tool", "administrator", world.admin.id)
    tampered = issued.key[:-1] + ("A" if issued.key[-1] != "A" else "B")
    with pytest.raises(Unauthenticated) as exc:
        world.app.authenticate(tampered)
    assert _codes(exc) == (rc.CREDENTIAL_INVALID,)


def test_keys_expire_after_a_year_by_default(world: World, clock: FixedClock) -> None:
    issued = world.app.add_client(world.admin.id, "Admin tool", "administrator", world.admin.id)
    assert issued.expires_at == T0 + timedelta(days=365)
    clock.set(T0 + timedelta(days=364))
    assert world.app.authenticate(issued.key).actor == world.admin.id
    clock.set(T0 + timedelta(days=365))
    with pytest.raises(Unauthenticated) as exc:
        world.app.authenticate(issued.key)
    assert _codes(exc) == (rc.CREDENTIAL_EXPIRED,)


def test_rotation_overlaps_then_the_old_key_stops(world: World, clock: FixedClock) -> None:
    app, admin = world.app, world.admin.id
    first = app.add_client(admin, "Prescriber EHR", "prescriber-system", world.prescriber.id)
    second = app.rotate_client_key(admin, first.client.id, overlap_days=2)
    assert app.authenticate(first.key).actor == world.prescriber.id
    assert app.authenticate(second.key).actor == world.prescriber.id
    third = app.rotate_client_key(admin, first.client.id, overlap_days=2)
    # Never more than two live keys: the oldest stopped at the second rotation.
    with pytest.raises(Unauthenticated) as exc:
        app.authenticate(first.key)
    assert _codes(exc) == (rc.CREDENTIAL_REVOKED,)
    assert [k.live for k in app.get_client(admin, first.client.id).keys] == [False, True, True]
    clock.set(T0 + timedelta(days=2))
    with pytest.raises(Unauthenticated):
        app.authenticate(second.key)
    assert app.authenticate(third.key).client == first.client.id


def test_revocation_is_immediate_for_a_key_and_for_the_client(world: World) -> None:
    app, admin = world.app, world.admin.id
    issued = app.add_client(admin, "Admin tool", "administrator", world.admin.id)
    newer = app.rotate_client_key(admin, issued.client.id)
    app.revoke_client(admin, issued.client.id, newer.key_id)
    with pytest.raises(Unauthenticated):
        app.authenticate(newer.key)
    assert app.authenticate(issued.key).actor == world.admin.id
    info = app.revoke_client(admin, issued.client.id)
    assert info.revoked_at == T0 and not any(k.live for k in info.keys)
    with pytest.raises(Unauthenticated) as exc:
        app.authenticate(issued.key)
    assert _codes(exc) == (rc.CREDENTIAL_REVOKED,)
    with pytest.raises(NotPermitted):
        app.rotate_client_key(admin, issued.client.id)


def test_scopes_only_narrow_the_partys_role(world: World) -> None:
    app, admin = world.app, world.admin.id
    default = app.add_client(admin, "T", "pharmacy-terminal", world.pharmacy.id)
    assert "prescribe" not in default.client.scopes and "admin" not in default.client.scopes
    assert "dispense:authorize" in default.client.scopes
    narrow = app.add_client(admin, "T2", "pharmacy-terminal", world.pharmacy.id, ["dispense:check"])
    assert narrow.client.scopes == ("dispense:check",)
    with pytest.raises(InvalidInput) as exc:
        app.add_client(admin, "T3", "pharmacy-terminal", world.pharmacy.id, ["prescribe"])
    assert exc.value.field == "scopes"
    with pytest.raises(InvalidInput):
        app.add_client(
            admin, "T4", "prescriber-system", world.prescriber.id, ["dispense:authorize"]
        )
    with pytest.raises(InvalidInput) as kind:
        app.add_client(admin, "T5", "robot", world.prescriber.id)
    assert kind.value.field == "kind"
    with pytest.raises(InvalidInput) as party:
        app.add_client(admin, "T6", "pharmacy-terminal", world.prescriber.id)
    assert party.value.field == "party"


def test_only_administrators_manage_clients(world: World) -> None:
    with pytest.raises(NotPermitted):
        world.app.add_client(world.prescriber.id, "Mine", "prescriber-system", world.prescriber.id)
    with pytest.raises(NotPermitted):
        world.app.list_clients(world.pharmacist.id)


def test_the_asserted_person_must_belong_to_the_keys_party(world: World) -> None:
    app, admin = world.app, world.admin.id
    terminal = app.add_client(admin, "T", "pharmacy-terminal", world.pharmacy.id)
    other_pharmacy = app.register_pharmacy(admin, "Elsewhere", "7654321", "America/New_York")
    stranger = app.register_pharmacist(admin, "Stranger", other_pharmacy.id)
    with pytest.raises(InvalidInput) as missing:
        app.authenticate(terminal.key)
    assert missing.value.field == "X-Acting-Person"
    for person in (stranger.id, world.prescriber.id, world.admin.id):
        with pytest.raises(NotPermitted) as exc:
            app.authenticate(terminal.key, person)
        assert _codes(exc) == (rc.ACTING_PERSON_NOT_OF_CLIENT,)
    ehr = app.add_client(admin, "EHR", "prescriber-system", world.prescriber.id)
    designee = app.authenticate(ehr.key, world.designee.id)
    assert (designee.actor, designee.on_behalf_of) == (world.designee.id, world.prescriber.id)
    with pytest.raises(NotPermitted):
        app.authenticate(ehr.key, world.pharmacist.id)
    other = app.register_prescriber(admin, "Dr Other", "1245319599")
    with pytest.raises(NotPermitted):
        app.authenticate(ehr.key, world.designee.id, other.id)


def test_every_key_event_is_audited_with_the_client(world: World) -> None:
    app, admin = world.app, world.admin.id
    issued = app.add_client(admin, "Admin tool", "administrator", world.admin.id)
    app.rotate_client_key(admin, issued.client.id)
    app.revoke_client(admin, issued.client.id)
    events = app.audit_log(admin, LogFilter(subject=issued.client.id))
    assert [e.action for e in events] == ["client.add", "client.rotate", "client.revoke"]
    assert all(e.actor_id == admin for e in events)
    secret = issued.key.split("_", 2)[2]  # the secret itself may contain "_"
    assert secret and secret not in json.dumps([e.payload for e in events])
    with pytest.raises(NotPermitted):
        app.add_client(world.pharmacist.id, "x", "administrator", admin)
    refused = app.audit_log(admin, LogFilter(action="client.add"))
    assert [e.outcome for e in refused] == ["ok", "refused"]
    assert app.verify_audit(admin).ok


def test_a_missing_pepper_is_named(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COMPLIANCE_API_PEPPER")
    with pytest.raises(InvalidInput) as exc:
        world.app.add_client(world.admin.id, "x", "administrator", world.admin.id)
    assert exc.value.field == "COMPLIANCE_API_PEPPER"
    with pytest.raises(InvalidInput):
        world.app.add_client(world.admin.id, "x", "administrator", world.admin.id, pepper=b"short")


def test_cli_add_list_rotate_revoke(sqlite_url: str) -> None:
    with Compliance.open(sqlite_url, FixedClock(T0)) as app:
        w = build_world(app)
    runner = CliRunner()

    def run(*args: str) -> dict[str, object] | list[dict[str, object]]:
        result = runner.invoke(cli, ["--db", sqlite_url, "--as", w.admin.id, *args, "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    added = run(
        "client",
        "add",
        "--name",
        "T1",
        "--kind",
        "pharmacy-terminal",
        "--party",
        w.pharmacy.id,
        "--scope",
        "dispense:check",
    )
    assert isinstance(added, dict)
    client = added["client"]
    assert isinstance(client, dict) and client["scopes"] == ["dispense:check"]
    rotated = run("client", "rotate", str(client["id"]), "--overlap-days", "0")
    assert isinstance(rotated, dict) and rotated["key"] != added["key"]
    listed = run("client", "list")
    assert isinstance(listed, list) and [k["live"] for k in listed[0]["keys"]] == [False, True]  # type: ignore[index, union-attr]
    revoked = run("client", "revoke", str(client["id"]))
    assert isinstance(revoked, dict) and revoked["revoked_at"] is not None
    refused = runner.invoke(cli, ["--db", sqlite_url, "--as", w.pharmacist.id, "client", "list"])
    assert refused.exit_code == 4


@pytest.mark.parametrize(
    "url_fixture", ["empty_sqlite_url", pytest.param("empty_pg_url", marks=pytest.mark.postgres)]
)
def test_migration_0006_over_a_database_at_0003_keeps_its_data(
    url_fixture: str, request: pytest.FixtureRequest
) -> None:
    url = str(request.getfixturevalue(url_fixture))
    engine = make_engine(url)
    try:
        migrate.upgrade(engine, "0003")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO settings (key, value, updated_at) VALUES ('kept', '{\"a\": 1}', :t)"
                ),
                {"t": T0.replace(tzinfo=None) if engine.dialect.name == "sqlite" else T0},
            )
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.head_revision()
        assert migrate.drift(engine) is None
        with engine.connect() as conn:
            assert conn.execute(
                text("SELECT value FROM settings WHERE key = 'kept'")
            ).scalar_one() in ({"a": 1}, '{"a": 1}')
        migrate.downgrade(engine, "0003")
        with engine.connect() as conn:
            assert (
                conn.execute(text("SELECT count(*) FROM settings WHERE key = 'kept'")).scalar_one()
                == 1
            )
        migrate.upgrade(engine)
    finally:
        engine.dispose()
    with Compliance.open(url, FixedClock(T0)) as app:
        w = build_world(app)
        issued = app.add_client(w.admin.id, "Admin tool", "administrator", w.admin.id)
        assert app.authenticate(issued.key).actor == w.admin.id
        assert app.verify_audit(w.admin.id).ok


def test_a_malformed_client_id_is_named(world: World) -> None:
    for call in (
        lambda: world.app.get_client(world.admin.id, "nonsense"),
        lambda: world.app.rotate_client_key(world.admin.id, "PAT-1234", pepper=PEPPER),
        lambda: world.app.revoke_client(world.admin.id, ""),
    ):
        with pytest.raises(InvalidInput) as exc:
            call()
        assert exc.value.field == "client"


def test_a_key_revoked_after_authentication_commits_nothing(world: World) -> None:
    from compliance.api.clients import calling_as

    app, admin = world.app, world.admin.id
    issued = app.add_client(admin, "Admin tool", "administrator", admin)
    caller = app.authenticate(issued.key)
    app.revoke_client(admin, issued.client.id)
    with calling_as(caller), pytest.raises(Unauthenticated) as exc:
        app.register_designee(caller.actor, "Dana Late")
    assert _codes(exc) == (rc.CREDENTIAL_REVOKED,)
    assert [p.name for p in app.list_people(admin, "designee")] == [world.designee.name]
