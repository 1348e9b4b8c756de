"""The HTTP service against a real uvicorn server on a loopback port, through a real HTTP client,
on SQLite and PostgreSQL: every endpoint, every error shape, authentication and scope refusals,
eight clients racing for one authorization, and retries with the same Idempotency-Key."""

from __future__ import annotations

import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")

from fastapi import FastAPI  # noqa: E402
from sqlalchemy import event  # noqa: E402

from compliance.api import Compliance  # noqa: E402
from compliance.audit.store import LogFilter  # noqa: E402
from compliance.clock import FixedClock  # noqa: E402
from compliance.domain import reasons as rc  # noqa: E402
from compliance.domain.authorization_number import new_number  # noqa: E402
from compliance.domain.ids import Kind, new_short_id  # noqa: E402
from compliance.errors import Busy, DatabaseNotReady  # noqa: E402
from compliance.http import create_app  # noqa: E402
from compliance.http.problems import from_error  # noqa: E402
from tests.conftest import (  # noqa: E402
    T0,
    World,
    _pg_url,
    build_world,
    create_pg_database,
    drop_pg_database,
    next_npi,
)

PEPPER = b"http-test-pepper-0123456789abcdef"
PROBLEM = "application/problem+json"


@dataclass
class Running:
    base: str
    app: Compliance
    w: World
    admin_key: str
    terminal_key: str
    terminal2_key: str
    ehr_key: str
    narrow_key: str
    pharmacist2: str
    server: Any

    def client(self, key: str | None = None, **headers: str) -> httpx.Client:
        sent = dict(headers)
        if key is not None:
            sent["Authorization"] = f"Bearer {key}"
        return httpx.Client(base_url=self.base, headers=sent, timeout=30)

    def terminal(self, **headers: str) -> httpx.Client:
        return self.client(
            self.terminal_key, **{"X-Acting-Person": self.w.pharmacist.id}, **headers
        )

    def ehr(self, **headers: str) -> httpx.Client:
        return self.client(self.ehr_key, **headers)

    def admin(self) -> httpx.Client:
        return self.client(self.admin_key)


