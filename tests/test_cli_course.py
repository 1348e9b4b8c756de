"""The course, dispensing, rules, status and due commands: shapes, exit codes, --now."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import next_npi
from tests.test_cli import Shell

COURSE_KEYS = {"id", "patient", "prescriber", "ruleset", "state", "cycle", "enrolled_on",
               "category", "category_reason", "first_dispensed_on", "last_dose_on",
               "pregnancy_actions", "open"}
OUTCOME_KEYS = {"course", "decision", "prescription", "authorization", "record"}
DECISION_KEYS = {"gate", "outcome", "reasons", "ruleset", "evaluated_at", "today", "cycle",
                 "window", "test", "earliest"}
AUTH_KEYS = {"number", "formatted", "patient", "prescription", "pharmacy", "cycle", "issued_at",
             "do_not_dispense_after", "test", "days_supply", "reversed_at", "reversal_reason",
             "dispensed_at", "zone", "kind"}


@pytest.fixture
def clinic(tmp_path: Path) -> tuple[Shell, dict[str, str]]:
    sh = Shell(f"sqlite:///{tmp_path / 'clinic.db'}")
    admin = sh.json("--now", "2026-12-01T15:00:00Z", "init", "--admin-name", "Ada",
                    "--training")["id"]
    sh.actor = admin
    prs = sh.json("prescriber", "register", "--name", "Dr P", "--npi", next_npi())["id"]
    sh.run("prescriber", "activate", prs)
    pha = sh.json("pharmacy", "register", "--name", "Ph", "--ncpdp", "7654321",
                  "--time-zone", "Pacific/Honolulu")["id"]
    sh.run("pharmacy", "activate", pha)
    rph = sh.json("pharmacist", "register", "--name", "R", "--pharmacy", pha)["id"]
    pat = sh.json("patient", "register", "--name", "Ana", "--dob", "2001-01-01")["patient"]["id"]
    return sh, {"admin": admin, "prs": prs, "rph": rph, "pat": pat}


def at(day: str, *args: str) -> list[str]:
    return ["--now", f"{day}T15:00:00Z", *args]


def test_rules_commands(clinic: tuple[Shell, dict[str, str]]) -> None:
    sh, ids = clinic
    listed = sh.json("rules", "list")
    assert [r["id"] for r in listed] == [
        "eu-iso/2018",
        "ipledge/2023-03",
        "ipledge/2026-mod",
        "lenalidomide/2023-03",
        "uk-iso/2026-01",
    ]
    assert set(listed[0]) == {"id", "title", "effective", "today_zone", "clinic_zone",
                              "dispense_zone"}
    assert (listed[0]["today_zone"], listed[0]["dispense_zone"]) == ("Europe/Brussels", "pharmacy")
    shown = sh.json("rules", "show", "ipledge/2026-mod")
    assert shown["categories"]["can_get_pregnant"]["window"] == {"days": 7,
                                                                 "anchor": "specimen_date"}
    assert shown["lockout_days_after_missed_first_window"] == 0
    diagram = sh.run("rules", "diagram", "ipledge/2026-mod").stdout
    assert "stateDiagram-v2" in diagram and "qualified --> authorized: authorize" in diagram
    sched = sh.json("rules", "schedule", "ipledge/2026-mod", "2026-08-08")
    assert {"ruleset": "ipledge/2026-mod", "effective": "2026-08-08"} in sched
    events = sh.json("audit", "log", "--action", "rules.schedule")
    assert events[0]["payload"]["previous"] == "2026-11-15"
    bad = sh.run("rules", "show", "nope/1", expect=2)
    assert "ruleset" in bad.stderr and "nope/1" in bad.stderr
    sh.run("rules", "schedule", "ipledge/2026-mod", "2026-08-08", actor=ids["prs"], expect=4)


def test_a_course_through_the_cli(clinic: tuple[Shell, dict[str, str]]) -> None:
    sh, ids = clinic
    prs, rph, pat = ids["prs"], ids["rph"], ids["pat"]
    enrolled = sh.json(*at("2026-12-01", "course", "enrol", pat), actor=prs)
    assert set(enrolled) == OUTCOME_KEYS and set(enrolled["course"]) == COURSE_KEYS
    assert (enrolled["course"]["state"], enrolled["course"]["ruleset"]) == (
        "enrolled", "ipledge/2026-mod")
    sh.json(*at("2026-12-01", "course", "category", pat, "cannot_get_pregnant", "NO_UTERUS"),
            actor=prs)
    check = sh.json(*at("2026-12-01", "course", "check", pat), actor=prs, expect=11)
    assert set(check) == DECISION_KEYS and check["outcome"] == "REFUSE"
    # writing needs the consent; counselling is judged at the pharmacy's request (iPLEDGE), and a
    # patient who cannot get pregnant answers no comprehension questions (workflows.md 2)
    assert [r["code"] for r in check["reasons"]] == ["CONSENT_NOT_SIGNED"]
    assert set(check["reasons"][0]) == {"code", "message", "next_step", "earliest"}

    refused = sh.run(*at("2026-12-01", "course", "prescribe", pat, "--days-supply", "30",
                         "--json"), actor=prs, expect=3)
    body = json.loads(refused.stderr)
    assert body["error"] == "REFUSED" and body["decision"]["gate"] == "prescribe"
    assert body["reasons"] == ["CONSENT_NOT_SIGNED"]

    sh.run(*at("2026-12-01", "course", "consent", pat, "PATIENT_INFORMATION_CONSENT"), actor=prs)
    sh.run(*at("2026-12-01", "course", "counselling", pat), actor=prs)
    too_much = sh.run(*at("2026-12-01", "course", "prescribe", pat, "--days-supply", "31"),
                      actor=prs, expect=3)
    assert "SUPPLY_EXCEEDS_MAX" in too_much.stderr
    rx = sh.json(*at("2026-12-01", "course", "prescribe", pat, "--days-supply", "30"),
                 actor=prs)
    assert rx["course"]["state"] == "qualified" and rx["decision"]["outcome"] == "ALLOW"
    rx_id = rx["prescription"]["id"]

    ok = sh.json(*at("2026-12-02", "dispense", "check", rx_id), actor=rph)
    assert ok["outcome"] == "ALLOW" and ok["window"] is None
    over = sh.json(*at("2026-12-02", "dispense", "check", rx_id, "--days-supply", "31"),
                   actor=rph, expect=11)
    assert [r["code"] for r in over["reasons"]] == [
        "SUPPLY_EXCEEDS_MAX", "SUPPLY_EXCEEDS_PRESCRIPTION"]
    npi = sh.json("prescriber", "show", prs)["external_id"]
    found = sh.json("dispense", "find", "--patient", pat, "--dob", "2001-01-01",
                    "--prescriber-npi", npi, actor=rph)
    assert found["id"] == rx_id and found["days_supply"] == 30
    missing = sh.run("dispense", "find", "--patient", pat, "--dob", "2001-01-02",
                     "--prescriber-npi", npi, actor=rph, expect=5)
    assert "not found" in missing.stderr
    auth = sh.json(*at("2026-12-02", "dispense", "authorize", rx_id), actor=rph)
    assert set(auth["authorization"]) == AUTH_KEYS
    assert auth["authorization"]["kind"] == "authorization"
    assert auth["authorization"]["zone"] == "America/New_York"  # iPLEDGE judges in Eastern
    number = auth["authorization"]["number"]
    assert auth["authorization"]["do_not_dispense_after"] is None  # no window under 2026-mod
    again = sh.run(*at("2026-12-02", "dispense", "authorize", rx_id, "--json"), actor=rph,
                   expect=3)
    assert json.loads(again.stderr)["reasons"] == ["AUTHORIZATION_ALREADY_ISSUED"]
    reversed_ = sh.json(*at("2026-12-02", "dispense", "reverse", number, "--reason", "qty"),
                        actor=rph)
    assert reversed_["authorization"]["reversal_reason"] == "qty"
    assert reversed_["course"]["state"] == "qualified"
    sh.run(*at("2026-12-02", "dispense", "record", number), actor=rph, expect=3)
    second = sh.json(*at("2026-12-02", "dispense", "authorize", rx_id, "--days-supply", "28"),
                     actor=rph)
    assert second["authorization"]["days_supply"] == 28
    picked = sh.json(*at("2026-12-03", "dispense", "record",
                         second["authorization"]["formatted"]), actor=rph)
    assert picked["course"]["state"] == "dispensed" and picked["course"]["cycle"] == 2

    status = sh.json(*at("2026-12-03", "status", pat), actor=prs)
    assert set(status) == {"next", "course", "decision", "checklist", "open_authorization",
                           "current_prescription", "flags"}
    # Picked up; a patient who cannot get pregnant: next month's prescription when the supply
    # ends, not today.
    assert status["next"]["what"] == "next month's prescription"
    assert status["next"]["due_by"] > "2026-12-03"
    items = {c["item"]: c["status"] for c in status["checklist"]}
    assert items["pregnancy_test"] == "not_required" and items["consent"] == "done"
    assert set(status["checklist"][0]) == {"item", "status", "detail", "next_step", "due_by"}

    ended = sh.json(*at("2026-12-20", "course", "end", pat, "--last-dose-on", "2026-12-20"),
                    actor=prs)
    assert ended["course"]["state"] == "completed" and ended["course"]["open"] is False

    records = sh.json("audit", "log", "--action", "dispense.record", "--oldest-first")
    assert [(e["outcome"], e["reasons"]) for e in records] == [
        ("refused", ["AUTHORIZATION_REVERSED"]), ("ok", [])]
    assert records[1]["payload"]["simulated_now"] == "2026-12-03T15:00:00+00:00"
    assert records[1]["at"] == "2026-12-03T15:00:00.000000Z"


def test_confirm_patient_through_the_cli(clinic: tuple[Shell, dict[str, str]]) -> None:
    sh, ids = clinic
    prs, pat = ids["prs"], ids["pat"]
    sh.run(*at("2026-12-01", "course", "enrol", pat), actor=prs)
    sh.run(*at("2026-12-01", "course", "category", pat, "can_get_pregnant",
               "REPRODUCTIVE_POTENTIAL"), actor=prs)
    none = sh.run(*at("2026-12-01", "course", "confirm-patient", pat, "--json"), actor=prs,
                  expect=3)
    assert json.loads(none.stderr)["reasons"] == ["NO_NEGATIVE_TEST_IN_WINDOW"]
    sh.run(*at("2026-12-01", "course", "test", pat, "--kind", "screening", "--specimen-date",
               "2026-12-01", "--setting", "clinic", "--result", "negative"), actor=prs)
    done = sh.json(*at("2026-12-01", "course", "confirm-patient", pat), actor=prs)
    assert done["record"]["specimen_date"] == "2026-12-01"


def test_due_and_pregnancy_flags(clinic: tuple[Shell, dict[str, str]]) -> None:
    sh, ids = clinic
    prs, pat = ids["prs"], ids["pat"]
    sh.run(*at("2026-12-01", "course", "enrol", pat), actor=prs)
    sh.run(*at("2026-12-01", "course", "category", pat, "can_get_pregnant", "TUBAL_LIGATION"),
           actor=prs)
    out = sh.json(*at("2026-12-02", "course", "test", pat, "--kind", "screening",
                      "--specimen-date", "2026-12-02", "--setting", "clinic",
                      "--result", "positive"), actor=prs)
    assert out["course"]["state"] == "suspended" and out["course"]["pregnancy_actions"] is True
    flags = sh.json(*at("2026-12-02", "due", "--within", "7"), actor=prs)
    assert [(f["code"], f["patient"]) for f in flags] == [("PREGNANCY_ACTIONS", pat)]
    assert set(flags[0]) == {"code", "patient", "message", "due", "reference"}
    wrong = sh.run(*at("2026-12-02", "course", "category", pat, "cannot_get_pregnant",
                       "TUBAL_LIGATION"), actor=prs, expect=3)
    assert "INVALID_CATEGORY_REASON" in wrong.stderr
    sh.run(*at("2026-12-02", "course", "resume", pat, "--note", "false positive"), actor=prs)
    assert sh.json(*at("2026-12-02", "due"), actor=prs) == []


def test_course_input_errors(clinic: tuple[Shell, dict[str, str]]) -> None:
    sh, ids = clinic
    prs, pat = ids["prs"], ids["pat"]
    assert "NO_ACTIVE_COURSE" in sh.run("course", "counselling", pat, actor=prs, expect=3).stderr
    sh.run(*at("2026-12-01", "course", "enrol", pat), actor=prs)
    future = sh.run(*at("2026-12-01", "course", "test", pat, "--kind", "screening",
                        "--specimen-date", "2026-12-30", "--setting", "clinic",
                        "--result", "negative"), actor=prs, expect=2)
    assert "--specimen-date" in future.stderr and "future" in future.stderr
    bad_method = sh.run(*at("2026-12-01", "course", "contraception", pat, "--method",
                            "hope=2026-11-01"), actor=prs, expect=2)
    assert "--method" in bad_method.stderr and "hope" in bad_method.stderr
    assert "--now" in sh.run("--now", "2026-12-01T15:00:00", "due", expect=2).stderr
    assert "--days-supply" in sh.run("course", "prescribe", pat, "--days-supply", "0",
                                   actor=prs, expect=2).stderr


def test_simulated_clock_needs_a_training_database_or_an_administrator(tmp_path: Path) -> None:
    sh = Shell(f"sqlite:///{tmp_path / 'real.db'}")
    refused_init = sh.run("--now", "2026-12-01T15:00:00Z", "init", "--admin-name", "Ada",
                          expect=2)
    assert "--now" in refused_init.stderr and "training" in refused_init.stderr
    admin = sh.json("init", "--admin-name", "Ada")["id"]
    sh.actor = admin
    sim = sh.run("--now", "2020-01-01T00:00:00Z", "prescriber", "list", "--json", expect=4)
    assert json.loads(sim.stderr)["reasons"] == ["CLOCK_OVERRIDE_NOT_ALLOWED"]
    (event,) = sh.json("audit", "log", "--actor", admin, "--action", "party.read")
    assert event["outcome"] == "refused" and not event["at"].startswith("2020")  # real time
    assert event["payload"]["simulated_now"] == "2020-01-01T00:00:00+00:00"
    enabled = sh.json("admin", "clock-override", "--enable")
    assert (enabled["enabled"], enabled["training"]) == (True, False)
    lasts = datetime.fromisoformat(enabled["expires_at"]) - datetime.now(UTC)
    assert timedelta(hours=23) < lasts <= timedelta(hours=24)  # a day unless --hours says
    assert sh.json("--now", "2020-01-01T00:00:00Z", "prescriber", "list") == []
    sh.json("admin", "clock-override", "--disable")
    sh.run("--now", "2020-01-01T00:00:00Z", "prescriber", "list", expect=4)
    assert sh.json("audit", "verify")["ok"] is True
