"""The embedding API as a host meets it: one import, precise types, every public name explained,
and the documented examples type-checked with ``mypy --strict``."""

from __future__ import annotations

import dataclasses
import enum
import inspect
import re
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest

import compliance
from compliance.api.service import Compliance

ROOT = Path(__file__).resolve().parents[1]

# The public names, pinned: adding one is a deliberate change to this list, removing or
# renaming one breaks hosts and must never happen quietly.
PUBLIC = [
    "AuditRecord",
    "AuthorizationInfo",
    "AuthorizationUpdated",
    "Authorized",
    "Caller",
    "ChecklistItem",
    "Checkpoint",
    "ClientInfo",
    "Clock",
    "Compliance",
    "CourseInfo",
    "CourseListing",
    "CourseState",
    "CourseStatus",
    "DateInput",
    "Decision",
    "Ed25519Signer",
    "EtasuAnswer",
    "FixedClock",
    "Flag",
    "GrantInfo",
    "ImpactReport",
    "ImpactStream",
    "IssuedKey",
    "KeyInfo",
    "LogFilter",
    "MigrationReport",
    "NextStep",
    "Outcome",
    "PatientInfo",
    "PatientRegistration",
    "PersonInfo",
    "PharmacyInfo",
    "PharmacyStatus",
    "Prescribed",
    "PrescriberStatus",
    "PrescriptionInfo",
    "Reason",
    "Role",
    "SchemaStatus",
    "Setting",
    "Signer",
    "StaffStatus",
    "StepResult",
    "SystemClock",
    "TestKind",
    "TestResult",
    "VerifyReport",
    "Window",
    "__version__",
    "errors",
]


def _public_methods() -> list[tuple[str, object]]:
    return [
        (name, member)
        for name, member in inspect.getmembers(Compliance)
        if not name.startswith("_") and callable(member)
    ]


def _exported_classes() -> list[type]:
    found = (getattr(compliance, name) for name in compliance.__all__)
    return [value for value in found if inspect.isclass(value)]


def test_all_is_pinned_and_every_name_resolves() -> None:
    assert compliance.__all__ == PUBLIC
    for name in PUBLIC:
        assert getattr(compliance, name) is not None, name
    assert set(PUBLIC) <= set(dir(compliance))
    with pytest.raises(AttributeError, match="no attribute 'Nonesuch'"):
        _ = compliance.Nonesuch  # type: ignore[attr-defined]


