"""Ruleset files: the packaged ones load with the facts of rules.md section 1, the version in force
is chosen by date, and a malformed file is rejected naming the file, the dotted key and the
problem (no half-applied rule change). Pure: no database."""

from __future__ import annotations

import copy
import json
import re
import tomllib
from datetime import date
from importlib import resources
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compliance.errors import InvalidInput
from compliance.programs import loader
from compliance.programs.loader import (
    RulesetError,
    all_rulesets,
    default_schedule,
    get,
    in_force,
    parse,
)
from compliance.programs.model import Anchor, Cadence, ContraceptionOption, Setting, Tier
from compliance.programs.model import TestKind as Kind

LEGACY = "ipledge/2023-03"
MOD = "ipledge/2026-mod"
FILE = "mutant.toml"


def packaged(name: str) -> str:
    return (resources.files("compliance.programs") / "rulesets" / name).read_text(encoding="utf-8")


MOD_TEXT = packaged("ipledge-2026-mod.toml")
LEGACY_TEXT = packaged("ipledge-2023-03.toml")


def mutate(old: str, new: str, text: str = MOD_TEXT) -> str:
    """``text`` with the one occurrence of ``old`` replaced (fails loudly if not exactly one)."""
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


def rejected(text: str) -> RulesetError:
    with pytest.raises(RulesetError) as info:
        parse(FILE, text)
    error = info.value
    assert isinstance(error, InvalidInput)
    assert error.file == FILE
    assert str(error).startswith(f"{FILE}: {error.key}: ")
    return error


# --- a small TOML writer, so that parsed data can be mutated structurally --------------------

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(name: str) -> str:
    return name if _BARE.match(name) else json.dumps(name)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(value)


