"""The CLI as clinic staff and pharmacists use it: loud pregnancy events, check exit codes,
instants in people's zones, typo help, completion and corrections."""

from __future__ import annotations

import json

from tests import test_cli_course
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