def serve(app: FastAPI) -> tuple[Any, threading.Thread, str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    return server, thread, f"http://127.0.0.1:{port}"


def stop(server: Any, thread: threading.Thread) -> None:
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def running(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    pg_name = None
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path_factory.mktemp("http") / "compliance.db"
        shutil.copy(template, path)
        url = f"sqlite:///{path}"
    else:
        pg_name = create_pg_database(template=request.getfixturevalue("pg_template"))
        url = _pg_url(pg_name)
    compliance = Compliance.open(url, FixedClock(T0))
    try:
        w = build_world(compliance)
        admin = w.admin.id
        other = compliance.register_pharmacy(admin, "Harbour", "7654321", "America/New_York")
        compliance.activate_pharmacy(admin, other.id)
        pharmacist2 = compliance.register_pharmacist(admin, "Harbour Pharmacist", other.id).id

        def key(name: str, kind: str, party: str, scopes: list[str] | None = None) -> str:
            return compliance.add_client(admin, name, kind, party, scopes, pepper=PEPPER).key

        app = create_app(compliance, pepper=PEPPER)

        def boom() -> None:
            raise RuntimeError("secret internals: /etc/passwd")

        app.add_api_route("/v1/test-boom", boom)
        server, thread, base = serve(app)
        try:
            yield Running(
                base,
                compliance,
                w,
                key("Admin tool", "administrator", admin),
                key("Main St terminal", "pharmacy-terminal", w.pharmacy.id),
                key("Harbour terminal", "pharmacy-terminal", other.id),
                key("Clinic EHR", "prescriber-system", w.prescriber.id),
                key("Checks only", "pharmacy-terminal", w.pharmacy.id, ["dispense:check"]),
                pharmacist2,
                server,
            )
        finally:
            stop(server, thread)
    finally:
        compliance.close()
        if pg_name is not None:
            drop_pg_database(pg_name)


# --- helpers --------------------------------------------------------------------------------------


def ready_patient(r: Running, name: str = "Pat") -> str:
    """A patient who cannot get pregnant, with every step done: the prescribe gate passes."""
    app, prs = r.app, r.w.prescriber.id
    pat = app.register_patient(prs, f"{name} {uuid.uuid4().hex[:6]}", "1990-05-05").patient.id
    app.enrol(prs, pat)
    app.assign_category(prs, pat, "cannot_get_pregnant", "NO_UTERUS")
    app.record_consent(prs, pat, "PATIENT_INFORMATION_CONSENT")
    app.record_counselling(prs, pat)
    app.record_comprehension(pat, pat)
    return pat


def prescription(r: Running) -> str:
    rx = r.app.prescribe(r.w.prescriber.id, ready_patient(r), 30).prescription
    assert rx is not None
    return rx.id


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["code"] == code and body["title"]
    assert body["type"].startswith("https://")
    assert "Traceback" not in response.text
    return body


# --- the service itself ---------------------------------------------------------------------------


def test_health_needs_no_key_and_shows_the_schema(running: Running) -> None:
    with running.client() as http:
        body = http.get("/v1/health").json()
    assert body["status"] == "ok" and body["schema"]["up_to_date"] is True
    assert "url" not in body["schema"]


def test_openapi_31_describes_every_endpoint(running: Running) -> None:
    with running.client() as http:
        spec = http.get("/v1/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    paths = set(spec["paths"])
    assert {
        "/v1/health",
        "/v1/rulesets",
        "/v1/dispense-checks",
        "/v1/authorizations",
        "/v1/authorizations/{number}",
        "/v1/authorizations/{number}/reversal",
        "/v1/authorizations/{number}/dispense",
        "/v1/prescription-checks",
        "/v1/prescriptions",
        "/v1/courses",
        "/v1/patients/{patient}/status",
        "/v1/patients/{patient}/tests",
        "/v1/patients/{patient}/counselling",
        "/v1/patients/{patient}/contraception",
        "/v1/worklist",
        "/v1/clients",
        "/v1/clients/{client}/keys",
        "/v1/clients/{client}/keys/{key_id}",
        "/v1/patients",
        "/v1/patients/{patient}",
        "/v1/patients/{patient}/corrections",
        "/v1/patients/{patient}/external-ids",
        "/v1/patients/{patient}/treatment-end",
        "/v1/patients/{patient}/pregnancy",
        "/v1/patients/{patient}/resumption",
        "/v1/patients/{patient}/withdrawal",
        "/v1/patients/{patient}/lost-to-follow-up",
        "/v1/patients/{patient}/test-schedule",
        "/v1/home-testing",
        "/v1/designees",
        "/v1/grants",
        "/v1/designees/{designee}/grants/{prescriber}",
        "/v1/designees/{designee}/deactivation",
        "/v1/prescribers",
        "/v1/prescribers/{prescriber}/zone",
        "/v1/prescribers/{prescriber}/{change}",
        "/v1/pharmacies",
        "/v1/pharmacies/{pharmacy}/activation",
        "/v1/pharmacies/{pharmacy}/deactivation",
        "/v1/pharmacists",
        "/v1/pharmacists/{pharmacist}/deactivation",
    } <= paths
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    responses = spec["paths"]["/v1/authorizations"]["post"]["responses"]
    assert {"200", "201", "401", "403", "404", "409", "422", "503"} <= set(responses)
    assert PROBLEM in responses["403"]["content"]


def test_rulesets_are_listed_with_their_effective_dates(running: Running) -> None:
    with running.terminal() as http:
        body = http.get("/v1/rulesets").json()
    ids = {r["id"]: r for r in body["rulesets"]}
    assert "ipledge/2026-mod" in ids and ids["ipledge/2026-mod"]["programme"] == "ipledge"


# --- authentication and scopes --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, rc.CREDENTIAL_MISSING),
        ("Bearer nonsense", rc.CREDENTIAL_INVALID),
        ("Bearer cpl_0123456789abcdef_" + "A" * 43, rc.CREDENTIAL_INVALID),
        ("Basic dXNlcjpwYXNz", rc.CREDENTIAL_MISSING),
    ],
)
def test_unauthenticated_requests_are_401_problems(
    running: Running, authorization: str | None, code: str
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    with running.client(**headers) as http:
        response = http.post("/v1/dispense-checks", json={"prescription": "RX-00000000"})
    body = assert_problem(response, 401, "UNAUTHENTICATED")
    assert body["codes"] == [code]
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_key_narrowed_to_checks_cannot_authorize(running: Running) -> None:
    rx = prescription(running)
    pharmacist = {"X-Acting-Person": running.w.pharmacist.id}
    with running.client(running.narrow_key, **pharmacist) as http:
        assert http.post("/v1/dispense-checks", json={"prescription": rx}).status_code == 200
        response = http.post("/v1/authorizations", json={"prescription": rx})
    body = assert_problem(response, 403, "NOT_PERMITTED")
    assert body["codes"] == [rc.SCOPE_NOT_GRANTED]


def test_a_terminal_asserts_only_its_own_pharmacist(running: Running) -> None:
    rx = prescription(running)
    with running.client(running.terminal_key) as http:
        missing = http.post("/v1/dispense-checks", json={"prescription": rx})
        assert assert_problem(missing, 422, "INVALID_INPUT")["field"] == "X-Acting-Person"
        for person in (running.pharmacist2, running.w.prescriber.id, running.w.admin.id):
            response = http.post(
                "/v1/authorizations",
                json={"prescription": rx},
                headers={"X-Acting-Person": person},
            )
            assert assert_problem(response, 403, "NOT_PERMITTED")["codes"] == [
                rc.ACTING_PERSON_NOT_OF_CLIENT
            ]
    assert running.app.audit_log(running.w.admin.id, LogFilter(action="dispense.authorize")) == []


def test_the_actor_never_comes_from_the_body(running: Running) -> None:
    rx = prescription(running)
    with running.terminal() as http:
        response = http.post(
            "/v1/authorizations", json={"prescription": rx, "actor": running.w.admin.id}
        )
    assert assert_problem(response, 422, "INVALID_INPUT")["field"] == "actor"


def test_a_prescribers_system_may_not_dispense_nor_administer(running: Running) -> None:
    rx = prescription(running)
    with running.ehr() as http:
        response = http.post("/v1/authorizations", json={"prescription": rx})
        assert assert_problem(response, 403, "NOT_PERMITTED")["codes"] == [rc.SCOPE_NOT_GRANTED]
        assert_problem(http.get("/v1/clients"), 403, "NOT_PERMITTED")
    with running.terminal() as http:
        assert_problem(http.get("/v1/clients"), 403, "NOT_PERMITTED")


@dataclass
class Transactions:
    """What the engine of a running server did, seen through SQLAlchemy's events."""

    begun: int = 0
    committed: int = 0
    rolled_back: int = 0
    writers: int = 0  # SQLite: transactions that took the write lock at BEGIN


@contextmanager
def counting(app: Compliance) -> Iterator[Transactions]:
    seen = Transactions()

    def begin(conn: Any) -> None:
        seen.begun += 1

    def commit(conn: Any) -> None:
        seen.committed += 1

    def rollback(conn: Any) -> None:
        seen.rolled_back += 1

    def statement(conn: Any, cursor: Any, sql: str, *_: Any) -> None:
        if sql.strip().upper() in {"BEGIN IMMEDIATE", "BEGIN EXCLUSIVE"}:
            seen.writers += 1

    hooks = [
        ("begin", begin),
        ("commit", commit),
        ("rollback", rollback),
        ("before_cursor_execute", statement),
    ]
    for name, hook in hooks:
        event.listen(app.engine, name, hook)
    try:
        yield seen
    finally:
        for name, hook in hooks:
            event.remove(app.engine, name, hook)


def test_one_request_is_one_transaction(running: Running) -> None:
    """Authentication (key, acting person, scope) runs inside the operation's own transaction:
    a read is one read, an authorization one write, and a caller who may not act never holds
    the SQLite write lock and commits nothing."""
    rx = prescription(running)
    sqlite = running.app.engine.dialect.name == "sqlite"
    with running.terminal() as http:
        http.get("/v1/health")  # the connection is open before counting
        with counting(running.app) as read:
            assert http.post("/v1/dispense-checks", json={"prescription": rx}).status_code == 200
        assert (read.begun, read.committed, read.writers) == (1, 1, 0)
        with counting(running.app) as write:
            issued = http.post("/v1/authorizations", json={"prescription": rx})
            assert issued.status_code == 201, issued.text
        assert (write.begun, write.committed, write.rolled_back) == (1, 1, 0)
        assert write.writers == 0  # SQLite: begun as a read, the lock taken once allowed
        number = issued.json()["authorization"]["number"]
        with counting(running.app) as pickup:
            assert http.post(f"/v1/authorizations/{number}/dispense").status_code == 200
        assert (pickup.begun, pickup.committed) == (1, 1)
    refusals = [
        (running.client(), 401),  # no key: refused before any transaction
        (running.client("cpl_0123456789abcdef_" + "A" * 43), 401),
        (running.client(running.narrow_key, **{"X-Acting-Person": running.w.pharmacist.id}), 403),
        (running.client(running.terminal_key, **{"X-Acting-Person": running.pharmacist2}), 403),
    ]
    for client, status in refusals:
        other = prescription(running)
        with client as http, counting(running.app) as refused:
            response = http.post("/v1/authorizations", json={"prescription": other})
            assert response.status_code == status, response.text
        assert refused.committed == 0 and refused.writers == 0
        assert refused.begun == (0 if client.headers.get("authorization") is None else 1)
    if sqlite:  # and a request that may act still waits its turn for the lock like any writer
        with running.ehr() as http, counting(running.app) as steps:
            pat = ready_patient(running)
            steps.begun = steps.committed = 0
            written = http.post("/v1/prescriptions", json={"patient": pat, "days_supply": 30})
            assert written.json()["status"] == "ok", written.text
        assert (steps.begun, steps.committed) == (1, 1)


def test_a_key_revoked_between_two_requests_is_refused_on_the_second(running: Running) -> None:
    w = running.w
    issued = running.app.add_client(
        w.admin.id, "Short-lived", "pharmacy-terminal", w.pharmacy.id, pepper=PEPPER
    )
    rx = prescription(running)
    with running.client(issued.key, **{"X-Acting-Person": w.pharmacist.id}) as http:
        assert http.post("/v1/dispense-checks", json={"prescription": rx}).status_code == 200
        running.app.revoke_client(w.admin.id, issued.client.id, issued.key_id)
        refused = http.post("/v1/authorizations", json={"prescription": rx})
        assert assert_problem(refused, 401, "UNAUTHENTICATED")["codes"] == [rc.CREDENTIAL_REVOKED]
        check = http.post("/v1/dispense-checks", json={"prescription": rx})
        assert assert_problem(check, 401, "UNAUTHENTICATED")["codes"] == [rc.CREDENTIAL_REVOKED]
    # Nothing was authorized, and no refusal of the key was written to the audit trail.
    events = running.app.audit_log(w.admin.id, LogFilter(action="dispense.authorize"))
    assert not [e for e in events if e.payload.get("key_id") == issued.key_id]
    with running.terminal() as http:  # the prescription is still there for a live key
        assert http.post("/v1/authorizations", json={"prescription": rx}).status_code == 201


# --- the pharmacy ---------------------------------------------------------------------------------


def test_check_authorize_retry_read_pickup(running: Running) -> None:
    rx = prescription(running)
    request_id = uuid.uuid4().hex
    with running.terminal(**{"Idempotency-Key": request_id}) as http:
        check = http.post("/v1/dispense-checks", json={"prescription": rx})
        assert check.status_code == 200 and check.json()["outcome"] == "ALLOW"
        first = http.post("/v1/authorizations", json={"prescription": rx})
        assert first.status_code == 201, first.text
        issued = first.json()
        assert issued["status"] == "approved"
        number = issued["authorization"]["number"]
        assert issued["authorization_period"]["expiration"]
        # A retry after a lost answer: the same authorization, never a second one.
        again = http.post("/v1/authorizations", json={"prescription": rx})
        assert again.status_code == 201
        assert again.json()["authorization"]["number"] == number
        assert again.json()["record"] == {"replayed": True}
        read = http.get(f"/v1/authorizations/{number}").json()
        assert read["number"] == number and read["dispensed_at"] is None
        picked = http.post(f"/v1/authorizations/{number}/dispense")
        assert picked.status_code == 200 and picked.json()["status"] == "ok"
        assert picked.json()["authorization"]["dispensed_at"]
        assert_problem(http.post(f"/v1/authorizations/{number}/dispense"), 409, "CONFLICT")
        reversal = http.post(f"/v1/authorizations/{number}/reversal", json={"reason": "late"})
        assert_problem(reversal, 409, "CONFLICT")
    # The other pharmacy neither reads nor touches it.
    with running.client(running.terminal2_key, **{"X-Acting-Person": running.pharmacist2}) as h:
        assert_problem(h.get(f"/v1/authorizations/{number}"), 403, "NOT_PERMITTED")
    events = running.app.audit_log(running.w.admin.id, LogFilter(action="dispense.authorize"))
    mine = [
        e for e in events if e.payload.get("authorization") == number or number in str(e.payload)
    ]
    assert mine and all(e.actor_id == running.w.pharmacist.id for e in mine)
    assert {e.payload["client"] for e in mine} == {
        running.app.authenticate(
            running.terminal_key, running.w.pharmacist.id, pepper=PEPPER
        ).client
    }


def test_reversal_is_answered_and_recorded(running: Running) -> None:
    rx = prescription(running)
    with running.terminal() as http:
        number = http.post("/v1/authorizations", json={"prescription": rx}).json()["authorization"][
            "number"
        ]
        reversed_ = http.post(f"/v1/authorizations/{number}/reversal", json={"reason": "no show"})
        assert reversed_.status_code == 200 and reversed_.json()["authorization"]["reversed_at"]
        # Twice is a rule refusal: an answer with its reasons, not an error.
        twice = http.post(f"/v1/authorizations/{number}/reversal", json={"reason": "again"})
        assert twice.status_code == 200 and twice.json()["status"] == "refused"
        assert twice.json()["codes"] == [rc.AUTHORIZATION_REVERSED]
        pickup = http.post(f"/v1/authorizations/{number}/dispense")
        assert pickup.status_code == 200 and pickup.json()["codes"] == [rc.AUTHORIZATION_REVERSED]


def test_a_refusal_is_a_200_answer_with_the_whole_decision(running: Running) -> None:
    app, prs = running.app, running.w.prescriber.id
    pat = app.register_patient(prs, "Not Ready", "1991-01-01").patient.id
    app.enrol(prs, pat)
    with running.ehr() as http:
        check = http.post("/v1/prescription-checks", json={"patient": pat, "days_supply": 30})
        assert check.status_code == 200
        decision = check.json()
        assert decision["outcome"] == "REFUSE" and "window" in decision
        assert all(
            {"code", "message", "next_step", "earliest"} <= set(r) for r in decision["reasons"]
        )
        refused = http.post("/v1/prescriptions", json={"patient": pat, "days_supply": 30})
    assert refused.status_code == 200
    body = refused.json()
    assert body["status"] == "refused" and body["decision"]["outcome"] == "REFUSE"
    assert rc.CATEGORY_NOT_ASSIGNED in body["codes"]
    assert all(r["message"] for r in body["reasons"])


def test_an_authorization_denied_by_the_rules_is_a_200_with_the_decision(running: Running) -> None:
    rx = prescription(running)
    with running.terminal() as http:
        assert http.post("/v1/authorizations", json={"prescription": rx}).status_code == 201
        second = http.post("/v1/authorizations", json={"prescription": rx})
    assert second.status_code == 200
    body = second.json()
    assert body["status"] == "denied" and rc.AUTHORIZATION_ALREADY_ISSUED in body["codes"]
    assert body["decision"]["outcome"] == "REFUSE" and "window" in body["decision"]


def test_the_pharmacy_states_its_supply_and_finds_a_paper_prescription(running: Running) -> None:
    """What the pharmacist has in hand: the days' supply dispensed, and a paper prescription
    found from the patient's programme id, date of birth and the prescriber's NPI."""
    app, prs = running.app, running.w.prescriber.id
    pat = ready_patient(running)
    rx = app.prescribe(prs, pat, 30).prescription
    assert rx is not None
    npi = app.get_person(running.w.admin.id, prs).external_id
    lookup = {"patient": pat, "date_of_birth": "1990-05-05", "prescriber_npi": npi}
    with running.terminal() as http:
        over = http.post("/v1/dispense-checks", json={"prescription": rx.id, "days_supply": 31})
        assert over.status_code == 200, over.text
        codes = {r["code"] for r in over.json()["reasons"]}
        assert rc.SUPPLY_EXCEEDS_PRESCRIPTION in codes
        found = http.post("/v1/prescription-lookups", json=lookup)
        assert found.status_code == 200, found.text
        assert found.json()["id"] == rx.id
        for wrong in ({"date_of_birth": "1990-05-06"}, {"prescriber_npi": "1234567893"}):
            assert_problem(
                http.post("/v1/prescription-lookups", json=lookup | wrong), 404, "NOT_FOUND"
            )
        issued = http.post("/v1/authorizations", json={"prescription": rx.id, "days_supply": 20})
        assert issued.status_code == 201, issued.text
        assert issued.json()["authorization"]["days_supply"] == 20
    with running.ehr() as http:
        refused = http.post("/v1/prescription-lookups", json=lookup)  # a pharmacist's read only
        assert assert_problem(refused, 403, "NOT_PERMITTED")["codes"] == [rc.ACTOR_NOT_PERMITTED]


def test_the_prescribers_system_confirms_the_patient(running: Running) -> None:
    """iPLEDGE: the prescriber confirms the patient once the negative result is in; before it
    the confirmation is refused as an answer (200 with the decision)."""
    app, prs = running.app, running.w.prescriber.id
    pat = app.register_patient(prs, f"Cora {uuid.uuid4().hex[:6]}", "1995-03-03").patient.id
    app.enrol(prs, pat)
    app.assign_category(prs, pat, "can_get_pregnant", "REPRODUCTIVE_POTENTIAL")
    with running.ehr() as http:
        early = http.post(f"/v1/patients/{pat}/confirmation")
        assert early.status_code == 200, early.text
        assert early.json()["status"] == "refused"
        assert rc.NO_NEGATIVE_TEST_IN_WINDOW in early.json()["codes"]
        app.record_test(
            prs,
            pat,
            kind="screening",
            specimen_date=T0.date(),
            setting="lab",
            result="negative",
            clia=True,
        )
        done = http.post(f"/v1/patients/{pat}/confirmation")
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "ok"
    events = app.audit_log(running.w.admin.id, LogFilter(action="course.confirm_patient"))
    assert [e.outcome for e in events] == ["refused", "ok"]


def test_unknown_things_are_404_and_bad_values_422(running: Running) -> None:
    with running.terminal() as http:
        unknown_rx = http.post(
            "/v1/dispense-checks", json={"prescription": new_short_id(Kind.PRESCRIPTION)}
        )
        assert_problem(unknown_rx, 404, "NOT_FOUND")
        assert_problem(http.get(f"/v1/authorizations/{new_number()}"), 404, "NOT_FOUND")
        assert_problem(http.get("/v1/no-such-endpoint"), 404, "NOT_FOUND")
        bad = http.post("/v1/dispense-checks", json={"prescription": "not-an-id"})
        assert assert_problem(bad, 422, "INVALID_INPUT")["field"] == "prescription"
        wrong_type = http.post("/v1/dispense-checks", json={"prescription": 5})
        assert assert_problem(wrong_type, 422, "INVALID_INPUT")["field"] == "prescription"
        not_json = http.post(
            "/v1/dispense-checks", content=b"{", headers={"content-type": "application/json"}
        )
        assert_problem(not_json, 422, "INVALID_INPUT")
        assert_problem(http.get("/v1/authorizations/123"), 422, "INVALID_INPUT")
        assert_problem(http.get("/v1/worklist", params={"within_days": "-1"}), 422, "INVALID_INPUT")


def test_no_traceback_reaches_a_caller(running: Running) -> None:
    with running.client() as http:
        response = http.get("/v1/test-boom")
    body = assert_problem(response, 500, "INTERNAL_ERROR")
    assert "secret" not in response.text and "RuntimeError" not in response.text
    assert set(body) == {"type", "title", "status", "code", "detail"}


def test_busy_and_not_ready_are_503_with_retry_after() -> None:
    busy = from_error(Busy("database busy: lock on row 7"))
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
    assert b"row 7" not in busy.body
    assert from_error(DatabaseNotReady("x")).headers["retry-after"] == "5"


def test_an_unmigrated_database_answers_503(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    with Compliance.open(url) as compliance:
        compliance.engine.connect().close()
        server, thread, base = serve(create_app(compliance, pepper=PEPPER))
        try:
            with httpx.Client(base_url=base) as http:
                health = http.get("/v1/health")
                call = http.get("/v1/rulesets", headers={"Authorization": "Bearer cpl_x_y"})
        finally:
            stop(server, thread)
    for response in (health, call):
        assert_problem(response, 503, "DATABASE_NOT_READY")
        assert response.headers["retry-after"] == "5"


# --- the prescriber's side ------------------------------------------------------------------------


def test_the_prescribers_steps_through_the_service(running: Running) -> None:
    app, prs = running.app, running.w.prescriber.id
    pat = app.register_patient(prs, f"Web Patient {uuid.uuid4().hex[:4]}", "2001-02-03").patient.id
    with running.ehr() as http:
        enrolled = http.post("/v1/courses", json={"patient": pat})
        assert enrolled.status_code == 200 and enrolled.json()["status"] == "ok", enrolled.text
        steps = [
            (
                f"/v1/patients/{pat}/category",
                {"category": "can_get_pregnant", "reason": "REPRODUCTIVE_POTENTIAL"},
            ),
            (f"/v1/patients/{pat}/consents", {"form": "PATIENT_INFORMATION_CONSENT"}),
            (f"/v1/patients/{pat}/consents", {"form": "BIRTH_DEFECTS_CONSENT"}),
            (
                f"/v1/patients/{pat}/contraception",
                {"methods": {"iud": "2026-10-01", "male_condom": "2026-10-01"}},
            ),
            (
                f"/v1/patients/{pat}/tests",
                {
                    "kind": "screening",
                    "specimen_date": T0.date().isoformat(),
                    "setting": "clinic",
                    "result": "negative",
                },
            ),
            (f"/v1/patients/{pat}/counselling", {}),
        ]
        for path, body in steps:
            response = http.post(path, json=body)
            assert response.status_code == 200 and response.json()["status"] == "ok", (
                path,
                response.text,
            )
        status = http.get(f"/v1/patients/{pat}/status").json()
        assert status["course"]["category"] == "can_get_pregnant"
        assert {c["item"] for c in status["checklist"]}
        worklist = http.get("/v1/worklist", params={"within_days": 30}).json()
        assert worklist["within_days"] == 30 and isinstance(worklist["flags"], list)
    ready = ready_patient(running)
    with running.ehr() as http:
        check = http.post("/v1/prescription-checks", json={"patient": ready}).json()
        assert check["outcome"] == "ALLOW"
        written = http.post("/v1/prescriptions", json={"patient": ready, "days_supply": 30})
    assert written.json()["status"] == "ok" and written.json()["prescription"]["days_supply"] == 30
    events = app.audit_log(running.w.admin.id, LogFilter(subject=pat))
    through_service = [e for e in events if "client" in e.payload]
    assert len(through_service) == len(steps) + 1
    assert all(e.actor_id == prs for e in through_service)


def test_a_designee_acts_through_the_prescribers_system_only_with_a_grant(running: Running) -> None:
    app, w = running.app, running.w
    pat = app.register_patient(
        w.prescriber.id, f"Dsg Patient {uuid.uuid4().hex[:4]}", "2000-01-01"
    ).patient.id
    with running.ehr(**{"X-Acting-Person": w.designee.id}) as http:
        response = http.post("/v1/courses", json={"patient": pat})
        assert response.status_code == 200 and response.json()["status"] == "ok", response.text
    event = app.audit_log(w.admin.id, LogFilter(subject=pat, action="course.enrol"))[0]
    assert (event.actor_id, event.on_behalf_of) == (w.designee.id, w.prescriber.id)
    assert event.payload["client"].startswith("CLI-")
    # Without a live grant the engine refuses, and records the refusal with the client.
    other = app.register_designee(w.prescriber.id, f"No Grant {uuid.uuid4().hex[:4]}")
    pat2 = app.register_patient(
        w.prescriber.id, f"Dsg Patient2 {uuid.uuid4().hex[:4]}", "2000-01-01"
    ).patient.id
    with running.ehr(**{"X-Acting-Person": other.id}) as http:
        refused = http.post("/v1/courses", json={"patient": pat2})
    assert assert_problem(refused, 403, "NOT_PERMITTED")["codes"] == [rc.DESIGNEE_GRANT_MISSING]
    events = app.audit_log(w.admin.id, LogFilter(actor=other.id))
    assert [e.outcome for e in events] == ["refused"] and events[0].payload["client"].startswith(
        "CLI-"
    )


def test_the_prescribers_system_registers_corrects_and_follows_a_patient(running: Running) -> None:
    """Patients, corrections and the course after prescribing, over HTTP: each answer is the
    engine's, a rule refusal a 200, a bad value a 422 naming the field."""
    app, prs = running.app, running.w.prescriber.id
    with running.ehr() as http:
        made = http.post(
            "/v1/patients",
            json={"name": "Hana Htp", "date_of_birth": "1992-04-04", "external_ids": {"MRN": "H1"}},
        )
        assert made.status_code == 201, made.text
        pat = made.json()["patient"]["id"]
        assert http.get(f"/v1/patients/{pat}").json()["name"] == "Hana Htp"
        assert http.get("/v1/patients/MRN:H1").json()["id"] == pat
        fixed = http.post(
            f"/v1/patients/{pat}/corrections", json={"reason": "typo", "name": "Hana Hope"}
        )
        assert fixed.status_code == 200 and fixed.json()["name"] == "Hana Hope", fixed.text
        added = http.post(f"/v1/patients/{pat}/external-ids", json={"system": "NHS", "value": "9"})
        assert added.status_code == 200 and added.json()["external_ids"]["NHS"] == "9"
        bad = http.post("/v1/patients", json={"name": "X", "date_of_birth": "1992-13-01"})
        assert assert_problem(bad, 422, "INVALID_INPUT")["field"] == "date_of_birth"
        unknown = http.post(
            f"/v1/patients/{new_short_id(Kind.PATIENT)}/corrections",
            json={"reason": "x", "name": "Y"},
        )
        assert_problem(unknown, 404, "NOT_FOUND")
        # A patient reported pregnant: the course stops, and only the prescriber resumes it.
        assert http.post("/v1/courses", json={"patient": pat}).json()["status"] == "ok"
        reported = http.post(f"/v1/patients/{pat}/pregnancy", json={"note": "called in"})
        assert reported.status_code == 200 and reported.json()["status"] == "ok", reported.text
        assert reported.json()["course"]["state"] == "suspended"
        no_note = http.post(f"/v1/patients/{pat}/resumption", json={"note": ""})
        assert assert_problem(no_note, 422, "INVALID_INPUT")["field"] == "note"
        withdrawn = http.post(f"/v1/patients/{pat}/withdrawal", json={"note": "moved away"})
        assert withdrawn.json()["status"] == "ok", withdrawn.text
        # Treatment ends with the last dose; then the post-treatment tests are due.
        ready = ready_patient(running)
        app.prescribe(prs, ready, 30)
        schedule = http.put(f"/v1/patients/{ready}/test-schedule", json={"schedule": "none-such"})
        assert assert_problem(schedule, 422, "INVALID_INPUT")["field"] == "schedule"
        ended = http.post(
            f"/v1/patients/{ready}/treatment-end", json={"last_dose_on": T0.date().isoformat()}
        )
        assert ended.status_code == 200 and ended.json()["status"] == "ok", ended.text
        assert ended.json()["course"]["state"] in {"treatment_ended", "post_treatment", "completed"}
        lost = http.post(f"/v1/patients/{ready}/lost-to-follow-up", json={})
        assert lost.status_code == 200, lost.text
        listed = http.get("/v1/courses", params={"limit": 500}).json()["courses"]
        assert {pat, ready} <= {c["patient"] for c in listed}
        no_procedure = http.put("/v1/home-testing", json={"enabled": True})
        assert assert_problem(no_procedure, 422, "INVALID_INPUT")["field"] == "procedure"
        home = http.put(
            "/v1/home-testing", json={"enabled": True, "procedure": "video-observed test"}
        )
        assert home.status_code == 200 and home.json()["enabled"] is True, home.text
        assert http.put("/v1/home-testing", json={"enabled": False}).status_code == 200
        assert_problem(http.put("/v1/home-testing", json={"enabled": False}), 409, "CONFLICT")
    events = app.audit_log(running.w.admin.id, LogFilter(subject=pat))
    through = [e for e in events if "client" in e.payload]
    assert {"patient.register", "patient.correct", "course.pregnancy", "course.withdraw"} <= {
        e.action for e in through
    }
    with running.terminal() as http:  # a pharmacist's role registers no patient
        refused = http.post("/v1/patients", json={"name": "Z", "date_of_birth": "1990-01-01"})
        assert_problem(refused, 403, "NOT_PERMITTED")


def test_grants_through_the_prescribers_system(running: Running) -> None:
    app, w = running.app, running.w
    prs = w.prescriber.id
    with running.ehr() as http:
        made = http.post("/v1/designees", json={"name": f"Gus {uuid.uuid4().hex[:4]}"})
        assert made.status_code == 201, made.text
        dsg = made.json()["id"]
        granted = http.put(
            f"/v1/designees/{dsg}/grants/{prs}", json={"scopes": ["course.read", "patient.read"]}
        )
        assert granted.status_code == 200, granted.text
        listed = http.get("/v1/grants", params={"designee": dsg}).json()["grants"]
        assert [g["prescriber"] for g in listed] == [prs]
        amended = http.patch(
            f"/v1/designees/{dsg}/grants/{prs}",
            json={"reason": "covers enrolment", "scopes": ["course.read", "course.enrol"]},
        )
        assert amended.status_code == 200 and "course.enrol" in amended.json()["scopes"]
        no_reason = http.patch(f"/v1/designees/{dsg}/grants/{prs}", json={"scopes": []})
        assert assert_problem(no_reason, 422, "INVALID_INPUT")["field"] == "reason"
    pat = app.register_patient(prs, f"Gp {uuid.uuid4().hex[:4]}", "2000-02-02").patient.id
    with running.ehr(**{"X-Acting-Person": dsg}) as http:
        assert http.post("/v1/courses", json={"patient": pat}).json()["status"] == "ok"
    with running.ehr() as http:
        assert http.delete(f"/v1/designees/{dsg}/grants/{prs}").json()["revoked_at"]
    with running.ehr(**{"X-Acting-Person": dsg}) as http:
        refused = http.get(f"/v1/patients/{pat}/status")
        assert rc.DESIGNEE_GRANT_EXPIRED in assert_problem(refused, 403, "NOT_PERMITTED")["codes"]
    with running.terminal() as http:
        assert_problem(http.get("/v1/grants"), 403, "NOT_PERMITTED")


def test_the_administrator_sets_a_prescribers_zone_and_manages_parties(running: Running) -> None:
    app, w = running.app, running.w
    with running.admin() as http:
        made = http.post(
            "/v1/prescribers",
            json={"name": "Dr Zed", "npi": next_npi(), "time_zone": "Europe/Lisbon"},
        )
        assert made.status_code == 201, made.text
        prs = made.json()["id"]
        zoned = http.put(f"/v1/prescribers/{prs}/zone", json={"time_zone": "Europe/Athens"})
        assert zoned.status_code == 200 and zoned.json()["time_zone"] == "Europe/Athens"
        cleared = http.put(f"/v1/prescribers/{prs}/zone", json={"time_zone": None})
        assert cleared.status_code == 200 and cleared.json()["time_zone"] is None
        bad = http.put(f"/v1/prescribers/{prs}/zone", json={"time_zone": "Mars/Olympus"})
        assert assert_problem(bad, 422, "INVALID_INPUT")["field"] == "time_zone"
        unknown = http.put(
            f"/v1/prescribers/{new_short_id(Kind.PRESCRIBER)}/zone", json={"time_zone": None}
        )
        assert_problem(unknown, 404, "NOT_FOUND")
        for change, status in (
            ("activation", "activated"),
            ("suspension", "suspended"),
            ("reinstatement", "activated"),
        ):
            changed = http.post(f"/v1/prescribers/{prs}/{change}", json={"note": "checked"})
            assert changed.status_code == 200 and changed.json()["status"] == status, changed.text
        assert_problem(http.post(f"/v1/prescribers/{prs}/promotion", json={}), 422, "INVALID_INPUT")
        pharmacy = http.post(
            "/v1/pharmacies",
            json={"name": "Quay", "ncpdp": "7000001", "time_zone": "America/Denver"},
        )
        assert pharmacy.status_code == 201, pharmacy.text
        pha = pharmacy.json()["id"]
        active = http.post(f"/v1/pharmacies/{pha}/activation", json={})
        assert active.status_code == 200 and active.json()["status"] == "activated", active.text
        rph = http.post("/v1/pharmacists", json={"name": "Quay Pharmacist", "pharmacy": pha})
        assert rph.status_code == 201, rph.text
        gone = http.post(f"/v1/pharmacists/{rph.json()['id']}/deactivation")
        assert gone.status_code == 200 and gone.json()["status"] == "deactivated", gone.text
        closed = http.post(f"/v1/pharmacies/{pha}/deactivation")
        assert closed.status_code == 200 and closed.json()["status"] == "deactivated"
        dsg = app.register_designee(w.admin.id, f"Old {uuid.uuid4().hex[:4]}").id
        off = http.post(f"/v1/designees/{dsg}/deactivation")
        assert off.status_code == 200 and off.json()["status"] == "deactivated", off.text
    event = app.audit_log(w.admin.id, LogFilter(subject=prs, action="prescriber.set_zone"))[0]
    assert event.actor_id == w.admin.id and event.payload["client"].startswith("CLI-")
    with running.ehr() as http:  # a prescriber's system sets no zone, not even its own
        refused = http.put(f"/v1/prescribers/{w.prescriber.id}/zone", json={"time_zone": None})
        assert assert_problem(refused, 403, "NOT_PERMITTED")["codes"] == [rc.SCOPE_NOT_GRANTED]


# --- administration -------------------------------------------------------------------------------


def test_clients_and_keys_through_the_service(running: Running) -> None:
    w = running.w
    with running.admin() as http:
        created = http.post(
            "/v1/clients",
            json={
                "name": "Kiosk",
                "kind": "pharmacy-terminal",
                "party": w.pharmacy.id,
                "scopes": ["dispense:check"],
            },
        )
        assert created.status_code == 201 and created.headers["cache-control"] == "no-store"
        issued = created.json()
        client_id, key = issued["client"]["id"], issued["key"]
        listed = http.get("/v1/clients").text
        secret = key.split("_", 2)[2]  # the secret itself may contain "_"
        assert client_id in listed and secret and secret not in listed
        assert http.get(f"/v1/clients/{client_id}").json()["scopes"] == ["dispense:check"]
        widened = http.post(
            "/v1/clients",
            json={
                "name": "X",
                "kind": "pharmacy-terminal",
                "party": w.pharmacy.id,
                "scopes": ["admin"],
            },
        )
        assert assert_problem(widened, 422, "INVALID_INPUT")["field"] == "scopes"
        rotated = http.post(f"/v1/clients/{client_id}/keys", json={"overlap_days": 0})
        assert rotated.status_code == 201
        new_key, new_id = rotated.json()["key"], rotated.json()["key_id"]
    pharmacist = {"X-Acting-Person": w.pharmacist.id}
    with running.client(key, **pharmacist) as http:
        assert_problem(http.get("/v1/rulesets"), 401, "UNAUTHENTICATED")
    with running.client(new_key, **pharmacist) as http:
        assert http.get("/v1/rulesets").status_code == 200
    with running.admin() as http:
        revoked = http.delete(f"/v1/clients/{client_id}/keys/{new_id}")
        assert revoked.status_code == 200 and not any(k["live"] for k in revoked.json()["keys"])
        assert http.delete(f"/v1/clients/{client_id}").json()["revoked_at"]
        assert_problem(http.delete(f"/v1/clients/{new_short_id(Kind.CLIENT)}"), 404, "NOT_FOUND")
    with running.client(new_key, **pharmacist) as http:
        body = assert_problem(http.get("/v1/rulesets"), 401, "UNAUTHENTICATED")
        assert body["codes"] == [rc.CREDENTIAL_REVOKED]
    actions = [e.action for e in running.app.audit_log(w.admin.id, LogFilter(subject=client_id))]
    assert actions == ["client.add", "client.rotate", "client.revoke", "client.revoke"]


def test_the_clock_override_cannot_be_enabled_through_the_service(
    running: Running, tmp_path: Path
) -> None:
    # A database not made for training, served on the real clock.
    with Compliance.open(f"sqlite:///{tmp_path / 'production.db'}") as production:
        admin = production.initialize("Ada Production").id
        key = production.add_client(admin, "Admin tool", "administrator", admin, pepper=PEPPER)
        server, thread, base = serve(create_app(production, pepper=PEPPER))
        try:
            headers = {"Authorization": f"Bearer {key.key}"}
            with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
                refused = http.put("/v1/settings/clock-override", json={"enabled": True})
                assert assert_problem(refused, 403, "NOT_PERMITTED")["codes"] == [
                    rc.CLOCK_OVERRIDE_NOT_ALLOWED
                ]
                disabled = http.put("/v1/settings/clock-override", json={"enabled": False})
                assert disabled.status_code == 200 and disabled.json()["enabled"] is False
        finally:
            stop(server, thread)
    with running.admin() as http:  # a training database: its clock may be simulated anyway
        enabled = http.put("/v1/settings/clock-override", json={"enabled": True})
        assert enabled.status_code == 200 and enabled.json()["training"] is True
        assert http.put("/v1/settings/clock-override", json={"enabled": False}).status_code == 200
        schedule = http.put(
            "/v1/rules/schedule", json={"ruleset": "ipledge/2026-mod", "effective": "2026-12-01"}
        )
        assert (
            schedule.status_code == 200
            and schedule.json()["schedule"]["ipledge/2026-mod"] == "2026-12-01"
        )
    with running.terminal() as http:
        assert_problem(
            http.put("/v1/settings/clock-override", json={"enabled": False}), 403, "NOT_PERMITTED"
        )


# --- races ----------------------------------------------------------------------------------------


def _race(running: Running, rx: str, keys: list[str | None]) -> list[httpx.Response]:
    barrier = threading.Barrier(len(keys))
    results: list[httpx.Response | None] = [None] * len(keys)
    terminals = [
        (running.terminal_key, running.w.pharmacist.id),
        (running.terminal2_key, running.pharmacist2),
    ]

    def one(i: int) -> None:
        key, person = terminals[i % 2] if keys[i] is None else terminals[0]
        headers = {"X-Acting-Person": person}
        if keys[i] is not None:
            headers["Idempotency-Key"] = str(keys[i])
        with running.client(key, **headers) as http:
            barrier.wait(timeout=30)
            results[i] = http.post("/v1/authorizations", json={"prescription": rx})

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(keys))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


def test_eight_clients_race_for_one_authorization_and_exactly_one_wins(running: Running) -> None:
    rx = prescription(running)
    responses = _race(running, rx, [None] * 8)
    assert all(r.status_code in {200, 201} for r in responses), [r.text for r in responses]
    won = [r for r in responses if r.status_code == 201]
    assert len(won) == 1
    for lost in (r for r in responses if r.status_code == 200):
        assert lost.json()["status"] == "denied"
        assert rc.AUTHORIZATION_ALREADY_ISSUED in lost.json()["codes"]


def test_retries_racing_with_one_idempotency_key_get_one_authorization(running: Running) -> None:
    rx = prescription(running)
    request_id = uuid.uuid4().hex
    responses = _race(running, rx, [request_id] * 8)
    assert [r.status_code for r in responses] == [201] * 8, [r.text for r in responses]
    assert len({r.json()["authorization"]["number"] for r in responses}) == 1


# --- the FHIR facade ------------------------------------------------------------------------------

ETASU = "/fhir/r4/GuidanceResponse/$rems-etasu"


def _validated(response: httpx.Response) -> dict[str, Any]:
    """The answer, checked against the FHIR R4B models of a maintained library."""
    pytest.importorskip("fhir.resources")
    from fhir.resources.R4B.guidanceresponse import GuidanceResponse
    from fhir.resources.R4B.parameters import Parameters

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    body: dict[str, Any] = response.json()
    Parameters.model_validate(body)
    answer = next(p["resource"] for p in body["parameter"] if p["name"] == "rems-etasu")
    GuidanceResponse.model_validate(answer)
    for nested in answer["contained"][0]["parameter"]:
        GuidanceResponse.model_validate(nested["resource"])
    return answer


def _patient(ref: str) -> dict[str, Any]:
    return {"name": "patient", "resource": {"resourceType": "Patient", "id": ref}}


def _medication() -> dict[str, Any]:
    code = {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "6064"}]}
    return {"name": "medication", "resource": {"resourceType": "Medication", "code": code}}