def test_importing_the_package_loads_no_engine() -> None:
    """The names are lazy: ``import compliance`` loads neither SQLAlchemy nor the engine."""
    code = (
        "import sys, compliance; "
        "print(sorted(m for m in sys.modules if m.startswith(('sqlalchemy', 'compliance.'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"


def _named_types(hint: object) -> set[type]:
    """The classes a return annotation names, through unions, lists, tuples and mappings."""
    origin = typing.get_origin(hint)
    if origin is None:
        return {hint} if inspect.isclass(hint) else set()
    found: set[type] = set()
    for arg in typing.get_args(hint):
        found |= _named_types(arg)
    return found


def test_every_result_type_a_method_returns_is_exported() -> None:
    exported = set(_exported_classes())
    missing: set[str] = set()
    for name, method in _public_methods():
        hints = typing.get_type_hints(method)
        for cls in _named_types(hints.get("return")):
            if cls.__module__.startswith("compliance.") and cls not in exported:
                missing.add(f"{name} -> {cls.__qualname__}")
    # Rulesets are data the engine loads, not results: their model is documented in rules.md.
    missing = {m for m in missing if not m.endswith("-> Ruleset") and "RulesetDiff" not in m}
    assert missing == set()


def test_no_operation_returns_an_untyped_answer() -> None:
    loose = []
    for name, method in _public_methods():
        hints = typing.get_type_hints(method)
        ret = hints.get("return")
        if ret is typing.Any or ret is object:
            loose.append(name)
    assert loose == []


def test_course_steps_that_produce_something_say_so_in_their_type() -> None:
    """A host reading ``prescribe(...).prescription.id`` needs no None check."""
    hints = {name: typing.get_type_hints(m).get("return") for name, m in _public_methods()}
    assert hints["prescribe"] is compliance.Prescribed
    assert hints["request_authorization"] is compliance.Authorized
    assert hints["record_dispense"] is compliance.AuthorizationUpdated
    assert hints["reverse_authorization"] is compliance.AuthorizationUpdated
    assert hints["enrol"] is compliance.StepResult
    prescribed = typing.get_type_hints(compliance.Prescribed)
    assert prescribed["prescription"] is compliance.PrescriptionInfo
    assert prescribed["decision"] is compliance.Decision
    authorized = typing.get_type_hints(compliance.Authorized)
    assert authorized["authorization"] is compliance.AuthorizationInfo
    course = typing.get_type_hints(compliance.CourseInfo)
    assert course["state"] is compliance.CourseState
    person = typing.get_type_hints(compliance.PersonInfo)
    assert person["role"] is compliance.Role
    # errors.py names the decision for type checkers only (it imports nothing at run time).
    refused = typing.get_type_hints(
        compliance.errors.Refused.__init__, localns={"Decision": compliance.Decision}
    )
    assert refused["decision"] == compliance.Decision | None


def test_one_class_per_name() -> None:
    """No two public classes share a name (there was once an ``Outcome`` of each kind)."""
    classes = [c.__name__ for c in _exported_classes()]
    assert len(classes) == len(set(classes))
    from compliance.api import results_course

    assert not hasattr(results_course, "Outcome")


def _undocumented(obj: object, name: str) -> bool:
    doc = inspect.getdoc(obj) or ""
    # A dataclass without its own docstring gets a generated signature: that is not one.
    return not doc.strip() or doc.startswith(f"{name}(")


def test_every_public_method_and_class_has_a_docstring() -> None:
    missing = [f"Compliance.{n}" for n, m in _public_methods() if _undocumented(m, n)]
    for cls in _exported_classes():
        if _undocumented(cls, cls.__name__):
            missing.append(cls.__name__)
        if issubclass(cls, enum.Enum):
            continue
        for attr, member in vars(cls).items():
            if attr.startswith("_"):
                continue
            target = member.fget if isinstance(member, property) else member
            if isinstance(target, staticmethod | classmethod):
                target = target.__func__
            if isinstance(target, types.FunctionType) and _undocumented(target, attr):
                missing.append(f"{cls.__name__}.{attr}")
    assert missing == []


def test_results_are_frozen_dataclasses_that_render_as_json() -> None:
    for cls in _exported_classes():
        if dataclasses.is_dataclass(cls) and cls.__module__.startswith("compliance.api"):
            assert cls.__dataclass_params__.frozen, cls.__name__  # type: ignore[attr-defined]
            assert callable(getattr(cls, "to_dict", None)), cls.__name__


_FENCE = re.compile(r"```python\n(.*?)```", re.S)


def _documented_examples() -> list[tuple[str, str]]:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    found = []
    for page in pages:
        for index, block in enumerate(_FENCE.findall(page.read_text(encoding="utf-8"))):
            found.append((f"{page.relative_to(ROOT)}#{index + 1}", block))
    return found


def test_documentation_holds_python_examples() -> None:
    names = [name for name, _ in _documented_examples()]
    assert any(n.startswith("README.md") for n in names)
    assert any(n.startswith("docs/embedding.md") for n in names)


@pytest.mark.slow
def test_documented_examples_pass_mypy_strict(tmp_path: Path) -> None:
    """Every ``python`` block of the README and docs type-checks as a host would write it."""
    examples = _documented_examples()
    files = []
    for index, (name, block) in enumerate(examples):
        path = tmp_path / f"example_{index}.py"
        path.write_text(f"# {name}\n{block}", encoding="utf-8")
        files.append(str(path))
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", *files],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_enum_arguments_are_accepted_as_members_or_values(sqlite_url: str) -> None:
    """A typed host passes ``TestKind.SCREENING``; a form passes ``"screening"``: both count."""
    from tests.conftest import T0, build_world

    with Compliance.open(sqlite_url, compliance.FixedClock(T0)) as app:
        world = build_world(app)
        prs = world.prescriber.id
        for name, typed in (("Tess Typed", True), ("Tom Text", False)):
            pat = app.register_patient(prs, name, "2000-01-01").patient.id
            app.enrol(prs, pat)
            app.assign_category(prs, pat, "can_get_pregnant", "REPRODUCTIVE_POTENTIAL")
            step = app.record_test(
                prs,
                pat,
                kind=compliance.TestKind.SCREENING if typed else "screening",
                specimen_date=T0.date() if typed else T0.date().isoformat(),
                setting=compliance.Setting.CLINIC if typed else "clinic",
                result=compliance.TestResult.NEGATIVE if typed else "negative",
            )
            assert isinstance(step, compliance.StepResult)
            assert step.course.state is compliance.CourseState.PRE_TREATMENT
        with pytest.raises(compliance.errors.InvalidInput, match="kind: must be one of"):
            app.record_test(
                prs,
                pat,
                kind="weekly",
                specimen_date=T0.date(),
                setting="clinic",
                result="negative",
            )