def dump(data: dict[str, Any], prefix: tuple[str, ...] = ()) -> str:
    scalars = [f"{_key(k)} = {_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    lines = [f"[{'.'.join(_key(p) for p in prefix)}]"] if prefix else []
    lines += scalars
    out = "\n".join(lines) + "\n"
    for k, v in data.items():
        if isinstance(v, dict):
            out += "\n" + dump(v, (*prefix, k))
    return out


def key_paths(data: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for k, v in data.items():
        paths.append((*prefix, k))
        if isinstance(v, dict):
            paths += key_paths(v, (*prefix, k))
    return paths


def without(data: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    copied = copy.deepcopy(data)
    table = copied
    for part in path[:-1]:
        table = table[part]
    del table[path[-1]]
    return copied


MOD_DATA = tomllib.loads(MOD_TEXT)


# --- the packaged rulesets ---------------------------------------------------------------------


def test_both_packaged_rulesets_load() -> None:
    rulesets = all_rulesets()
    ipledge = {rid for rid, r in rulesets.items() if r.programme == "ipledge"}
    assert ipledge == {LEGACY, MOD}
    for rid, ruleset in rulesets.items():
        assert ruleset.id == rid
        assert rid.startswith(ruleset.programme + "/")
    assert parse("ipledge-2026-mod.toml", MOD_TEXT) == get(MOD)
    assert parse("ipledge-2023-03.toml", LEGACY_TEXT) == get(LEGACY)


def test_unknown_ruleset_id() -> None:
    with pytest.raises(InvalidInput, match="ipledge/2021-12"):
        get("ipledge/2021-12")


def test_packaged_facts_legacy() -> None:
    r = get(LEGACY)
    assert r.today_zone == "America/New_York"
    assert r.lockout_days_after_missed_first_window == 19
    pcgp, pcngp = r.categories["can_get_pregnant"], r.categories["cannot_get_pregnant"]
    assert pcgp.window is not None
    assert (pcgp.window.days, pcgp.window.anchor) == (7, Anchor.SPECIMEN_DATE)
    assert pcngp.window is not None
    assert (pcngp.window.days, pcngp.window.anchor) == (30, Anchor.OFFICE_VISIT)
    assert pcngp.counselling is Cadence.MONTHLY
    assert "TUBAL_LIGATION" not in pcngp.reasons
    assert not pcngp.pregnancy_testing
    assert not pcngp.contraception
    kinds = r.testing.kinds
    assert kinds[Kind.CONFIRMATION].settings == (Setting.LAB,)
    assert kinds[Kind.CONFIRMATION].clia_required
    assert kinds[Kind.MONTHLY].clia_required
    assert not kinds[Kind.SCREENING].clia_required
    assert Setting.CLINIC in kinds[Kind.SCREENING].settings
    assert not any(k.home_with_prescriber_opt_in for k in kinds.values())
    assert not r.authorization.reverse_unpicked


def test_packaged_facts_2026_mod() -> None:
    r = get(MOD)
    assert r.today_zone == "America/New_York"
    assert r.lockout_days_after_missed_first_window == 0
    pcngp = r.categories["cannot_get_pregnant"]
    assert pcngp.window is None
    assert pcngp.counselling is Cadence.ENROLMENT
    assert "TUBAL_LIGATION" not in pcngp.reasons
    kinds = r.testing.kinds
    for kind in (Kind.SCREENING, Kind.CONFIRMATION):
        assert set(kinds[kind].settings) == {Setting.LAB, Setting.CLINIC}
        assert not kinds[kind].clia_required
        assert not kinds[kind].home_with_prescriber_opt_in
    for kind in (Kind.MONTHLY, Kind.END_OF_TREATMENT, Kind.POST_TREATMENT):
        assert kinds[kind].home_with_prescriber_opt_in
    assert r.authorization.reverse_unpicked


@pytest.mark.parametrize("ruleset_id", [LEGACY, MOD])
def test_packaged_facts_common(ruleset_id: str) -> None:
    r = get(ruleset_id)
    pcgp = r.categories["can_get_pregnant"]
    assert pcgp.counselling is Cadence.MONTHLY
    assert pcgp.comprehension is Cadence.MONTHLY
    assert pcgp.contraception
    assert pcgp.pregnancy_testing
    assert "TUBAL_LIGATION" in pcgp.reasons
    assert set(pcgp.consent_forms) == {"PATIENT_INFORMATION_CONSENT", "BIRTH_DEFECTS_CONSENT"}
    c = r.contraception
    assert c.options == (ContraceptionOption(methods=2, primary=1),)
    assert c.waivers == ("abstinence",)
    assert c.lead_in_days == 30
    assert c.tier("progestin_only_pill") is Tier.NOT_ACCEPTABLE
    assert c.tier("male_condom") is Tier.SECONDARY
    assert c.tier("tubal_ligation") is Tier.PRIMARY
    assert c.tier("combined_oral_contraceptive") is Tier.PRIMARY
    assert r.testing.min_sensitivity_miu_ml == 25
    assert (r.testing.pretreatment_count, r.testing.pretreatment_min_spacing_days) == (2, 19)
    assert r.testing.post_treatment_days_after_last_dose == 30
    assert (r.prescription.max_days_supply, r.prescription.refills_allowed) == (30, False)


# --- which version is in force -----------------------------------------------------------------


def test_default_schedule() -> None:
    schedule = default_schedule()
    assert schedule[LEGACY] == date(2023, 3, 1)
    assert schedule[MOD] == date(2026, 11, 15)


@pytest.mark.parametrize(
    ("enrolled_on", "expected"),
    [
        (date(2023, 3, 1), LEGACY),
        (date(2026, 8, 8), LEGACY),
        (date(2026, 11, 14), LEGACY),
        (date(2026, 11, 15), MOD),
        (date(2026, 11, 16), MOD),
        (date(2031, 1, 1), MOD),
    ],
)
def test_in_force_with_the_default_schedule(enrolled_on: date, expected: str) -> None:
    assert in_force("ipledge", enrolled_on, default_schedule()).id == expected


@pytest.mark.parametrize(
    ("enrolled_on", "expected"),
    [(date(2026, 8, 7), LEGACY), (date(2026, 8, 8), MOD), (date(2026, 11, 15), MOD)],
)
def test_in_force_with_an_overridden_date(enrolled_on: date, expected: str) -> None:
    # listed newest first: the choice must not depend on the order of the mapping
    schedule = {MOD: date(2026, 8, 8), LEGACY: date(2023, 3, 1)}
    assert in_force("ipledge", enrolled_on, schedule).id == expected


def test_in_force_before_any_version() -> None:
    with pytest.raises(InvalidInput, match="2023-02-28"):
        in_force("ipledge", date(2023, 2, 28), default_schedule())


def test_in_force_matches_the_whole_programme_name() -> None:
    with pytest.raises(InvalidInput):
        in_force("ipledg", date(2027, 1, 1), default_schedule())
    with pytest.raises(InvalidInput):
        in_force("eu-iso", date(2027, 1, 1), {LEGACY: date(2023, 3, 1)})


# --- malformed files ---------------------------------------------------------------------------


def test_round_trip_of_the_test_writer() -> None:
    # the structural mutations below rely on dump() writing an equivalent file
    assert parse(FILE, dump(MOD_DATA)) == parse(FILE, MOD_TEXT)


@pytest.mark.parametrize(
    ("old", "new", "key", "problem"),
    [
        pytest.param(
            "max_days_supply = 30\n", "", "prescription.max_days_supply", "is missing", id="missing"
        ),
        pytest.param(
            'title = "iPLEDGE REMS as modified 9 Feb 2026"\n', "", "title", "is missing", id="title"
        ),
        pytest.param(
            "max_days_supply = 30",
            'max_days_supply = "30"',
            "prescription.max_days_supply",
            "must be a whole number",
            id="string-for-int",
        ),
        pytest.param(
            "lead_in_days = 30",
            "lead_in_days = true",
            "contraception.lead_in_days",
            "must be a whole number",
            id="bool-for-int",
        ),
        pytest.param(
            "refills_allowed = false",
            'refills_allowed = "no"',
            "prescription.refills_allowed",
            "must be true or false",
            id="string-for-bool",
        ),
        pytest.param(
            "min_sensitivity_miu_ml = 25",
            'min_sensitivity_miu_ml = "25"',
            "pregnancy_tests.min_sensitivity_miu_ml",
            "must be a number",
            id="string-for-number",
        ),
        pytest.param(
            "min_sensitivity_miu_ml = 25",
            "min_sensitivity_miu_ml = 0",
            "pregnancy_tests.min_sensitivity_miu_ml",
            "must be between",
            id="out-of-range",
        ),
        pytest.param(
            "max_days_supply = 30",
            "max_days_supply = 30\nrefils_allowed = false",
            "prescription.refils_allowed",
            "is not a known key (misspelt?)",
            id="unknown-key",
        ),
        pytest.param(
            'counselling = "enrolment"',
            'counseling = "enrolment"',
            "categories.cannot_get_pregnant.counselling",
            "is missing",
            id="misspelt-key",
        ),
        pytest.param(
            'counselling = "enrolment"',
            'counselling = "enrolment"\ncounseling = "enrolment"',
            "categories.cannot_get_pregnant.counseling",
            "is not a known key (misspelt?)",
            id="misspelt-extra-key",
        ),
        pytest.param(
            "lockout_days_after_missed_first_window = 0",
            "lockout_days_after_missed_first_window = 0\nlockout_days = 19",
            "lockout_days",
            "is not a known key (misspelt?)",
            id="unknown-top-level-key",
        ),
        pytest.param(
            'iud = "primary"',
            'iud = "primry"',
            "contraception.methods.iud",
            "must be one of primary, secondary, not_acceptable, not 'primry'",
            id="unknown-tier",
        ),
        pytest.param(
            'window = { days = 7, anchor = "specimen_date" }',
            'window = { days = 7, anchor = "visit_date" }',
            "categories.can_get_pregnant.window.anchor",
            "must be one of specimen_date, office_visit, prescription_date",
            id="unknown-anchor",
        ),
        pytest.param(
            'counselling = "enrolment"',
            'counselling = "yearly"',
            "categories.cannot_get_pregnant.counselling",
            "must be one of monthly, enrolment, none",
            id="unknown-cadence",
        ),
        pytest.param(
            'reasons = ["REPRODUCTIVE_POTENTIAL", "TUBAL_LIGATION"]',
            'reasons = ["REPRODUCTIVE_POTENTIAL", "TUBAL_LIGATON"]',
            "categories.can_get_pregnant.reasons",
            "'TUBAL_LIGATON' is not in the [reasons] catalogue",
            id="reason-not-in-catalogue",
        ),
        pytest.param(
            'consent_forms = ["PATIENT_INFORMATION_CONSENT"]',
            'consent_forms = ["PATIENT_INFO_CONSENT"]',
            "categories.cannot_get_pregnant.consent_forms",
            "'PATIENT_INFO_CONSENT' is not in the [consent_forms] catalogue",
            id="form-not-in-catalogue",
        ),
        pytest.param(
            'reasons = ["REPRODUCTIVE_POTENTIAL", "TUBAL_LIGATION"]',
            'reasons = ["REPRODUCTIVE_POTENTIAL", "REPRODUCTIVE_POTENTIAL"]',
            "categories.can_get_pregnant.reasons",
            "lists a name twice",
            id="duplicate-reason",
        ),
        pytest.param(
            'today_zone = "America/New_York"',
            'today_zone = "America/New_Yrok"',
            "today_zone",
            "'America/New_Yrok' is not an IANA zone",
            id="bad-zone",
        ),
        pytest.param(
            'today_zone = "America/New_York"',
            'today_zone = "../../etc/passwd"',
            "today_zone",
            "is not an IANA zone",
            id="path-as-zone",
        ),
        pytest.param(
            'clinic_zone = "America/New_York"',
            'clinic_zone = "clinic"',
            "clinic_zone",
            "'clinic' is not an IANA zone or 'prescriber'",
            id="bad-clinic-zone",
        ),
        pytest.param(
            'clinic_zone = "America/New_York"',
            'clinic_zone = "pharmacy"',
            "clinic_zone",
            "'pharmacy' is not an IANA zone or 'prescriber'",
            id="pharmacy-as-clinic-zone",
        ),
        pytest.param(
            'id = "ipledge/2026-mod"',
            'id = "eu-iso/2026-mod"',
            "id",
            "must be 'ipledge/<version>'",
            id="id-not-of-programme",
        ),
        pytest.param(
            "primary_required = 1",
            "primary_required = 3",
            "contraception.primary_required",
            "cannot exceed methods_required",
            id="primary-exceeds-methods",
        ),
        pytest.param(
            'window = { days = 7, anchor = "specimen_date" }\n',
            "",
            "categories.can_get_pregnant.window",
            "testing needs a window from the specimen or prescription date",
            id="testing-without-window",
        ),
        pytest.param(
            'window = { days = 7, anchor = "specimen_date" }',
            'window = { days = 7, anchor = "office_visit" }',
            "categories.can_get_pregnant.window",
            "testing needs a window from the specimen or prescription date",
            id="testing-with-visit-window",
        ),
        pytest.param(
            "pregnancy_testing = false",
            "pregnancy_testing = true",
            "categories.cannot_get_pregnant.window",
            "testing needs a window from the specimen or prescription date",
            id="pcngp-testing-without-window",
        ),
        pytest.param(
            'window = { days = 7, anchor = "specimen_date" }',
            'window = { days = 0, anchor = "specimen_date" }',
            "categories.can_get_pregnant.window.days",
            "must be between 1 and 366",
            id="empty-window",
        ),
        pytest.param(
            'window = { days = 7, anchor = "specimen_date" }',
            'window = { days = 7, anchor = "specimen_date", day = 1 }',
            "categories.can_get_pregnant.window.day",
            "is not a known key",
            id="unknown-window-key",
        ),
        pytest.param(
            '[pregnancy_tests.kinds.monthly]\nsettings = ["lab", "clinic"]',
            '[pregnancy_tests.kinds.monthly]\nsettings = ["lab", "home"]',
            "pregnancy_tests.kinds.monthly.settings",
            "'home' is not lab or clinic",
            id="home-in-settings",
        ),
        pytest.param(
            "[pregnancy_tests.kinds.post_treatment]",
            "[pregnancy_tests.kinds.post_treatmnt]",
            "pregnancy_tests.kinds.post_treatment",
            "is missing",
            id="misspelt-test-kind",
        ),
        pytest.param(
            "[categories.cannot_get_pregnant]",
            "[categories.cannot_get_pregnat]",
            "categories.cannot_get_pregnant",
            "is missing",
            id="missing-required-category",
        ),
        pytest.param(
            'window = { days = 7, anchor = "specimen_date" }\n\n[categories.cannot_get_pregnant]',
            'window = { days = 7, anchor = "specimen_date" }\ncontraception_lead_in_days = -1\n'
            "\n[categories.cannot_get_pregnant]",
            "categories.can_get_pregnant.contraception_lead_in_days",
            "must be between 0 and 366, not -1",
            id="negative-category-lead-in",
        ),
    ],
)
def test_malformed_file_is_rejected(old: str, new: str, key: str, problem: str) -> None:
    error = rejected(mutate(old, new))
    assert error.key == key
    assert problem in str(error)


def test_table_given_as_text() -> None:
    text = mutate("[prescription]\nmax_days_supply = 30\nrefills_allowed = false\n", "")
    text = mutate('status_judged_at = "request"\n', "", text)
    text = mutate(
        'programme = "ipledge"\n', 'programme = "ipledge"\nprescription = "30 days"\n', text
    )
    error = rejected(text)
    assert error.key == "prescription"
    assert "must be a table" in str(error)


@pytest.mark.parametrize(
    "broken",
    [
        mutate('title = "iPLEDGE REMS as modified 9 Feb 2026"', 'title = "iPLEDGE REMS'),
        mutate("[prescription]", "[prescription"),
        mutate("max_days_supply = 30", "max_days_supply = 30\nmax_days_supply = 31"),
        "\x00",
    ],
    ids=["unterminated-string", "unterminated-table", "duplicate-key", "nul"],
)
def test_invalid_toml_is_rejected(broken: str) -> None:
    error = rejected(broken)
    assert error.key == "(file)"
    assert "is not valid TOML" in str(error)


def test_no_primary_method_in_catalogue() -> None:
    data = copy.deepcopy(MOD_DATA)
    data["contraception"]["methods"] = {
        k: ("secondary" if v == "primary" else v)
        for k, v in data["contraception"]["methods"].items()
    }
    error = rejected(dump(data))
    assert error.key == "contraception.methods"
    assert "no method is primary" in str(error)


def test_defined_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader, "_files", lambda: {"a.toml": MOD_TEXT, "b.toml": MOD_TEXT})
    all_rulesets.cache_clear()
    try:
        with pytest.raises(RulesetError, match=r"b\.toml: id: 'ipledge/2026-mod' is defined twice"):
            all_rulesets()
    finally:
        monkeypatch.undo()
        all_rulesets.cache_clear()
    assert set(all_rulesets()) >= {LEGACY, MOD}


# Deleting any key must be caught and named. Exceptions: `notes` is optional, and a method of
# the open contraception catalogue may be dropped. A catalogue entry (reason, consent form) that a
# category refers to is reported at the referring key, naming the missing entry.
CATALOGUES = {("reasons",), ("consent_forms",)}
DELETABLE = [
    path
    for path in key_paths(MOD_DATA)
    if path != ("notes",) and (path[:2] != ("contraception", "methods") or len(path) == 2)
]


def test_deletable_paths_cover_every_level() -> None:
    depths = {len(p) for p in DELETABLE}
    assert depths == {1, 2, 3, 4}
    assert ("categories", "can_get_pregnant", "window", "anchor") in DELETABLE
    assert ("contraception", "methods") in DELETABLE
    assert ("contraception", "methods", "iud") not in DELETABLE


def assert_deletion_named(path: tuple[str, ...]) -> None:
    error = rejected(dump(without(MOD_DATA, path)))
    if path[:-1] in CATALOGUES:
        assert error.key.startswith("categories.")
        assert error.key.endswith("." + path[0])
        assert repr(path[-1]) in str(error)
    elif path[-1] == "window":
        assert error.key == ".".join(path)
        assert "testing needs a window from the specimen or prescription date" in str(error)
    else:
        assert str(error) == f"{FILE}: {'.'.join(path)}: is missing"
        assert error.key == ".".join(path)


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(path=st.sampled_from(DELETABLE))
def test_deleting_a_random_key_is_rejected_naming_it(path: tuple[str, ...]) -> None:
    assert_deletion_named(path)


@pytest.mark.parametrize("path", DELETABLE, ids=".".join)
def test_deleting_each_key_is_rejected_naming_it(path: tuple[str, ...]) -> None:
    assert_deletion_named(path)


def test_the_clinic_zone_is_the_prescribers_in_the_eu_and_uk_and_eastern_in_the_us() -> None:
    """workflows.md 4 / issue 11 item 10: EU/UK judge the clinic's steps in the prescriber's
    own zone and dispensing in the pharmacy's; iPLEDGE judges everything in Eastern time."""
    for rid in ("eu-iso/2018", "uk-iso/2026-01"):
        r = get(rid)
        assert (r.clinic_zone, r.dispense_zone) == ("prescriber", "pharmacy")
        assert r.clinic_zone_for("Europe/Athens") == "Europe/Athens"
        assert r.clinic_zone_for(None) is None
    for rid in (LEGACY, MOD):
        r = get(rid)
        assert (r.clinic_zone, r.dispense_zone) == ("America/New_York", "America/New_York")
        assert r.clinic_zone_for("Pacific/Honolulu") is None


def test_optional_or_open_keys_may_be_deleted() -> None:
    assert parse(FILE, dump(without(MOD_DATA, ("notes",)))).notes == ()
    ruleset = parse(FILE, dump(without(MOD_DATA, ("contraception", "methods", "iud"))))
    assert ruleset.contraception.tier("iud") is None


# --- a programme's own names for kinds of test ---------------------------------------------------


def test_eu_and_uk_name_their_pretreatment_test_and_iPLEDGE_names_none() -> None:
    rulesets = loader.all_rulesets()
    for ruleset_id in ("eu-iso/2018", "uk-iso/2026-01"):
        assert rulesets[ruleset_id].testing.names == {"pretreatment": Kind.CONFIRMATION}
    for ruleset_id in ("ipledge/2023-03", "ipledge/2026-mod"):
        assert rulesets[ruleset_id].testing.names == {}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('monthly = "confirmation"', "is already a kind"),
        ('pretreatment = "baseline"', "is not a kind of test"),
    ],
)
def test_a_name_must_be_new_and_name_a_kind(entry: str, message: str) -> None:
    text = mutate(
        "[pregnancy_tests]\n", f"[pregnancy_tests.names]\n{entry}\n\n[pregnancy_tests]\n"
    )
    error = rejected(text)
    assert message in str(error)
