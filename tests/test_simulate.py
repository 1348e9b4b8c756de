"""``compliance simulate``: every documented timeline replays with all its expectations held,
replays under another ruleset change what they should, bad timelines are exit 2 naming the
event and the field, and nothing is left behind. Real SQLite, through the command line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st

from compliance import Compliance
from compliance.audit.store import LogFilter
from compliance.cli.main import cli
from compliance.cli.reference import DOCUMENTS, render
from compliance.errors import InvalidInput
from compliance.simulation import OPERATIONS, examples
from compliance.simulation.runner import ADMIN_KEY
from compliance.simulation.timeline import from_data

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SHIPPED = examples.FOLDER
TIMELINES = sorted(SHIPPED.glob("*.toml"))
RESULT_KEYS = {
    "index",
    "at",
    "op",
    "patient",
    "patient_id",
    "by",
    "by_id",
    "ruleset",
    "outcome",
    "codes",
    "message",
    "reasons",
    "flags",
    "state",
    "cycle",
    "decision",
    "prescription",
    "authorization",
    "expected",
}
AUTHORIZATION_KEYS = {
    "number",
    "formatted",
    "prescription",
    "do_not_dispense_after",
    "reversed_at",
    "dispensed_at",
    "kind",
}
REASON_KEYS = {"code", "message", "next_step", "earliest"}


@pytest.fixture(autouse=True)
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The temporary folder simulate works in, checked empty after every test."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder
    assert list(folder.iterdir()) == []


def simulate(*args: str | Path, expect: int = 0) -> Result:
    result = CliRunner().invoke(
        cli, ["simulate", *map(str, args)], env={"NO_COLOR": "1"}, catch_exceptions=False
    )
    assert result.exit_code == expect, (args, result.exit_code, result.stdout, result.stderr)
    return result


def replay(path: Path, *args: str, expect: int = 0) -> list[dict[str, Any]]:
    result = simulate(path, "--json", *args, expect=expect)
    document: list[dict[str, Any]] = json.loads(result.stdout)
    return document


def by_index(results: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {r["index"]: r for r in results}


def write(tmp_path: Path, text: str, name: str = "t.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# --- the documented examples -------------------------------------------------------------------


def test_the_examples_exist() -> None:
    names = {p.name for p in TIMELINES}
    assert {"ipledge-course.toml", "ipledge-missed-window.toml", "ipledge-lockout.toml"} <= names
    documented = (DOCS / "simulate.md").read_text(encoding="utf-8")
    for path in TIMELINES:
        assert f"[`{path.stem}`]" in documented, f"{path.name} is not described"


@pytest.mark.parametrize("path", TIMELINES, ids=lambda p: p.stem)
def test_every_documented_timeline_holds(path: Path) -> None:
    results = replay(path)
    expected = [r for r in results if r["expected"] is not None]
    assert expected, "a documented timeline states expectations"
    assert [r["index"] for r in expected if not r["expected"]["held"]] == []
    assert [r["index"] for r in results] == list(range(1, len(results) + 1))
    assert all(set(r) == RESULT_KEYS for r in results)


def test_every_operation_appears_in_an_example() -> None:
    used = set()
    for path in TIMELINES:
        used |= set(re.findall(r'^op = "(\w+)"', path.read_text(encoding="utf-8"), flags=re.M))
    assert used == set(OPERATIONS)


def test_the_operations_table_is_current() -> None:
    text = (DOCS / "simulate.md").read_text(encoding="utf-8")
    assert render(text, DOCUMENTS["docs/simulate.md"]) == text, (
        "run: python -m compliance.cli.reference"
    )
    for op in OPERATIONS:
        assert f"### `{op}`" in text


def test_the_small_example_in_the_docs_runs(tmp_path: Path) -> None:
    text = (DOCS / "simulate.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```toml\n(.*?)```", text, flags=re.S) if "[[event]]" in b)
    results = replay(write(tmp_path, block))
    assert [(r["op"], r["outcome"]) for r in results] == [("enrol", "ALLOW"), ("check", "REFUSE")]


def test_the_json_keys_are_documented() -> None:
    text = (DOCS / "simulate.md").read_text(encoding="utf-8")
    section = text.split("With `--json`", 1)[1]
    for key in RESULT_KEYS | AUTHORIZATION_KEYS:
        assert f'"{key}"' in section, key


# --- concrete decisions, asserted here rather than in the files --------------------------------


def test_whole_course_decisions() -> None:
    results = by_index(replay(SHIPPED / "ipledge-course.toml"))
    # iPLEDGE judges the status at the request: writing needs no test (workflows.md 1.1).
    assert results[7]["outcome"] == "ALLOW"
    prescribed = results[9]
    assert prescribed["prescription"].startswith("RX-")
    assert prescribed["decision"]["window"] is None  # no test is judged at writing
    before_result = results[10]
    incomplete = next(
        r for r in before_result["reasons"] if r["code"] == "PRETREATMENT_TESTS_INCOMPLETE"
    )
    assert set(incomplete) == REASON_KEYS
    assert results[13]["codes"] == ["COMPREHENSION_NOT_DONE", "CONTRACEPTION_NOT_CONFIRMED"]
    issued = results[16]
    assert issued["outcome"] == "ALLOW" and issued["state"] == "authorized"
    # Day 1 is the specimen's date (21 December), not the day its result was entered.
    assert issued["decision"]["window"]["first_day"] == "2026-12-21"
    assert issued["decision"]["window"]["last_day"] == "2026-12-27"
    assert set(issued["authorization"]) == AUTHORIZATION_KEYS
    assert len(issued["authorization"]["number"]) == 21
    assert issued["authorization"]["prescription"] == prescribed["prescription"]
    assert issued["authorization"]["do_not_dispense_after"] == "2026-12-27T23:59:59.999999-05:00"
    assert results[17]["codes"] == ["AUTHORIZATION_ALREADY_ISSUED"]
    picked = results[18]
    assert picked["authorization"]["number"] == issued["authorization"]["number"]
    assert picked["authorization"]["dispensed_at"] == "2026-12-23T16:10:00-05:00"
    assert (picked["state"], picked["cycle"]) == ("dispensed", 2)
    assert results[27]["cycle"] == 3
    assert results[30]["codes"] == ["TEST_DUE_SOON"]
    assert results[32]["state"] == "completed"
    assert {r["ruleset"] for r in results.values()} == {"ipledge/2026-mod"}
    assert {r["by"] for r in results.values()} == {"okafor", "ana", "rivera"}
    assert results[14]["by_id"] == results[14]["patient_id"]


def test_missed_window_decisions() -> None:
    results = by_index(replay(SHIPPED / "ipledge-missed-window.toml"))
    issued = results[13]["authorization"]
    # Eastern midnight, seen from Los Angeles
    assert issued["do_not_dispense_after"] == "2026-12-27T20:59:59.999999-08:00"
    late = results[14]
    assert (late["outcome"], late["codes"], late["authorization"]) == (
        "REFUSE",
        ["AUTHORIZATION_EXPIRED"],
        None,
    )
    assert results[15]["authorization"]["reversed_at"] == "2026-12-27T21:20:00-08:00"
    # WINDOW_EXPIRED alone, never with NO_NEGATIVE_TEST_IN_WINDOW (reason-codes.md)
    assert results[16]["codes"] == ["WINDOW_EXPIRED"]
    assert results[16]["decision"]["today"] == "2026-12-28"
    assert results[17]["codes"] == ["WINDOW_EXPIRED"]
    # The new result needs the prescriber's confirmation; then the December prescription,
    # never dispensed, is authorized in the new window (workflows.md 1.3).
    assert results[19]["codes"] == ["PRESCRIBER_CONFIRMATION_MISSING"]
    revived = results[21]
    assert revived["prescription"] == results[12]["prescription"]
    assert revived["decision"]["window"]["first_day"] == "2026-12-29"
    assert revived["authorization"]["do_not_dispense_after"] == "2027-01-04T20:59:59.999999-08:00"
    assert results[22]["state"] == "dispensed"


def test_pregnancy_decisions() -> None:
    results = by_index(replay(SHIPPED / "ipledge-pregnancy.toml"))
    assert (results[14]["by"], results[14]["state"]) == ("eve", "suspended")
    assert results[15]["codes"] == ["COURSE_SUSPENDED"]
    assert results[18]["by"] == "pharmacist" and results[18]["codes"] == ["ACTOR_NOT_PERMITTED"]
    assert results[19]["state"] == "pre_treatment"


# --- replaying under another ruleset -----------------------------------------------------------


def _failed_events(stderr: str) -> list[int]:
    body = json.loads(stderr)
    assert body["error"] == "EXPECTATION_FAILED" and set(body) == {"error", "message", "events"}
    events: list[int] = body["events"]
    return events


def test_lockout_disappears_under_the_2026_modification() -> None:
    path = SHIPPED / "ipledge-lockout.toml"
    legacy = by_index(replay(path))
    # The missed first window: WINDOW_EXPIRED, with the lockout that now runs, names the
    # earliest date of a new specimen.
    assert legacy[13]["codes"] == ["LOCKOUT_19D", "WINDOW_EXPIRED"]
    assert {r["earliest"] for r in legacy[13]["reasons"]} == {"2026-10-10"}
    assert legacy[16]["codes"] == ["LOCKOUT_19D"]
    assert legacy[16]["reasons"][0]["earliest"] == "2026-10-10"
    assert legacy[20]["prescription"] == legacy[12]["prescription"]
    result = simulate(path, "--json", "--ruleset", "ipledge/2026-mod", expect=10)
    assert _failed_events(result.stderr) == [13, 16, 18, 20, 21]  # 13: no lockout to name
    modified = by_index(json.loads(result.stdout))
    assert {r["ruleset"] for r in modified.values()} == {"ipledge/2026-mod"}
    assert modified[13]["codes"] == ["WINDOW_EXPIRED"]
    assert modified[13]["reasons"][0]["earliest"] == "2026-09-28"  # a new test at once
    assert modified[16]["outcome"] == "ALLOW"  # no lockout: the test of 1 October qualifies
    assert modified[20]["codes"] == ["AUTHORIZATION_ALREADY_ISSUED"]


def test_clinic_and_home_tests_do_not_count_under_2023() -> None:
    path = SHIPPED / "ipledge-2026-testing.toml"
    result = simulate(path, "--json", "--ruleset", "ipledge/2023-03", expect=10)
    assert _failed_events(result.stderr) == [14, 15, 23, 24]
    results = by_index(json.loads(result.stdout))
    for test in (8, 16):  # recorded, but flagged
        assert (results[test]["outcome"], results[test]["codes"]) == (
            "ALLOW",
            ["TEST_SETTING_NOT_PERMITTED"],
        )
    # The prescriber confirms the result; whether the rules accept the test is judged at the
    # request.
    assert results[9]["outcome"] == "ALLOW"
    assert "TEST_SETTING_NOT_PERMITTED" in results[14]["codes"]
    assert results[15]["outcome"] == "SKIPPED"
    assert results[15]["message"] == "no authorization has been issued for dana"


def test_missed_window_under_2023_meets_the_lockout() -> None:
    path = SHIPPED / "ipledge-missed-window.toml"
    result = simulate(path, "--json", "--ruleset", "ipledge/2023-03", expect=10)
    results = by_index(json.loads(result.stdout))
    assert results[16]["codes"] == ["LOCKOUT_19D", "WINDOW_EXPIRED"]
    assert {r["earliest"] for r in results[16]["reasons"]} == {"2027-01-09"}
    assert results[21]["codes"] == ["LOCKOUT_19D"]


def test_text_output_names_failed_expectations() -> None:
    path = SHIPPED / "ipledge-lockout.toml"
    result = simulate(path, "--ruleset", "ipledge/2026-mod", expect=10)
    lines = result.stdout.splitlines()
    assert lines[0] == "The 19-day lockout after a missed first window"
    assert "Ruleset ipledge/2026-mod; times in America/New_York" in result.stdout
    assert any(
        line.startswith("[16] 2026-10-01 11:00  cleo  dispense by pharmacist: ALLOW")
        for line in lines
    )
    assert "EXPECTED REFUSE LOCKOUT_19D: not met" in result.stdout
    assert lines[-1] == "21 events: 17 ALLOW, 4 REFUSE. 6 expectations: 5 not met."
    assert result.stderr == (
        "error: 5 expectation(s) not met: [13] check, [16] dispense, [18] dispense, "
        "[20] dispense, [21] pickup\n"
    )


# --- outcomes, actors, defaults -----------------------------------------------------------------

QUALIFY = """
[[event]]
at = 2026-12-01T09:00:00
op = "enrol"
patient = "ana"