def test_fhir_etasu_for_a_pharmacy_case_is_success(running: Running) -> None:
    rx = prescription(running)
    for name in ("case_number", "caseNumber"):
        body = {"resourceType": "Parameters", "parameter": [{"name": name, "valueString": rx}]}
        with running.terminal() as http:
            answer = _validated(http.post(ETASU, json=body))
        assert answer["status"] == "success"
        assert answer["moduleUri"].startswith("urn:compliance-ppp:ruleset:ipledge/")


def test_fhir_etasu_lists_each_unmet_requirement_with_our_reason_code(running: Running) -> None:
    app, prs = running.app, running.w.prescriber.id
    pat = app.register_patient(
        prs,
        f"Fhir Patient {uuid.uuid4().hex[:4]}",
        "1999-09-09",
        {"MRN": "F-" + uuid.uuid4().hex[:8]},
    ).patient
    app.enrol(prs, pat.id)
    mrn = next(iter(pat.external_ids.items()))
    by_identifier = {
        "name": "patient",
        "resource": {
            "resourceType": "Patient",
            "identifier": [{"system": mrn[0], "value": mrn[1]}],
        },
    }
    for patient in (_patient(pat.id), by_identifier):
        body = {"resourceType": "Parameters", "parameter": [patient, _medication()]}
        with running.ehr() as http:
            answer = _validated(http.post(ETASU, json=body))
        assert answer["status"] == "data-required"
        assert answer["subject"] == {"reference": f"Patient/{pat.id}"}
        requirements = [p["resource"] for p in answer["contained"][0]["parameter"]]
        codes = {r["reasonCode"][0]["coding"][0]["code"] for r in requirements}
        assert rc.CATEGORY_NOT_ASSIGNED in codes
        assert all(r["status"] == "data-required" and r["note"][0]["text"] for r in requirements)
    # The pharmacy asking by patient gives what the prescription in hand says (the patient's
    # birth date, the prescriber's NPI) and gets the dispense gate of that prescription.
    ready = ready_patient(running)
    rx = running.app.prescribe(prs, ready, 30).prescription
    assert rx is not None
    npi = running.app.get_person(running.w.admin.id, prs).external_id
    prescriber = {
        "name": "prescriber",
        "resource": {
            "resourceType": "Practitioner",
            "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": npi}],
        },
    }
    in_hand = _patient(ready)
    in_hand["resource"]["birthDate"] = "1990-05-05"
    body = {"resourceType": "Parameters", "parameter": [in_hand, prescriber]}
    with running.terminal() as http:
        response = http.post(ETASU, json=body)
        assert _validated(response)["status"] == "success"
        assert response.json()["parameter"][1] == {"name": "case_number", "valueString": rx.id}
        # By patient id alone, a pharmacy learns nothing: it must say what is on the paper.
        alone = http.post(
            ETASU, json={"resourceType": "Parameters", "parameter": [_patient(ready)]}
        )
        assert alone.status_code == 422 and "birthDate" in alone.text
        wrong = dict(in_hand, resource=dict(in_hand["resource"], birthDate="1990-05-06"))
        miss = http.post(
            ETASU, json={"resourceType": "Parameters", "parameter": [wrong, prescriber]}
        )
        assert _validated(miss)["status"] == "failure"


