"""The command line: exit codes, exact --json shapes, stderr for errors, fast --help."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from compliance.cli.main import cli
from compliance.errors import EXIT_CODES
from tests.conftest import next_npi

PERSON_KEYS = {"id", "uuid", "role", "name", "status", "created_at", "id_system", "external_id",
               "pharmacy", "time_zone"}
PHARMACY_KEYS = {"id", "uuid", "name", "id_system", "external_id", "time_zone", "status",
                 "created_at", "activation_expires_on"}
GRANT_KEYS = {"designee", "prescriber", "scopes", "granted_at", "granted_by", "expires_at",
              "revoked_at", "active"}
PATIENT_KEYS = {"id", "uuid", "name", "date_of_birth", "external_ids", "created_at", "created_by"}
EVENT_KEYS = {"id", "chain", "seq", "at", "actor", "on_behalf_of", "action", "outcome", "subjects",
              "state_before", "state_after", "reasons", "ruleset", "payload", "prev", "hash"}


class Shell:
    """Runs the CLI against one database, as one actor, like a clinic administrator would."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.runner = CliRunner()
        self.actor: str | None = None

    def run(
        self,
        *args: str,
        actor: str | None = None,
        expect: int = 0,
        env: dict[str, str | None] | None = None,
    ) -> Result:
        who = self.actor if actor is None else actor
        env = {
            "COMPLIANCE_DATABASE_URL": self.url,
            "NO_COLOR": "1",
            "COMPLIANCE_ACTOR": who or None,
            "TZ": "UTC",  # the reader's zone, for bare dates and shown instants
            "COMPLIANCE_TZ": None,
            **(env or {}),
        }
        result = self.runner.invoke(cli, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == expect, (args, result.exit_code, result.stdout, result.stderr)
        return result

    def json(self, *args: str, actor: str | None = None, expect: int = 0) -> Any:
        result = self.run(*args, "--json", actor=actor, expect=expect)
        assert result.stderr == ""
        return json.loads(result.stdout)


@pytest.fixture
def shell(tmp_path: Path) -> Shell:
    sh = Shell(f"sqlite:///{tmp_path / 'cli.db'}")
    admin = sh.json("init", "--admin-name", "Ada Admin")
    assert set(admin) == PERSON_KEYS
    assert admin["role"] == "administrator" and admin["status"] == "active"
    sh.actor = admin["id"]
    return sh


def test_every_command_has_help_and_answers_h(shell: Shell) -> None:
    def walk(command: click.Command, path: list[str]) -> list[list[str]]:
        found = [path]
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                found += walk(sub, [*path, name])
        return found

    paths = walk(cli, [])
    assert len(paths) > 40
    for path in paths:
        for flag in ("-h", "--help"):
            result = shell.run(*path, flag)
            assert "Usage:" in result.stdout


def test_help_does_not_import_sqlalchemy_or_rich() -> None:
    code = (
        "import sys\n"
        "from compliance.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        "bad = [m for m in ('sqlalchemy', 'alembic', 'rich', 'psycopg') if m in sys.modules]\n"
        "print('LOADED:' + ','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Usage: compliance" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "LOADED:"


def test_parties_json_shapes_and_lifecycle(shell: Shell) -> None:
    npi = next_npi()
    prs = shell.json("prescriber", "register", "--name", "Dr Okafor", "--npi", npi)
    assert set(prs) == PERSON_KEYS
    assert (prs["status"], prs["external_id"], prs["id_system"]) == ("registered", npi, "NPI")
    for verb, status in [("activate", "activated"), ("suspend", "suspended"),
                         ("reinstate", "activated")]:
        assert shell.json("prescriber", verb, prs["id"], "--note", "ok")["status"] == status
    assert [p["id"] for p in shell.json("prescriber", "list")] == [prs["id"]]
    assert shell.json("prescriber", "show", prs["id"]) == {**prs, "status": "activated"}

    dsg = shell.json("designee", "register", "--name", "Sam Lee", actor=prs["id"])
    assert set(dsg) == PERSON_KEYS and dsg["role"] == "designee"
    grant = shell.json("designee", "grant", dsg["id"], "--prescriber", prs["id"],
                       "--scope", "patient.register", "--expires", "2099-01-01", actor=prs["id"])
    assert set(grant) == GRANT_KEYS
    assert grant["scopes"] == ["patient.register"] and grant["active"] is True
    assert grant["expires_at"] == "2099-01-01T23:59:59.999999+00:00"  # the end of that day
    grants = shell.json("designee", "grants", dsg["id"])
    assert [set(g) for g in grants] == [GRANT_KEYS]

    reg = shell.json("patient", "register", "--name", "Jordan Smith", "--dob", "2004-05-17",
                     "--external-id", "MRN:42", actor=dsg["id"])
    assert set(reg) == {"patient", "possible_duplicates"}
    assert set(reg["patient"]) == PATIENT_KEYS
    assert reg["patient"]["external_ids"] == {"MRN": "42"}
    assert reg["patient"]["created_by"] == dsg["id"]

    revoked = shell.json("designee", "revoke", dsg["id"], "--prescriber", prs["id"])
    assert revoked["active"] is False and revoked["revoked_at"] is not None

    pha = shell.json("pharmacy", "register", "--name", "Sunset", "--ncpdp", "1234567",
                     "--time-zone", "America/Los_Angeles")
    assert set(pha) == PHARMACY_KEYS and pha["status"] == "registered"
    pha = shell.json("pharmacy", "activate", pha["id"], "--expires-on", "2027-12-31")
    assert (pha["status"], pha["activation_expires_on"]) == ("activated", "2027-12-31")
    assert shell.json("pharmacy", "show", pha["id"]) == pha
    assert shell.json("pharmacy", "list") == [pha]
    rph = shell.json("pharmacist", "register", "--name", "Alex", "--pharmacy", pha["id"])
    assert set(rph) == PERSON_KEYS and rph["pharmacy"] == pha["id"]
    assert shell.json("pharmacist", "list") == [rph]
    me = shell.json("whoami", actor=rph["id"])
    assert me == rph

    pid = reg["patient"]["id"]
    # Registered by the designee for the prescriber: the prescriber's patient to look up; a
    # pharmacist finds patients only through a prescription (dispense find).
    assert shell.json("patient", "show", "MRN:42", actor=prs["id"]) == reg["patient"]
    assert shell.json("patient", "find", "--name", "jordan", actor=prs["id"]) == [reg["patient"]]
    refused = shell.run("patient", "show", "MRN:42", "--json", actor=rph["id"], expect=4)
    assert json.loads(refused.stderr)["reasons"] == ["ACTOR_NOT_PERMITTED"]
    added = shell.json("patient", "add-id", pid, "hospital:H-7")
    assert added["external_ids"] == {"HOSPITAL": "H-7", "MRN": "42"}

    assert shell.json("pharmacist", "deactivate", rph["id"])["status"] == "deactivated"
    assert shell.json("pharmacy", "deactivate", pha["id"])["status"] == "deactivated"
    assert shell.json("designee", "deactivate", dsg["id"])["status"] == "deactivated"
    assert shell.json("prescriber", "deactivate", prs["id"])["status"] == "deactivated"
    second = shell.json("admin", "add", "--name", "Bo Admin")
    assert shell.json("admin", "show", second["id"]) == second
    assert len(shell.json("admin", "list")) == 2
    assert shell.json("admin", "deactivate", second["id"])["status"] == "deactivated"


def test_prescriber_zone_at_registration_and_changed_by_an_administrator(shell: Shell) -> None:
    """The clinic's own zone: --zone on register, then set-zone / --clear; a bad zone is an
    error naming the option."""
    prs = shell.json(
        "prescriber",
        "register",
        "--name",
        "Dr Sousa",
        "--npi",
        next_npi(),
        "--zone",
        "Europe/Lisbon",
    )
    assert prs["time_zone"] == "Europe/Lisbon"
    moved = shell.json("prescriber", "set-zone", prs["id"], "--zone", "Europe/Athens")
    assert moved["time_zone"] == "Europe/Athens"
    assert shell.json("prescriber", "show", prs["id"])["time_zone"] == "Europe/Athens"
    assert shell.json("prescriber", "set-zone", prs["id"], "--clear")["time_zone"] is None
    bad = shell.run("prescriber", "set-zone", prs["id"], "--zone", "Europe/Atlantis", expect=2)
    assert "--zone" in bad.stderr and "Europe/Atlantis" in bad.stderr
    bad = shell.run(
        "prescriber",
        "register",
        "--name",
        "Dr X",
        "--npi",
        next_npi(),
        "--zone",
        "Mars/Base",
        expect=2,
    )
    assert "--zone" in bad.stderr and "Mars/Base" in bad.stderr
    assert "--zone" in shell.run("prescriber", "set-zone", prs["id"], expect=2).stderr
    events = shell.json("audit", "log", "--subject", prs["id"])
    assert [e["action"] for e in events].count("prescriber.set_zone") == 2


def test_duplicate_patient_warns_on_stderr_and_never_merges(shell: Shell) -> None:
    first = shell.json("patient", "register", "--name", "Ana Lopez", "--dob", "1990-01-01")
    again = shell.run("patient", "register", "--name", "ANA  LÓPEZ", "--dob", "1990-01-01")
    assert "possible duplicate" in again.stderr and first["patient"]["id"] in again.stderr
    assert len(shell.json("patient", "find", "--dob", "1990-01-01")) == 2


def test_error_exit_codes_and_messages(shell: Shell, tmp_path: Path) -> None:
    bad = shell.run("patient", "register", "--name", "X", "--dob", "2027-02-30", expect=2)
    assert bad.stdout == "" and "--dob" in bad.stderr and "2027-02-30" in bad.stderr
    as_json = shell.run("patient", "register", "--name", "X", "--dob", "2027-02-30", "--json",
                        expect=2)
    assert json.loads(as_json.stderr) == {
        "error": "INVALID_INPUT",
        "field": "--dob",
        "message": "--dob: '2027-02-30' is not a valid date (YYYY-MM-DD)",
    }
    assert "--time-zone" in shell.run("pharmacy", "register", "--name", "P", "--ncpdp", "1234567",
                                    "--time-zone", "Mars/Base", expect=2).stderr
    assert "NPI" in shell.run("prescriber", "register", "--name", "P", "--npi", "1234567890",
                              expect=2).stderr
    assert "--as" in shell.run("admin", "list", actor="", expect=2).stderr

    refused = shell.run("prescriber", "list", "--json", actor="PRS-00000000", expect=4)
    body = json.loads(refused.stderr)
    assert body["error"] == "NOT_PERMITTED" and body["reasons"] == ["ACTOR_UNKNOWN"]
    assert refused.stdout == ""

    missing = shell.run("patient", "show", "PAT-00000000", expect=5)
    assert "patient not found: PAT-00000000" in missing.stderr

    prs = shell.json("prescriber", "register", "--name", "Dr A", "--npi", next_npi())
    shell.run("prescriber", "activate", prs["id"])
    assert "cannot activate" in shell.run("prescriber", "activate", prs["id"], expect=6).stderr
    shell.run("prescriber", "register", "--name", "Dr B", "--npi", prs["external_id"], expect=6)

    mistyped = tmp_path / "cliinc.db"
    empty = Shell(f"sqlite:///{mistyped}")
    refused_read = empty.run("admin", "list", actor="ADM-00000000", expect=8).stderr
    assert "no database at" in refused_read and "compliance init" in refused_read
    assert not mistyped.exists(), "a read command must never create a database"
    (tmp_path / "blank.db").touch()
    blank = Shell(f"sqlite:///{tmp_path / 'blank.db'}")
    assert "compliance db upgrade" in blank.run("admin", "list", actor="ADM-00000000",
                                                expect=8).stderr


def test_audit_commands(shell: Shell, tmp_path: Path) -> None:
    shell.json("patient", "register", "--name", "Kim", "--dob", "2000-01-01")
    shell.run("prescriber", "list", actor="RPH-00000000", expect=4)

    verified = shell.json("audit", "verify")
    # the unknown actor's refusal is filed under the system chain, not under what was typed;
    # a checkpoint records the heads of the other chains (the system chain holds checkpoints)
    assert verified == {"ok": True, "events": 3, "chains": 3, "checkpoints": 0,
                        "signed_checkpoints": 0, "key": None, "key_trusted": True,
                        "against": None, "first_break": None}
    point = shell.json("audit", "checkpoint")
    assert set(point) == {"event_id", "chains", "digest", "at", "number", "events", "heads",
                          "key"} and point["chains"] == 2
    assert (point["number"], point["events"]) == (1, 3)

    events = shell.json("audit", "log", "--oldest-first")
    assert [set(e) for e in events] == [EVENT_KEYS] * 4
    assert [e["action"] for e in events] == ["administrator.create", "patient.register",
                                             "party.read", "audit.checkpoint"]
    assert shell.json("audit", "log", "--actor", "RPH-00000000") == []
    refused = shell.json("audit", "log", "--actor", "UNKNOWN_ACTOR")
    assert [(e["outcome"], e["reasons"]) for e in refused] == [("refused", ["ACTOR_UNKNOWN"])]
    assert shell.json("audit", "log", "--action", "patient.register")[0]["subjects"][0][:4] == "PAT-"
    assert shell.json("audit", "log", "--since", "2999-01-01") == []

    out = tmp_path / "trail.jsonl"
    shell.run("audit", "export", "--format", "jsonl", "--output", str(out))
    lines = out.read_text().splitlines()
    assert [json.loads(line)["hash"] for line in lines] == [e["hash"] for e in events]
    csv_out = shell.run("audit", "export", "--format", "csv").stdout.splitlines()
    assert csv_out[0].split(",")[:3] == ["id", "chain", "seq"] and len(csv_out) == 5

    db_path = shell.url.removeprefix("sqlite:///")
    with sqlite3.connect(db_path) as conn:
        conn.execute("DROP TRIGGER audit_events_no_update")
        conn.execute("UPDATE audit_events SET actor_id = 'ADM-FORGED00' WHERE id = 2")
    broken = shell.run("audit", "verify", "--json", expect=7)
    report = json.loads(broken.stdout)
    assert report["ok"] is False and report["first_break"]["event_id"] == 2
    assert json.loads(broken.stderr)["error"] == "AUDIT_BROKEN"


def test_db_commands(shell: Shell) -> None:
    current = shell.json("db", "current")
    assert set(current) == {"url", "current", "head", "up_to_date"}
    assert current["up_to_date"] is True and current["current"] == current["head"]
    assert shell.json("db", "upgrade") == current
    assert shell.json("db", "check") == {"drift": False, "detail": None}


def test_reference_commands(shell: Shell) -> None:
    table = shell.json("permissions")
    assert {row["action"] for row in table} >= {"patient.register", "audit.verify"}
    roles = ["administrator", "prescriber", "designee", "pharmacist", "patient"]
    assert set(table[0]) == {"action", *roles}
    codes = shell.json("exit-codes")
    assert [(c["code"], c["name"]) for c in codes] == [(c, n) for c, n, _ in EXIT_CODES]
    plain = shell.run("permissions").stdout.splitlines()
    assert plain[0].split("\t") == ["action", *roles]


def test_demo_refuses_a_database_not_made_for_training(shell: Shell, tmp_path: Path) -> None:
    database = Path(shell.url.removeprefix("sqlite:///"))
    before = shell.json("audit", "log", "--limit", "1000")
    for actor in (None, shell.actor):
        refused = shell.run("demo", actor=actor or "", expect=6)
        assert "is not a training database" in refused.stderr
        assert "compliance demo --as" not in refused.stderr
    assert shell.json("audit", "log", "--limit", "1000") == before
    assert database.exists()


def test_demo_uses_its_own_database_by_default(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["demo"], env={"COMPLIANCE_DATABASE_URL": None,
                                                    "COMPLIANCE_ACTOR": None, "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    assert (tmp_path / "compliance-demo.db").is_file()
    assert not (tmp_path / "compliance.db").exists()


def test_postgres_url_spellings_are_accepted() -> None:
    from compliance.db.engine import parse_url

    for spelling in ("postgres", "postgresql", "postgresql+psycopg", "pgsql"):
        assert parse_url(f"{spelling}://u@h:5432/d").drivername == "postgresql+psycopg"
    with pytest.raises(Exception, match="psycopg 3 only"):
        parse_url("postgresql+psycopg2://u@h/d")


def test_a_closed_pipe_ends_the_command_quietly(shell: Shell, tmp_path: Path) -> None:
    for i in range(400):
        shell.run("patient", "register", "--name", f"Pat {i}", "--dob", "2000-01-01")
    env = {**__import__("os").environ, "COMPLIANCE_DATABASE_URL": shell.url,
           "COMPLIANCE_ACTOR": shell.actor or ""}
    proc = subprocess.Popen([sys.executable, "-m", "compliance", "audit", "export"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b"{")
    proc.stdout.close()
    error = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, error
    assert "BrokenPipe" not in error and "Traceback" not in error and error == ""


def test_demo_runs_and_reruns(tmp_path: Path) -> None:
    sh = Shell(f"sqlite:///{tmp_path / 'demo.db'}")
    first = sh.run("demo").stdout
    assert "Audit trail intact" in first and "REFUSED" in first
    assert "created" in first.splitlines()[1]
    assert "enrolled under uk-iso/2026-01" in first
    assert "may prescribe today?: REFUSE (TEST_TOO_OLD_FOR_RX)" in first
    assert "   dispense record " in first
    second = sh.run("demo").stdout
    assert "reused" in second.splitlines()[1] and "Audit trail intact" in second