[[event]]
at = 2026-12-01T09:01:00
op = "category"
patient = "ana"
category = "cannot_get_pregnant"
reason = "NO_UTERUS"

[[event]]
at = 2026-12-01T09:02:00
op = "consent"
patient = "ana"
form = "PATIENT_INFORMATION_CONSENT"

[[event]]
at = 2026-12-01T09:03:00
op = "counselling"
patient = "ana"

[[event]]
at = 2026-12-01T09:04:00
op = "comprehension"
patient = "ana"
"""


def test_conflict_skipped_and_acting_people(tmp_path: Path) -> None:
    head = 'ruleset = "ipledge/2026-mod"\n[parties.patients]\nbob = {}\n'
    path = write(
        tmp_path,
        head
        + QUALIFY
        + """
        [[event]]
        at = 2026-12-01T09:05:00
        op = "enrol"
        patient = "ana"
        expect = "CONFLICT"

        [[event]]
        at = 2026-12-01T09:06:00
        op = "prescribe"
        patient = "ana"
        by = "pharmacist"
        days_supply = 30
        expect_codes = ["ACTOR_NOT_PERMITTED"]

        [[event]]
        at = 2026-12-01T09:07:00
        op = "dispense"
        patient = "ana"
        expect = "SKIPPED"

        [[event]]
        at = 2026-12-01T09:08:00
        op = "prescribe"
        patient = "ana"
        days_supply = 30

        [[event]]
        at = 2026-12-01T09:09:00
        op = "dispense"
        patient = "ana"

        [[event]]
        at = 2026-12-01T09:10:00
        op = "end"
        patient = "ana"
        expect = "CONFLICT"

        [[event]]
        at = 2026-12-01T09:11:00
        op = "status"
        patient = "ana"
        by = "bob"
        expect_codes = ["OUT_OF_SCOPE"]

        [[event]]
        at = 2026-12-01T09:12:00
        op = "comprehension"
        patient = "bob"
        """,
    )
    results = by_index(replay(path))
    assert results[6]["message"] == f"patient {results[6]['patient_id']} already has an open course"
    assert results[7]["outcome"] == "REFUSE" and results[7]["by_id"].startswith("RPH-")
    assert results[8]["message"] == "no prescription has been issued for ana"
    assert results[10]["outcome"] == "ALLOW" and results[10]["authorization"] is not None
    assert "authorization is open" in results[11]["message"]
    assert results[12]["outcome"] == "REFUSE" and results[12]["by_id"] == results[13]["patient_id"]


def test_default_ruleset_follows_the_first_events_date_and_is_pinned(tmp_path: Path) -> None:
    events = QUALIFY.replace("2026-12-01", "2026-11-10")
    later = """
        [[event]]
        at = 2026-12-20T09:00:00
        op = "enrol"
        patient = "bob"

        [[event]]
        at = 2026-12-20T09:05:00
        op = "check"
        patient = "bob"
        """
    results = replay(write(tmp_path, events + textwrap.dedent(later)))
    # ipledge/2026-mod takes effect on 2026-11-15 in the packaged schedule; the whole replay
    # stays under the version in force on the first event's date.
    assert {r["ruleset"] for r in results} == {"ipledge/2023-03"}
    assert results[-1]["decision"]["ruleset"] == "ipledge/2023-03"
    december = replay(write(tmp_path, QUALIFY, "december.toml"))
    assert {r["ruleset"] for r in december} == {"ipledge/2026-mod"}


def test_times_with_an_offset_are_shown_in_the_timeline_zone(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        zone = "Europe/Paris"

        [[event]]
        at = 2026-12-01T09:00:00-05:00
        op = "enrol"
        patient = "ana"

        [[event]]
        at = "2026-12-01T16:00:00"
        op = "status"
        patient = "ana"
        """,
    )
    results = replay(path)
    assert [r["at"] for r in results] == ["2026-12-01T15:00:00+01:00", "2026-12-01T16:00:00+01:00"]