def test_fhir_etasu_unknown_case_is_failure_and_bad_input_an_operation_outcome(
    running: Running,
) -> None:
    unknown = {
        "resourceType": "Parameters",
        "parameter": [{"name": "case_number", "valueString": new_short_id(Kind.PRESCRIPTION)}],
    }
    with running.terminal() as http:
        assert _validated(http.post(ETASU, json=unknown))["status"] == "failure"
        for bad in ({"resourceType": "Patient"}, {"resourceType": "Parameters", "parameter": []}):
            response = http.post(ETASU, json=bad)
            assert response.status_code == 422
            assert response.json()["resourceType"] == "OperationOutcome"
    with running.client() as http:
        assert_problem(http.post(ETASU, json=unknown), 401, "UNAUTHENTICATED")


def test_fhir_etasu_is_one_read_transaction_on_every_path(running: Running) -> None:
    """Who asks chooses the gate, yet the key, the gate and its answer are one read: a case, a
    pharmacy's patient with the prescription in hand, and a prescriber's patient. A key lacking
    a scope the path needs is refused in that read and writes nothing."""
    prs = running.w.prescriber.id
    ready = ready_patient(running)
    rx = running.app.prescribe(prs, ready, 30).prescription
    assert rx is not None
    npi = running.app.get_person(running.w.admin.id, prs).external_id
    in_hand = _patient(ready)
    in_hand["resource"]["birthDate"] = "1990-05-05"
    prescriber = {
        "name": "prescriber",
        "resource": {
            "resourceType": "Practitioner",
            "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": npi}],
        },
    }
    case = {
        "resourceType": "Parameters",
        "parameter": [{"name": "case_number", "valueString": rx.id}],
    }
    by_patient = {"resourceType": "Parameters", "parameter": [in_hand, prescriber]}
    asks = [
        (running.terminal(), case, "success"),
        (running.terminal(), by_patient, "success"),
        (running.ehr(), {"resourceType": "Parameters", "parameter": [_patient(ready)]}, "success"),
    ]
    for client, body, status in asks:
        with client as http:
            http.get("/v1/health")  # the connection is open before counting
            with counting(running.app) as seen:
                assert _validated(http.post(ETASU, json=body))["status"] == status
        assert (seen.begun, seen.committed, seen.rolled_back, seen.writers) == (1, 1, 0, 0)
    # The narrow terminal key has dispense:check only: asking by patient needs course:read.
    narrow = running.client(running.narrow_key, **{"X-Acting-Person": running.w.pharmacist.id})
    before = running.app.audit_count(running.w.admin.id)
    with narrow as http, counting(running.app) as refused:
        response = http.post(ETASU, json=by_patient)
        assert assert_problem(response, 403, "NOT_PERMITTED")["codes"] == [rc.SCOPE_NOT_GRANTED]
    assert (refused.begun, refused.committed) == (1, 0)
    assert running.app.audit_count(running.w.admin.id) == before


