"""The CLI as clinic staff and pharmacists use it: loud pregnancy events, check exit codes,
instants in people's zones, typo help, completion and corrections."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from compliance.cli.main import cli
from compliance.cli.timefmt import human_instant
from tests import test_cli_course
from tests.conftest import next_npi
from tests.test_cli import Shell
from tests.test_cli_course import at

clinic = test_cli_course.clinic  # the fixture: a clinic with a prescriber, pharmacist, patient

Clinic = tuple[Shell, dict[str, str]]


def _can_get_pregnant(sh: Shell, prs: str, pat: str) -> None:
    sh.run(*at("2026-12-01", "course", "enrol", pat), actor=prs)
    sh.run(*at("2026-12-01", "course", "category", pat, "can_get_pregnant", "TUBAL_LIGATION"),
           actor=prs)


def _test(pat: str, result: str) -> list[str]:
    return ["course", "test", pat, "--kind", "screening", "--specimen-date", "2026-12-02",
            "--setting", "clinic", "--result", result]


def test_a_positive_test_is_announced_with_the_required_actions(clinic: Clinic) -> None:
    sh, ids = clinic
    prs, pat = ids["prs"], ids["pat"]
    _can_get_pregnant(sh, prs, pat)
    negative = sh.json(*at("2026-12-02", *_test(pat, "negative")), actor=prs)
    assert negative["alert"] is None
    quiet = sh.run(*at("2026-12-02", *_test(pat, "negative")), actor=prs)
    assert "PREGNANCY_ACTIONS" not in quiet.stderr + quiet.stdout

    loud = sh.run(*at("2026-12-02", *_test(pat, "positive")), actor=prs)
    assert "POSITIVE PREGNANCY TEST" in loud.stderr and "PREGNANCY_ACTIONS" in loud.stderr
    for words in ("stop the drug", "report the pregnancy to the programme", "refer"):
        assert words in loud.stderr
    assert "course suspended" in loud.stdout

    sh.run(*at("2026-12-02", "course", "resume", pat, "--note", "false positive"), actor=prs)
    out = sh.json(*at("2026-12-03", "course", "pregnancy", pat), actor=prs)
    assert out["alert"]["code"] == "PREGNANCY_ACTIONS"
    assert out["alert"]["event"] == "pregnancy reported"
    assert out["alert"]["ruleset"] == "ipledge/2026-mod"
    assert [a.split()[0] for a in out["alert"]["actions"]] == ["stop", "report", "refer"]


def test_check_commands_exit_11_on_refuse_and_0_on_allow(clinic: Clinic) -> None:
    sh, ids = clinic
    prs, pat = ids["prs"], ids["pat"]
    sh.run(*at("2026-12-01", "course", "enrol", pat), actor=prs)
    sh.run(*at("2026-12-01", "course", "category", pat, "cannot_get_pregnant", "NO_UTERUS"),
           actor=prs)
    refused = sh.run(*at("2026-12-01", "course", "check", pat), actor=prs, expect=11)
    assert "REFUSE" in refused.stdout and "CONSENT_NOT_SIGNED" in refused.stdout
    as_json = sh.json(*at("2026-12-01", "course", "check", pat), actor=prs, expect=11)
    assert as_json["outcome"] == "REFUSE"
    sh.run(*at("2026-12-01", "course", "consent", pat, "PATIENT_INFORMATION_CONSENT"), actor=prs)
    sh.run(*at("2026-12-01", "course", "counselling", pat), actor=prs)
    assert sh.json(*at("2026-12-01", "course", "check", pat), actor=prs)["outcome"] == "ALLOW"
    rx = sh.json(*at("2026-12-01", "course", "prescribe", pat, "--days-supply", "30"),
                 actor=prs)["prescription"]["id"]
    assert sh.json(*at("2026-12-02", "dispense", "check", rx), actor=ids["rph"])["outcome"] == (
        "ALLOW")
    sh.run(*at("2026-12-02", "dispense", "authorize", rx), actor=ids["rph"])
    again = sh.run(*at("2026-12-02", "dispense", "check", rx), actor=ids["rph"], expect=11)
    assert "AUTHORIZATION_ALREADY_ISSUED" in again.stdout
    codes = {c["code"]: c["name"] for c in sh.json("exit-codes")}
    assert codes[11] == "CHECK_REFUSE" and list(codes).count(11) == 1
    assert json.loads(sh.run("exit-codes", "--json").stdout)[-1]["code"] == 11


def _authorized_under_ipledge_2023(sh: Shell, ids: dict[str, str]) -> str:
    """A course enrolled before 2026-mod took effect: its authorizations have a deadline."""
    prs, pat = ids["prs"], ids["pat"]
    sh.run(*at("2026-12-01", "course", "enrol", pat, "--enrolled-on", "2026-11-10"), actor=prs)
    sh.run(*at("2026-12-01", "course", "category", pat, "cannot_get_pregnant", "NO_UTERUS"),
           actor=prs)
    sh.run(*at("2026-12-01", "course", "consent", pat, "PATIENT_INFORMATION_CONSENT"), actor=prs)
    sh.run(*at("2026-12-01", "course", "counselling", pat), actor=prs)
    rx = sh.json(*at("2026-12-01", "course", "prescribe", pat, "--days-supply", "30"),
                 actor=prs)
    assert rx["course"]["ruleset"] == "ipledge/2023-03"
    return str(rx["prescription"]["id"])


def test_instants_are_shown_in_the_programme_zone_and_the_users_to_the_minute(
    clinic: Clinic,
) -> None:
    sh, ids = clinic
    rx = _authorized_under_ipledge_2023(sh, ids)
    la = {"TZ": "America/Los_Angeles"}
    shown = sh.run(*at("2026-12-02", "dispense", "authorize", rx), actor=ids["rph"], env=la)
    assert "do not dispense after 30 Dec 2026 23:59 EST (20:59 your time, PST)" in shown.stdout
    number = shown.stdout.split("authorization ")[1].split()[0]
    paris = sh.run(*at("2026-12-02", "--tz", "Europe/Paris", "status", ids["pat"]),
                   actor=ids["prs"], env=la)
    assert "30 Dec 2026 23:59 EST (31 Dec 2026 05:59 your time, CET)" in paris.stdout
    same = sh.run(*at("2026-12-02", "status", ids["pat"]), actor=ids["prs"],
                  env={"COMPLIANCE_TZ": "America/New_York"})
    assert "after 30 Dec 2026 23:59 EST)" in same.stdout and "your time" not in same.stdout
    as_json = sh.json(*at("2026-12-02", "status", ids["pat"]), actor=ids["prs"])
    assert as_json["open_authorization"]["do_not_dispense_after"] == (
        "2026-12-31T04:59:59.999999+00:00")
    picked = sh.run(*at("2026-12-03", "dispense", "record", number), actor=ids["rph"], env=la)
    assert "dispensed at 3 Dec 2026 07:00 PST" in picked.stdout
    log = sh.run("audit", "log", "--action", "dispense.record", env=la).stdout.splitlines()
    assert "\t3 Dec 2026 07:00 PST\t" in log[1]
    bad = sh.run("--tz", "Mars/Olympus", "whoami", expect=2)
    assert "--tz" in bad.stderr and "Mars/Olympus" in bad.stderr


def test_human_instant_names_both_zones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/Los_Angeles")
    instant = datetime(2027, 1, 9, 4, 59, 59, 999999, tzinfo=UTC)
    assert human_instant(instant, "America/New_York") == (
        "8 Jan 2027 23:59 EST (20:59 your time, PST)")
    assert human_instant(instant, None) == "9 Jan 2027 04:59 UTC (8 Jan 2027 20:59 your time, PST)"


def test_global_options_are_accepted_before_and_after_the_subcommand(clinic: Clinic) -> None:
    sh, ids = clinic
    admin, prs = ids["admin"], ids["prs"]
    before = sh.json("--as", prs, "whoami", actor="")
    after = sh.json("whoami", "--as", prs, actor="")
    assert before == after and before["id"] == prs
    early = sh.run("--json", "--as", prs, "prescriber", "show", prs, actor="")
    assert json.loads(early.stdout)["id"] == prs
    late = sh.run("prescriber", "show", prs, "--now", "2026-12-01T15:00:00Z", "--json",
                  f"--as={admin}", actor="")
    assert json.loads(late.stdout)["id"] == prs
    # the value of a command's own option is never taken for a global option
    note = sh.json(*at("2026-12-01", "course", "enrol", ids["pat"]), actor=prs)
    assert note["course"]["state"] == "enrolled"
    withdrawn = sh.json("course", "withdraw", ids["pat"], "--note", "--tz", "--now",
                        "2026-12-01T16:00:00Z", actor=prs)
    assert withdrawn["course"]["state"] == "withdrawn"
    (event,) = sh.json("audit", "log", "--action", "course.withdraw")
    assert event["payload"]["note"] == "--tz"


def test_a_bare_date_for_now_is_refused_with_what_to_type(clinic: Clinic) -> None:
    sh, ids = clinic
    refused = sh.run("--now", "2027-01-02", "due", actor=ids["prs"], expect=2)
    assert "--now" in refused.stderr and "2027-01-02T09:00:00-05:00" in refused.stderr
    body = json.loads(sh.run("--now", "2027-01-02", "due", "--json", actor=ids["prs"],
                             expect=2).stderr)
    assert body["field"] == "--now"


def test_a_bare_grant_expiry_is_the_end_of_that_day_in_the_grantors_zone(clinic: Clinic) -> None:
    sh, ids = clinic
    dsg = sh.json("designee", "register", "--name", "Dee")["id"]
    eastern = {"TZ": "America/New_York"}
    grant = sh.run("designee", "grant", dsg, "--prescriber", ids["prs"], "--expires",
                   "2027-01-31", "--json", actor=ids["prs"], env=eastern)
    assert json.loads(grant.stdout)["expires_at"] == "2027-02-01T04:59:59.999999+00:00"
    shown = sh.run("designee", "grants", dsg, actor=ids["prs"], env=eastern).stdout
    assert "31 Jan 2027 23:59 EST" in shown
    sh.run("designee", "revoke", dsg, "--prescriber", ids["prs"], actor=ids["prs"])
    tokyo = sh.json("--tz", "Asia/Tokyo", "designee", "grant", dsg, "--prescriber", ids["prs"],
                    "--expires", "2027-01-31", actor=ids["prs"])
    assert tokyo["expires_at"] == "2027-01-31T14:59:59.999999+00:00"


def test_audit_since_a_bare_date_starts_that_day_in_the_readers_zone(clinic: Clinic) -> None:
    sh, _ = clinic
    # init ran at 2026-12-01T15:00Z: 1 Dec in Honolulu, 2 Dec 00:00 in Tokyo; the rest later
    hawaii = sh.json("--tz", "Pacific/Honolulu", "audit", "log", "--until", "2026-12-02")
    assert [e["action"] for e in hawaii] == ["administrator.create"]
    assert sh.json("--tz", "Asia/Tokyo", "audit", "log", "--until", "2026-12-02") == []
    since = sh.json("--tz", "Asia/Tokyo", "audit", "log", "--since", "2026-12-02")
    assert since[-1]["id"] == hawaii[0]["id"]  # newest first: the earliest comes last


def _typo(short_id: str) -> str:
    """``short_id`` with one body symbol changed, so its check symbol no longer matches."""
    prefix, _, rest = short_id.partition("-")
    swapped = "7" if rest[2] != "7" else "8"
    return f"{prefix}-{rest[:2]}{swapped}{rest[3:]}"


def test_near_misses_are_valid_ids_one_typo_away() -> None:
    from compliance.domain.ids import Kind, check_mismatch, kind_of, near_misses, new_short_id

    real = new_short_id(Kind.PATIENT)
    typo = _typo(real)
    assert check_mismatch(typo) and not check_mismatch(real) and not check_mismatch("PAT-1")
    close = near_misses(typo)
    assert real in close and typo not in close
    assert all(kind_of(c) is Kind.PATIENT for c in close)


def test_a_mistyped_id_says_the_check_character_and_suggests_the_id_on_record(
    clinic: Clinic,
) -> None:
    sh, ids = clinic
    pat = ids["pat"]
    typed = _typo(pat)
    shown = sh.run("patient", "show", typed, actor=ids["prs"], expect=2).stderr
    assert f"{typed}: the check character does not match" in shown
    assert f"did you mean {pat}?" in shown
    enrol = sh.run(*at("2026-12-01", "course", "enrol", typed.lower()), actor=ids["prs"],
                   expect=2).stderr
    assert f"did you mean {pat}?" in enrol
    stranger = _typo(ids["prs"].replace("PRS", "PAT"))
    nobody = sh.run("patient", "show", stranger, actor=ids["prs"], expect=2).stderr
    assert "check character does not match" in nobody
    assert "no patient id one typo away is on record" in nobody
    assert "is not a patient id" in sh.run("patient", "show", "PAT-1", actor=ids["prs"],
                                           expect=2).stderr


def test_an_unknown_actor_is_audited_without_what_was_typed(clinic: Clinic) -> None:
    sh, ids = clinic
    typed = "ADM-'); DROP TABLE audit;--"
    sh.run("patient", "show", ids["pat"], actor=typed, expect=4)
    sh.run("patient", "show", ids["pat"], actor="ADM-00000000", expect=4)
    refused = sh.json("audit", "log", "--actor", "UNKNOWN_ACTOR")
    assert [(e["outcome"], e["reasons"]) for e in refused] == [
        ("refused", ["ACTOR_UNKNOWN"])] * 2
    trail = sh.run("audit", "export").stdout
    assert "DROP TABLE" not in trail and "ADM-00000000" not in trail


def test_help_lists_the_valid_values_read_from_the_rulesets(clinic: Clinic) -> None:
    from compliance.programs.loader import all_rulesets

    sh, _ = clinic
    rulesets = list(all_rulesets().values())
    category = sh.run("course", "category", "--help").stdout
    assert "Valid CATEGORY" in category and "cannot_get_pregnant" in category
    assert "Valid REASON" in category and "NO_UTERUS" in category
    consent = sh.run("course", "consent", "--help").stdout
    for form in {f for r in rulesets for f in r.consent_catalogue}:
        assert form in consent.replace("\n", " ")
    assert "iud" in sh.run("course", "contraception", "--help").stdout
    assert "irregular_cycles" in sh.run("course", "test-schedule", "--help").stdout
    assert "patient.register" in sh.run("designee", "grant", "--help").stdout


def test_shell_completion_offers_ruleset_values(clinic: Clinic) -> None:
    sh, _ = clinic

    def complete(*words: str) -> list[str]:
        env = {"_COMPLIANCE_COMPLETE": "bash_complete", "COMP_WORDS": " ".join(words),
               "COMP_CWORD": str(len(words) - 1)}
        result = sh.runner.invoke(cli, [], env=env, prog_name="compliance")
        return [line.split(",", 1)[1] for line in result.stdout.splitlines()]

    assert complete("compliance", "course", "consent", "PAT-1", "PATIENT_I") == [
        "PATIENT_INFORMATION_CONSENT"]
    assert complete("compliance", "course", "category", "PAT-1", "cann") == [
        "cannot_get_pregnant"]
    assert complete("compliance", "course", "contraception", "PAT-1", "--method", "iu") == [
        "iud="]
    assert "dispense" in complete("compliance", "disp")


def test_errors_name_the_options_as_typed(clinic: Clinic) -> None:
    sh, _ = clinic
    npi = sh.run("prescriber", "register", "--name", "Dr X", "--npi", "12345", "--json",
                 expect=2)
    assert json.loads(npi.stderr)["field"] == "--npi"
    ncpdp = sh.run("pharmacy", "register", "--name", "P", "--ncpdp", "12", "--time-zone", "UTC",
                   expect=2)
    assert ncpdp.stderr.startswith("error: --ncpdp: ")
    dob = sh.run("patient", "register", "--name", "Ana", "--dob", "2027-02-30", expect=2)
    assert dob.stderr.startswith("error: --dob: ") and "date_of_birth" not in dob.stderr
    ext = sh.run("patient", "register", "--name", "Ana", "--dob", "2000-01-01",
                 "--external-id", "MRN:a b", "--json", expect=2)
    assert json.loads(ext.stderr)["field"] == "--external-id MRN"


def test_one_external_id_syntax_everywhere(clinic: Clinic) -> None:
    sh, ids = clinic
    new = sh.run("patient", "register", "--name", "Bo", "--dob", "2000-01-01",
                 "--external-id", "MRN:77")
    assert "deprecated" not in new.stderr
    old = sh.run("patient", "register", "--name", "Cy", "--dob", "2000-01-01",
                 "--external-id", "MRN=78")
    assert "write MRN:78" in old.stderr and "deprecated" in old.stderr
    assert sh.json("patient", "show", "MRN:78")["name"] == "Cy"
    added = sh.run("patient", "add-id", ids["pat"], "hospital:H-1")
    assert added.stderr == ""
    two_words = sh.run("patient", "add-id", ids["pat"], "clinic", "C-2")
    assert "write clinic:C-2" in two_words.stderr
    shown = sh.json("patient", "show", "CLINIC:C-2")
    assert shown["external_ids"] == {"CLINIC": "C-2", "HOSPITAL": "H-1"}
    bad = sh.run("patient", "add-id", ids["pat"], "hospital", expect=2)
    assert "SYSTEM:VALUE" in bad.stderr and "MRN:12345" in bad.stderr


def test_no_color_removes_every_style_and_tables_keep_ids_whole_at_80_columns(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    from compliance.cli import output

    monkeypatch.setattr(output, "_terminal", lambda: True)
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich styles even though pytest captures stdout
    monkeypatch.delenv("NO_COLOR", raising=False)
    output.show_record({"id": "PAT-7K2M9QXR"}, False, title="Patient")
    assert "\x1b[1m" in capsys.readouterr().out  # bold keys without NO_COLOR

    monkeypatch.setenv("NO_COLOR", "1")
    ids = ["PAT-7K2M9QXR", "PRS-0ABCDEF5", "8200-4999-8817-3927-0424-4"]
    rows = [{"patient": ids[0], "prescriber": ids[1], "number": ids[2],
             "message": "the next required pregnancy test falls due within the look-ahead " * 2,
             "at": "2026-12-03T15:00:00.000000Z"}]
    output.show_rows(rows, list(rows[0]), False, title="Due")
    output.show_record({"id": ids[0], "name": "Ana"}, False, title="Patient")
    shown = capsys.readouterr().out
    assert "\x1b[" not in shown
    assert all(len(line) <= 80 for line in shown.splitlines())
    for one in ids:
        assert one in shown, (one, shown)


def test_course_list_names_and_filters_for_administrators(clinic: Clinic) -> None:
    sh, ids = clinic
    prs, pat = ids["prs"], ids["pat"]
    assert sh.json("course", "list") == []
    empty = sh.run("course", "list")
    assert "no course matches" in empty.stderr
    other = sh.json("patient", "register", "--name", "Bea", "--dob", "1999-02-02")["patient"]["id"]
    sh.run(*at("2026-12-01", "course", "enrol", pat), actor=prs)
    sh.run(*at("2026-12-01", "course", "enrol", other, "--enrolled-on", "2026-11-10"), actor=prs)
    sh.run(*at("2026-12-01", "course", "category", pat, "cannot_get_pregnant", "NO_UTERUS"),
           actor=prs)
    listed = sh.json("course", "list")
    assert [(c["patient"], c["patient_name"], c["state"], c["ruleset"]) for c in listed] == [
        (pat, "Ana", "pre_treatment", "ipledge/2026-mod"),
        (other, "Bea", "enrolled", "ipledge/2023-03")]
    assert {c["prescriber_name"] for c in listed} == {"Dr P"}
    assert [c["patient"] for c in sh.json("course", "list", "--state", "enrolled")] == [other]
    assert [c["patient"] for c in sh.json("course", "list", "--programme",
                                          "ipledge/2023-03")] == [other]
    assert len(sh.json("course", "list", "--programme", "ipledge")) == 2
    assert sh.json("course", "list", "--programme", "eu-iso") == []
    assert len(sh.json("course", "list", "--prescriber", prs)) == 2
    bad = sh.run("course", "list", "--programme", "nope", "--json", expect=2)
    assert json.loads(bad.stderr)["field"] == "--programme"
    plain = sh.run("course", "list").stdout.splitlines()
    assert plain[0].split("\t")[:2] == ["patient", "patient_name"] and len(plain) == 3
    sh.run("course", "list", actor=pat, expect=4)  # a patient has no overview


def test_due_shows_names_and_says_when_nothing_is_due(clinic: Clinic) -> None:
    sh, ids = clinic
    prs, pat = ids["prs"], ids["pat"]
    quiet = sh.run(*at("2026-12-01", "due"), actor=prs)
    assert "nothing due within 7 days" in quiet.stderr
    _can_get_pregnant(sh, prs, pat)
    sh.run(*at("2026-12-02", *_test(pat, "positive")), actor=prs)
    lines = sh.run(*at("2026-12-02", "due"), actor=prs).stdout.splitlines()
    assert lines[0].split("\t")[:3] == ["due", "patient", "name"]
    assert lines[1].split("\t")[1:4] == [pat, "Ana", "PREGNANCY_ACTIONS"]


def test_audit_log_is_newest_first_and_says_when_more_rows_exist(clinic: Clinic) -> None:
    sh, _ = clinic
    everything = sh.json("audit", "log", "--oldest-first")
    assert len(everything) > 3
    newest = sh.json("audit", "log")
    assert [e["id"] for e in newest] == [e["id"] for e in reversed(everything)]
    two = sh.run("audit", "log", "--limit", "2")
    assert len(two.stdout.splitlines()) == 3
    assert f"showing the newest 2 of {len(everything)} matching events" in two.stderr
    assert [e["id"] for e in sh.json("audit", "log", "--limit", "2")] == [
        everything[-1]["id"], everything[-2]["id"]]
    early = sh.run("audit", "log", "--limit", "2", "--oldest-first")
    assert "showing the earliest 2" in early.stderr
    assert sh.run("audit", "log", "--limit", str(len(everything))).stderr == ""
    assert "no audit events match" in sh.run("audit", "log", "--action", "nope.nope").stderr


@pytest.mark.postgres
def test_overview_typos_and_newest_first_on_postgresql(pg_url: str) -> None:
    sh = Shell(pg_url)
    admin = sh.json("--now", "2026-12-01T15:00:00Z", "init", "--admin-name", "Ada",
                    "--training")["id"]
    sh.actor = admin
    prs = sh.json("prescriber", "register", "--name", "Dr P", "--npi", next_npi())["id"]
    sh.run("prescriber", "activate", prs)
    pat = sh.json("patient", "register", "--name", "Ana", "--dob", "2001-01-01")["patient"]["id"]
    sh.run(*at("2026-12-01", "course", "enrol", pat), actor=prs)
    listed = sh.json("course", "list", "--programme", "ipledge", "--state", "enrolled")
    assert [(c["patient"], c["patient_name"], c["prescriber_name"]) for c in listed] == [
        (pat, "Ana", "Dr P")]
    assert f"did you mean {pat}?" in sh.run("patient", "show", _typo(pat), expect=2).stderr
    events = sh.json("audit", "log", "--limit", "2")
    assert events[0]["id"] > events[1]["id"]
    assert "showing the newest 2" in sh.run("audit", "log", "--limit", "2").stderr


def test_a_patients_name_and_birth_date_are_corrected_as_audited_changes(clinic: Clinic) -> None:
    sh, ids = clinic
    pat = ids["pat"]
    fixed = sh.json("patient", "correct", pat, "--name", "Anna", "--dob", "2001-01-10",
                    "--reason", "misspelt at registration")
    assert (fixed["name"], fixed["date_of_birth"]) == ("Anna", "2001-01-10")
    assert sh.json("patient", "show", pat)["name"] == "Anna"
    assert [p["id"] for p in sh.json("patient", "find", "--name", "anna")] == [pat]
    (event,) = sh.json("audit", "log", "--action", "patient.correct")
    assert event["subjects"] == [pat] and event["actor"] == ids["admin"]
    assert event["payload"] == {
        "changes": {"name": {"from": "Ana", "to": "Anna"},
                    "date_of_birth": {"from": "2001-01-01", "to": "2001-01-10"}},
        "reason": "misspelt at registration"}
    registered = sh.json("audit", "log", "--action", "patient.register", "--subject", pat)
    assert registered[0]["payload"]["name"] == "Ana"  # history is not rewritten
    same = sh.run("patient", "correct", pat, "--name", "Anna", "--reason", "again", expect=6)
    assert "already" in same.stderr
    nothing = sh.run("patient", "correct", pat, "--reason", "x", "--json", expect=2)
    assert json.loads(nothing.stderr)["field"] == "--name"
    bad = sh.run("patient", "correct", pat, "--dob", "2001-02-30", "--reason", "x", expect=2)
    assert bad.stderr.startswith("error: --dob: ")
    sh.run("patient", "correct", pat, "--name", "X", "--reason", "x", actor=ids["rph"], expect=4)
    assert sh.json("audit", "verify")["ok"] is True


def test_a_grants_scope_and_expiry_are_corrected_as_audited_changes(clinic: Clinic) -> None:
    sh, ids = clinic
    prs = ids["prs"]
    dsg = sh.json("designee", "register", "--name", "Dee")["id"]
    sh.run("designee", "grant", dsg, "--prescriber", prs, "--expires", "2027-01-31",
           actor=prs)
    amended = sh.json("designee", "amend", dsg, "--prescriber", prs, "--scope",
                      "patient.register", "--expires", "2027-02-28", "--reason", "typo",
                      actor=prs)
    assert amended["scopes"] == ["patient.register"]
    assert amended["expires_at"] == "2027-02-28T23:59:59.999999+00:00"
    (event,) = sh.json("audit", "log", "--action", "grant.amend")
    assert event["subjects"] == [dsg, prs]
    assert event["payload"]["changes"]["expires_at"] == {
        "from": "2027-01-31T23:59:59.999999+00:00", "to": "2027-02-28T23:59:59.999999+00:00"}
    assert "patient.register" in event["payload"]["changes"]["scopes"]["to"]
    open_ended = sh.json("designee", "amend", dsg, "--prescriber", prs, "--no-expiry",
                         "--reason", "no end", actor=prs)
    assert open_ended["expires_at"] is None and open_ended["active"] is True
    both = sh.run("designee", "amend", dsg, "--prescriber", prs, "--no-expiry", "--expires",
                  "2027-03-01", "--reason", "x", "--json", actor=prs, expect=2)
    assert json.loads(both.stderr)["field"] == "--expires"
    other = sh.json("prescriber", "register", "--name", "Dr O", "--npi", next_npi())["id"]
    sh.run("prescriber", "activate", other)
    missing = sh.run("designee", "amend", dsg, "--prescriber", other, "--no-expiry",
                     "--reason", "x", expect=5)
    assert "live grant" in missing.stderr
    sh.run("designee", "amend", dsg, "--prescriber", prs, "--no-expiry", "--reason", "x",
           actor=other, expect=4)  # another prescriber's grant is out of scope


def test_simulate_errors_keep_the_timeline_files_keys(tmp_path: Path) -> None:
    timeline = tmp_path / "t.toml"
    timeline.write_text('ruleset = "ipledge/1999"\n[[event]]\nat = 2026-12-01T09:00:00\n'
                        'op = "enrol"\npatient = "ana"\n')
    result = CliRunner().invoke(cli, ["simulate", str(timeline), "--json"])
    assert result.exit_code == 2 and json.loads(result.stderr)["field"] == "ruleset"