def test_keep_leaves_a_database_that_verifies(tmp_path: Path) -> None:
    kept = tmp_path / "kept.db"
    done = simulate(SHIPPED / "ipledge-pregnancy.toml", "--keep", kept)
    with Compliance.open(f"sqlite:///{kept}") as app:
        admin = app.remembered(ADMIN_KEY)
        assert admin is not None
        assert done.stdout.splitlines()[-1] == (
            f"database kept in {kept}; act on it as its administrator, {admin}"
        )
        enrolled = app.audit_log(admin, LogFilter(action="course.enrol"))
        assert [e.occurred_at.isoformat() for e in enrolled] == ["2026-12-01T14:00:00+00:00"]
        assert enrolled[0].payload["simulated_now"] == "2026-12-01T14:00:00+00:00"
        assert "recorded_at" in enrolled[0].payload
        report = app.verify_audit(admin)
        assert report.ok and report.events > 18
        assert [p.name for p in app.find_patients(admin)] == ["Eve Adams"]
    again = simulate(SHIPPED / "ipledge-pregnancy.toml", "--keep", kept, expect=2)
    assert again.stderr.startswith("error: --keep: ") and "exists" in again.stderr
    nowhere = simulate(
        SHIPPED / "ipledge-pregnancy.toml", "--keep", tmp_path / "no" / "kept.db", expect=2
    )
    assert nowhere.stderr.startswith("error: --keep: folder ")