# --- the command ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_compliance_serve_runs_the_service(sqlite_url: str, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    with Compliance.open(sqlite_url, FixedClock(T0)) as app:
        w = build_world(app)
        key = app.add_client(w.admin.id, "Admin", "administrator", w.admin.id, pepper=PEPPER).key
    pepper_file = tmp_path / "pepper"
    pepper_file.write_bytes(PEPPER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPLIANCE_")}
    command = [sys.executable, "-m", "compliance", "--db", sqlite_url, "serve"]
    no_pepper = subprocess.run(
        [*command, "--port", "1"], env=env, capture_output=True, text=True, timeout=60
    )
    assert no_pepper.returncode == 2 and "COMPLIANCE_API_PEPPER" in no_pepper.stderr
    env["COMPLIANCE_API_PEPPER_FILE"] = str(pepper_file)
    simulated = subprocess.run(
        [
            sys.executable,
            "-m",
            "compliance",
            "--db",
            sqlite_url,
            "--now",
            "2026-11-02T00:00:00+00:00",
            "serve",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert simulated.returncode == 2 and "--now" in simulated.stderr
    port = _free_port()
    process = subprocess.Popen(
        [*command, "--port", str(port)], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                health = httpx.get(f"{base}/v1/health", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "compliance serve did not answer"
                time.sleep(0.05)
        assert health.json()["status"] == "ok" and "server" not in health.headers
        listed = httpx.get(
            f"{base}/v1/clients", headers={"Authorization": f"Bearer {key}"}, timeout=5
        )
        assert listed.status_code == 200 and listed.json()["clients"][0]["kind"] == "administrator"
    finally:
        process.terminate()
        process.wait(timeout=30)