def test_keep_is_removed_when_the_timeline_is_wrong(tmp_path: Path) -> None:
    kept = tmp_path / "kept.db"
    path = write(
        tmp_path,
        """
        [[event]]
        at = 2026-12-01T09:00:00
        op = "enrol"
        patient = "ana"

        [[event]]
        at = 2026-12-01T09:01:00
        op = "category"
        patient = "ana"
        category = "sometimes"
        reason = "NO_UTERUS"
        """,
    )
    result = simulate(path, "--keep", kept, expect=2)
    assert "event[2].category" in result.stderr
    assert list(tmp_path.glob("kept.db*")) == []


def test_help_does_not_load_the_database_layer() -> None:
    code = (
        "import sys\n"
        "from compliance.cli.main import main\n"
        "try:\n    main(['simulate', '--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        "print('LOADED:' + ','.join(m for m in ('sqlalchemy', 'rich') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Usage: compliance simulate" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "LOADED:"


# --- bad timelines ------------------------------------------------------------------------------

ENROL = """
[[event]]
at = 2026-12-01T09:00:00
op = "enrol"
patient = "ana"
"""

BAD: list[tuple[str, str, str, str]] = [
    # (id, timeline text, field named, words in the problem)
    ("toml", 'title = "x"\n[[event]\n', "TIMELINE", "line 2, column"),
    ("no events", 'title = "x"\n', "event", "no [[event]]"),
    ("unknown top-level key", 'rulset = "ipledge/2023-03"\n' + ENROL, "rulset", "not a known key"),
    ("unknown ruleset", 'ruleset = "ipledge/1999"\n' + ENROL, "ruleset", "unknown ruleset"),
    ("unknown programme", 'programme = "ipledge-uk"\n' + ENROL, "programme", "must be one of"),
    (
        "patient not a name",
        'programme = "ipledge"\nruleset = "ipledge/2023-03"\n'
        'zone = "UTC"\n[[event]]\nat = 2026-12-01T09:00:00\nop = "enrol"\npatient = 3\n',
        "event[1].patient",
        "must be text",
    ),
    ("bad zone", 'zone = "Mars/Base"\n' + ENROL, "zone", "IANA"),
    (
        "bad party key",
        '[parties.prescribers]\nokafor = { nom = "x" }\n' + ENROL,
        "parties.prescribers.okafor.nom",
        "not a known key",
    ),
    (
        "bad prescriber zone",
        '[parties.prescribers]\nokafor = { zone = "Europe/Atlantis" }\n' + ENROL,
        "parties.prescribers.okafor.zone",
        "IANA",
    ),
    (
        "pharmacist of unknown pharmacy",
        '[parties.pharmacists]\nx = { pharmacy = "nowhere" }\n' + ENROL,
        "parties.pharmacists.x.pharmacy",
        "not a declared pharmacy",
    ),
    (
        "bad birth date",
        '[parties.patients]\nana = { date_of_birth = "2001-02-30" }\n' + ENROL,
        "parties.patients.ana.date_of_birth",
        "not a valid date",
    ),
    (
        "missing op",
        ENROL + '[[event]]\nat = 2026-12-01T10:00:00\npatient = "ana"\n',
        "event[2].op",
        "is required",
    ),
    (
        "unknown op",
        ENROL + '[[event]]\nat = 2026-12-01T10:00:00\nop = "dispence"\npatient = "ana"\n',
        "event[2].op",
        "'dispence' is not an operation",
    ),
    (
        "missing at",
        ENROL + '[[event]]\nop = "status"\npatient = "ana"\n',
        "event[2].at",
        "is required",
    ),
    (
        "date without time",
        ENROL + '[[event]]\nat = 2026-12-02\nop = "status"\npatient = "ana"\n',
        "event[2].at",
        "date and time",
    ),
    (
        "not chronological",
        ENROL + '[[event]]\nat = 2026-11-30T09:00:00\nop = "status"\npatient = "ana"\n',
        "event[2].at",
        "before event [1]",
    ),
    (
        "year out of range",
        '[[event]]\nat = 9999-12-31T23:59:59\nop = "enrol"\npatient = "ana"\n',
        "event[1].at",
        "between the years 1900 and 9000",
    ),
    (
        "date out of range",
        ENROL.replace('"ana"\n', '"ana"\nenrolled_on = 0001-01-01\n'),
        "event[1].enrolled_on",
        "between the years 1900 and 9000",
    ),
    (
        "clocks go forward",
        'zone = "America/New_York"\n[[event]]\nat = 2027-03-14T02:30:00\n'
        'op = "enrol"\npatient = "ana"\n',
        "event[1].at",
        "does not exist in America/New_York",
    ),
    (
        "missing patient",
        '[[event]]\nat = 2026-12-01T09:00:00\nop = "enrol"\n',
        "event[1].patient",
        "is required",
    ),
    (
        "unknown parameter",
        ENROL + '[[event]]\nat = 2026-12-01T10:00:00\nop = "test"\n'
        'patient = "ana"\nkind = "screening"\nsetting = "clinic"\nspecimen = 2026-12-01\n',
        "event[2].specimen",
        "not a parameter of test",
    ),
    (
        "missing parameter",
        ENROL + '[[event]]\nat = 2026-12-01T10:00:00\nop = "test"\n'
        'patient = "ana"\nsetting = "clinic"\n',
        "event[2].kind",
        "is required by test",
    ),
    (
        "bad date",
        ENROL + '[[event]]\nat = 2026-12-01T10:00:00\nop = "test"\npatient = "ana"\n'
        'kind = "screening"\nsetting = "clinic"\nspecimen_date = "2026-13-01"\n',
        "event[2].specimen_date",
        "'2026-13-01' is not a valid date",
    ),
    (
        "bad choice",
        ENROL + '[[event]]\nat = 2026-12-01T10:00:00\nop = "test"\npatient = "ana"\n'
        'kind = "screening"\nsetting = "garage"\n',
        "event[2].setting",
        "not one of lab, clinic, home",
    ),
    (
        "bad number",
        ENROL + '[[event]]\nat = 2026-12-01T10:00:00\nop = "prescribe"\n'
        'patient = "ana"\ndays_supply = "thirty"\n',
        "event[2].days_supply",
        "whole number",
    ),
    (
        "bad expectation",
        ENROL.replace('"ana"\n', '"ana"\nexpect = "MAYBE"\n'),
        "event[1].expect",
        "not one of ALLOW, REFUSE, CONFLICT, SKIPPED",
    ),
    (
        "unknown code",
        ENROL.replace('"ana"\n', '"ana"\nexpect_codes = ["LOCKOUT_20D"]\n'),
        "event[1].expect_codes",
        "'LOCKOUT_20D' is not a reason code",
    ),
    (
        "unknown actor",
        ENROL.replace('"ana"\n', '"ana"\nby = "dr_who"\n'),
        "event[1].by",
        "not a declared prescriber, pharmacist or patient",
    ),
    (
        "several prescribers",
        "[parties.prescribers]\na = {}\nb = {}\n" + ENROL,
        "event[1].by",
        "several prescribers are declared",
    ),
    (
        "nothing to dispense",
        ENROL + '[[event]]\nat = 2026-12-01T10:00:00\nop = "dispense"\npatient = "ana"\n',
        "event[2].prescription",
        "no earlier prescribe event",
    ),
    (
        "unknown label",
        ENROL + '[[event]]\nat = 2026-12-01T10:00:00\nop = "pickup"\n'
        'patient = "ana"\nauthorization = "first"\n',
        "event[2].authorization",
        "not the label of an earlier dispense event",
    ),
    (
        "confirm without methods",
        ENROL + '[[event]]\nat = 2026-12-01T10:00:00\nop = "confirm"\npatient = "ana"\n',
        "event[2].methods",
        "no earlier contraception event",
    ),
    # found by the engine while replaying: the database existed, and must be gone too
    (
        "engine: unknown category",
        ENROL + "[[event]]\nat = 2026-12-01T10:00:00\n"
        'op = "category"\npatient = "ana"\ncategory = "sometimes"\nreason = "NO_UTERUS"\n',
        "event[2].category",
        "must be one of can_get_pregnant, cannot_get_pregnant",
    ),
    (
        "engine: unknown method",
        ENROL + "[[event]]\nat = 2026-12-01T10:00:00\n"
        'op = "contraception"\npatient = "ana"\nmethods = { amulet = 2026-01-01 }\n',
        "event[2].methods",
        "'amulet' is not a method of",
    ),
    (
        "engine: date in the future",
        ENROL + '[[event]]\nat = 2026-12-01T10:00:00\nop = "end"\n'
        'patient = "ana"\nlast_dose_on = 2027-01-01\n',
        "event[2].last_dose_on",
        "in the future",
    ),
    (
        "engine: birth date in the future",
        "[parties.patients]\nana = { date_of_birth = 2030-01-01 }\n" + ENROL,
        "parties.patients.ana.date_of_birth",
        "in the future",
    ),
]


@pytest.mark.parametrize(("name", "text", "field", "problem"), BAD, ids=[b[0] for b in BAD])
def test_bad_timelines_name_the_event_and_field(
    tmp_path: Path, name: str, text: str, field: str, problem: str
) -> None:
    path = write(tmp_path, text)
    plain = simulate(path, expect=2)
    if name.startswith("engine:"):  # the events before it were printed as they ran
        assert "Traceback" not in plain.stdout
    else:  # found before anything ran
        assert plain.stdout == ""
    assert plain.stderr.startswith(f"error: {field}: ") and problem in plain.stderr
    assert "Traceback" not in plain.stderr
    as_json = simulate(path, "--json", expect=2)
    body = json.loads(as_json.stderr)
    assert (body["error"], body["field"]) == ("INVALID_INPUT", field)
    assert as_json.stdout == ""


def test_bad_command_line(tmp_path: Path) -> None:
    missing = simulate(tmp_path / "nowhere.toml", expect=2)
    assert missing.stderr.startswith("error: TIMELINE: ")
    assert "is neither a file nor a shipped example (one of: " in missing.stderr
    assert "ipledge-lockout" in missing.stderr
    path = SHIPPED / "ipledge-lockout.toml"
    unknown = simulate(path, "--ruleset", "ipledge/1999", expect=2)
    assert unknown.stderr.startswith("error: --ruleset: unknown ruleset 'ipledge/1999'")


# Any value TOML can hold, anywhere an event takes one: the reader answers InvalidInput or a
# timeline, never anything else.
TOML_VALUES = st.recursive(
    st.none()
    | st.text(max_size=30)
    | st.integers()
    | st.floats()
    | st.booleans()
    | st.dates()
    | st.datetimes()
    | st.datetimes(timezones=st.timezones())
    | st.times(),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=6,
)
KEYS = sorted(
    {"by", "expect", "expect_codes", "label"}
    | {p.name for op in OPERATIONS.values() for p in op.params}
)


@settings(max_examples=100, deadline=None)
@given(
    top=st.dictionaries(
        st.sampled_from(["title", "zone", "ruleset", "programme", "parties"]),
        TOML_VALUES,
        max_size=2,
    ),
    parties=st.dictionaries(
        st.sampled_from(["prescribers", "pharmacies", "pharmacists", "patients"]),
        st.dictionaries(
            st.sampled_from(["a", "b", "ana"]),
            st.dictionaries(
                st.sampled_from(["name", "zone", "pharmacy", "date_of_birth", "expires_on"]),
                TOML_VALUES,
                max_size=2,
            ),
            max_size=2,
        ),
        max_size=3,
    ),
    events=st.lists(
        st.fixed_dictionaries(
            {
                "at": st.datetimes() | TOML_VALUES,
                "op": st.sampled_from(sorted(OPERATIONS)) | TOML_VALUES,
                "patient": st.sampled_from(["ana", "bob"]) | TOML_VALUES,
            },
            optional=dict.fromkeys(KEYS, TOML_VALUES),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_any_values_are_read_or_refused_by_name(
    top: dict[str, Any], parties: dict[str, Any], events: list[dict[str, Any]]
) -> None:
    data = {"parties": parties, **{k: v for k, v in top.items() if v is not None}, "event": events}
    events[:] = [{k: v for k, v in e.items() if v is not None} for e in events]
    try:
        from_data(data)
    except InvalidInput as exc:
        refused = exc
    else:
        return
    assert refused.field and refused.problem


def test_uk_dispense_record_in_the_pharmacys_zone() -> None:
    results = by_index(replay(SHIPPED / "uk-isotretinoin.toml"))
    assert results[8]["codes"] == ["TEST_TOO_OLD_FOR_RX"]
    assert results[10]["codes"] == ["RX_EXPIRED"]  # already 12 March in Athens
    record = results[11]["authorization"]
    assert record["kind"] == "dispense_record"
    assert record["do_not_dispense_after"] == "2026-03-11T23:59:59.999999+00:00"
    assert {r["ruleset"] for r in results.values()} == {"uk-iso/2026-01"}


def test_eu_clinic_zone_dates_the_prescription_and_the_pharmacy_judges_validity() -> None:
    """Written at 00:30 in Athens on 3 March (still 2 March in Brussels and Lisbon): Day 1 is 3
    March, Day 7 9 March, which has ended in Athens at 01:30 on the 10th but not in Lisbon."""
    results = by_index(replay(SHIPPED / "eu-isotretinoin-clinic-zone.toml"))
    assert results[8]["codes"] == ["RX_EXPIRED"]
    assert "2026-03-03 to 2026-03-09" in results[8]["reasons"][0]["message"]
    assert results[9]["outcome"] == "ALLOW"
    assert results[10]["outcome"] == "ALLOW"
    assert {r["ruleset"] for r in results.values()} == {"eu-iso/2018"}


def test_lenalidomide_schedule_decisions() -> None:
    results = by_index(replay(SHIPPED / "lenalidomide-testing.toml"))
    assert results[3]["outcome"] == "ALLOW"  # the irregular-cycles schedule chosen
    missed = results[27]
    assert set(missed["codes"]) == {"SCHEDULED_TEST_MISSED", "NO_NEGATIVE_TEST_IN_WINDOW"}
    reason = next(r for r in missed["reasons"] if r["code"] == "SCHEDULED_TEST_MISSED")
    assert "2026-06-08" in reason["message"]  # day 56 of treatment, the latest due date
    assert results[29]["outcome"] == "ALLOW"
    assert {r["ruleset"] for r in results.values()} == {"lenalidomide/2023-03"}
