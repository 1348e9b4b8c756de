"""``compliance course ...``, ``compliance status`` and ``compliance due``: the clinic's work."""

from __future__ import annotations

from typing import Any

import click

from compliance.cli import vocab
from compliance.cli.context import Context, pass_ctx
from compliance.cli.output import (
    json_option,
    pregnancy_alert,
    say,
    shout_alert,
    show_record,
    show_rows,
)
from compliance.cli.timefmt import deadline, when
from compliance.cli.vocab import ValuesCommand
from compliance.domain.course import CourseState
from compliance.errors import CHECK_REFUSE_EXIT, InvalidInput

REASON_COLUMNS = ["code", "message", "next_step", "earliest"]
CHECKLIST_COLUMNS = ["item", "status", "detail", "next_step", "due_by"]
FLAG_COLUMNS = ["due", "patient", "code", "message", "reference"]
DUE_COLUMNS = ["due", "patient", "name", "code", "message", "reference"]
LIST_COLUMNS = [
    "patient",
    "patient_name",
    "state",
    "cycle",
    "ruleset",
    "prescriber",
    "prescriber_name",
    "enrolled_on",
]
MIGRATE_COLUMNS = ["patient", "state", "from", "to", "result", "prescribe"]


def show_decision(decision: dict[str, Any], as_json: bool) -> None:
    """A check's answer; REFUSE ends the command with exit 11 (``CHECK_REFUSE``) so scripts can
    branch, after printing the whole decision."""
    _print_decision(decision, as_json)
    if decision["outcome"] == "REFUSE":
        click.get_current_context().exit(CHECK_REFUSE_EXIT)


def _print_decision(decision: dict[str, Any], as_json: bool) -> None:
    if as_json:
        show_record(decision, True)
        return
    window = decision.get("window")
    span = f", window {window['first_day']} to {window['last_day']}" if window else ""
    say(
        f"{decision['gate']}: {decision['outcome']} under {decision['ruleset']} "
        f"(cycle {decision['cycle']}, today {decision['today']}{span})"
    )
    if decision["reasons"]:
        show_rows(decision["reasons"], REASON_COLUMNS, False, title="Reasons")


def show_outcome(
    result: Any, as_json: bool, *, alert_event: str | None = None, alert_key: bool = False
) -> None:
    """The outcome of a change. ``alert_event`` names a pregnancy event to announce loudly (a
    block on stderr; an ``alert`` object in JSON); ``alert_key`` keeps the key, null, otherwise."""
    data = result.to_dict()
    alert = None
    if alert_event is not None:
        alert = pregnancy_alert(alert_event, data["course"]["ruleset"])
    if alert_key or alert is not None:
        data["alert"] = alert
    if as_json:
        show_record(data, True)
        return
    if alert is not None:
        shout_alert(alert)
    course = data["course"]
    say(
        f"patient {course['patient']}: course {course['state']} (cycle {course['cycle']}, "
        f"{course['ruleset']})"
    )
    if data.get("prescription"):
        rx = data["prescription"]
        say(f"prescription {rx['id']}: {rx['days_supply']} days, written {rx['written_on']}")
    if data.get("authorization"):
        a = data["authorization"]
        after = deadline(a["do_not_dispense_after"], a["zone"]) or "no time limit"
        what = a.get("kind", "authorization").replace("_", " ")
        say(f"{what} {a['formatted']} for {a['prescription']}: do not dispense after {after}")
        if a["reversed_at"]:
            say(f"  reversed at {when(a['reversed_at'])}: {a['reversal_reason']}")
        if a["dispensed_at"]:
            say(f"  dispensed at {when(a['dispensed_at'])}")
    if data.get("record"):
        problems = data["record"].get("problems")
        if problems:
            say(f"recorded, but this test cannot count: {', '.join(problems)}")


def _pairs(field: str, values: tuple[str, ...]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for raw in values:
        name, sep, start = raw.partition("=")
        if not sep or not name.strip() or not start.strip():
            raise InvalidInput(field, f"{raw!r} is not METHOD=START_DATE (e.g. iud=2026-10-01)")
        pairs[name.strip()] = start.strip()
    return pairs


patient_argument = click.argument("patient", metavar="PATIENT")


@click.group()
def course() -> None:
    """Treatment courses: what the clinic records, and prescribing."""


@course.command("enrol")
@patient_argument
@click.option("--enrolled-on", help="Enrolment date (default today); picks the ruleset in force.")
@click.option(
    "--programme",
    default="ipledge",
    show_default=True,
    help="The programme (see `rules list`); its version in force on the enrolment date governs.",
)
@json_option
@pass_ctx
def course_enrol(
    state: Context, patient: str, enrolled_on: str | None, programme: str, as_json: bool
) -> None:
    """Open a treatment course for a patient."""
    show_outcome(
        state.app().enrol(
            state.who(), patient, enrolled_on, programme, on_behalf_of=state.on_behalf_of
        ),
        as_json,
    )


@course.command(
    "category",
    cls=ValuesCommand,
    values={"CATEGORY": vocab.categories, "REASON": vocab.category_reasons},
)
@patient_argument
@click.argument("category", shell_complete=vocab.completer(vocab.categories))
@click.argument("reason", shell_complete=vocab.completer(vocab.category_reasons))
@json_option
@pass_ctx
def course_category(
    state: Context, patient: str, category: str, reason: str, as_json: bool
) -> None:
    """Assign (or change) the patient's category and the reason supporting it."""
    show_outcome(
        state.app().assign_category(state.who(), patient, category, reason, state.on_behalf_of),
        as_json,
    )


@course.command("test-schedule", cls=ValuesCommand, values={"SCHEDULE": vocab.schedules})
@patient_argument
@click.argument("schedule", shell_complete=vocab.completer(vocab.schedules))
@json_option
@pass_ctx
def course_test_schedule(state: Context, patient: str, schedule: str, as_json: bool) -> None:
    """Choose the ruleset's testing schedule for the patient (e.g. irregular_cycles)."""
    show_outcome(
        state.app().set_test_schedule(state.who(), patient, schedule, state.on_behalf_of),
        as_json,
    )


@course.command("consent", cls=ValuesCommand, values={"FORM": vocab.consent_forms})
@patient_argument
@click.argument("form", shell_complete=vocab.completer(vocab.consent_forms))
@click.option("--signed-on", help="Date signed (default today).")
@json_option
@pass_ctx
def course_consent(
    state: Context, patient: str, form: str, signed_on: str | None, as_json: bool
) -> None:
    """Record a signed consent form."""
    show_outcome(
        state.app().record_consent(state.who(), patient, form, signed_on, state.on_behalf_of),
        as_json,
    )


@course.command("counselling")
@patient_argument
@click.option("--on", "counselled_on", help="Date of counselling (default today).")
@json_option
@pass_ctx
def course_counselling(
    state: Context, patient: str, counselled_on: str | None, as_json: bool
) -> None:
    """Document this cycle's counselling."""
    show_outcome(
        state.app().record_counselling(state.who(), patient, counselled_on, state.on_behalf_of),
        as_json,
    )


@course.command("confirm-patient")
@patient_argument
@json_option
@pass_ctx
def course_confirm_patient(state: Context, patient: str, as_json: bool) -> None:
    """The prescriber confirms the patient for the latest negative result (iPLEDGE)."""
    show_outcome(state.app().confirm_patient(state.who(), patient, state.on_behalf_of), as_json)


@course.command("comprehension")
@patient_argument
@json_option
@pass_ctx
def course_comprehension(state: Context, patient: str, as_json: bool) -> None:
    """The patient (acting as themselves) completed the comprehension questions."""
    show_outcome(state.app().record_comprehension(state.who(), patient), as_json)


@course.command("contraception", cls=ValuesCommand, values={"METHOD": vocab.methods})
@patient_argument
@click.option(
    "--method",
    "methods",
    multiple=True,
    required=True,
    metavar="METHOD=START",
    shell_complete=vocab.completer(vocab.methods, "="),
    help="A method and the date it started, e.g. iud=2026-10-01 (repeat).",
)
@json_option
@pass_ctx
def course_contraception(
    state: Context, patient: str, methods: tuple[str, ...], as_json: bool
) -> None:
    """The prescriber's entry of the patient's contraception methods."""
    show_outcome(
        state.app().record_contraception(
            state.who(), patient, _pairs("--method", methods), state.on_behalf_of
        ),
        as_json,
    )


@course.command("confirm", cls=ValuesCommand, values={"METHOD": vocab.methods})
@patient_argument
@click.option(
    "--method",
    "methods",
    multiple=True,
    required=True,
    metavar="METHOD",
    help="A method the patient uses (repeat).",
    shell_complete=vocab.completer(vocab.methods),
)
@json_option
@pass_ctx
def course_confirm(state: Context, patient: str, methods: tuple[str, ...], as_json: bool) -> None:
    """The patient (acting as themselves) confirms their methods for this cycle."""
    show_outcome(state.app().confirm_contraception(state.who(), patient, list(methods)), as_json)


@course.command("test", cls=ValuesCommand, values={"--kind": vocab.test_kinds})
@patient_argument
@click.option(
    "--kind",
    required=True,
    metavar="KIND",
    shell_complete=vocab.completer(vocab.test_kinds),
    help="The kind of test, or the programme's own name for it (EU/UK: pretreatment).",
)
@click.option("--specimen-date", required=True, help="Date the specimen was collected.")
@click.option("--setting", required=True, type=click.Choice(["lab", "clinic", "home"]))
@click.option("--result", required=True, type=click.Choice(["negative", "positive"]))
@click.option(
    "--sensitivity",
    default=25.0,
    show_default=True,
    type=float,
    help="The test's detection threshold in mIU/mL.",
)
@click.option("--clia", is_flag=True, help="Performed in a CLIA-certified laboratory.")
@json_option
@pass_ctx
def course_test(
    state: Context,
    patient: str,
    kind: str,
    specimen_date: str,
    setting: str,
    result: str,
    sensitivity: float,
    clia: bool,
    as_json: bool,
) -> None:
    """Record a pregnancy test (a positive result suspends the course at once)."""
    show_outcome(
        state.app().record_test(
            state.who(),
            patient,
            kind=kind,
            specimen_date=specimen_date,
            setting=setting,
            result=result,
            sensitivity_miu_ml=sensitivity,
            clia=clia,
            on_behalf_of=state.on_behalf_of,
        ),
        as_json,
        alert_event="positive pregnancy test" if result == "positive" else None,
        alert_key=True,
    )


@course.command("check")
@patient_argument
@click.option("--days-supply", type=int, help="Also check this days' supply.")
@click.option("--refills", default=0, show_default=True, type=int)
@json_option
@pass_ctx
def course_check(
    state: Context, patient: str, days_supply: int | None, refills: int, as_json: bool
) -> None:
    """May this patient be prescribed now? Lists every failing requirement; changes nothing."""
    decision = state.app().check_prescribe(
        state.who(), patient, days_supply, refills, state.on_behalf_of
    )
    show_decision(decision.to_dict(), as_json)


@course.command("prescribe")
@patient_argument
@click.option("--days-supply", required=True, type=int)
@click.option("--refills", default=0, show_default=True, type=int)
@click.option("--written-on", help="Date written on the prescription (default today).")
@click.option("--office-visit-on", help="Date of the office visit (default: written date).")
@json_option
@pass_ctx
def course_prescribe(
    state: Context,
    patient: str,
    days_supply: int,
    refills: int,
    written_on: str | None,
    office_visit_on: str | None,
    as_json: bool,
) -> None:
    """Write a prescription; refused (exit 3) with every failing reason if the rules say no."""
    result = state.app().prescribe(
        state.who(), patient, days_supply, refills, written_on, office_visit_on
    )
    show_outcome(result, as_json)


@course.command("end")
@patient_argument
@click.option("--last-dose-on", required=True, help="Date of the last dose.")
@json_option
@pass_ctx
def course_end(state: Context, patient: str, last_dose_on: str, as_json: bool) -> None:
    """End treatment; the post-treatment month follows where the rules require it."""
    show_outcome(state.app().end_treatment(state.who(), patient, last_dose_on), as_json)


@course.command("pregnancy")
@patient_argument
@click.option("--reported-on", help="Date reported (default today).")
@click.option("--note")
@json_option
@pass_ctx
def course_pregnancy(
    state: Context, patient: str, reported_on: str | None, note: str | None, as_json: bool
) -> None:
    """Report a pregnancy: the course is suspended and the pregnancy actions flag raised."""
    show_outcome(
        state.app().report_pregnancy(state.who(), patient, reported_on, note, state.on_behalf_of),
        as_json,
        alert_event="pregnancy reported",
    )


@course.command("resume")
@patient_argument
@click.option("--note", required=True, help="Why the course may resume.")
@json_option
@pass_ctx
def course_resume(state: Context, patient: str, note: str, as_json: bool) -> None:
    """Resume a suspended course (back to pre-treatment qualification)."""
    show_outcome(state.app().resume_course(state.who(), patient, note), as_json)


def _closing_command(name: str, method: str, doc: str) -> None:
    @click.argument("patient", metavar="PATIENT")
    @click.option("--note", help="Why (kept in the audit trail).")
    @json_option
    @pass_ctx
    def command(state: Context, patient: str, note: str | None, as_json: bool) -> None:
        show_outcome(getattr(state.app(), method)(state.who(), patient, note), as_json)

    command.__doc__ = doc
    course.command(name)(command)


_closing_command(
    "withdraw", "withdraw_course", "Withdraw the course (open authorizations are reversed)."
)
_closing_command("lost", "mark_lost_to_follow_up", "Mark the course lost to follow-up.")


@course.command("migrate")
@click.argument("patients", nargs=-1, metavar="[PATIENT]...")
@click.option("--to", "to", required=True, metavar="RULESET", help="The ruleset to move to.")
@click.option(
    "--all-from",
    metavar="RULESET",
    help="Move every open course on this ruleset (instead of naming patients).",
)
@json_option
@pass_ctx
def course_migrate(
    state: Context, patients: tuple[str, ...], to: str, all_from: str | None, as_json: bool
) -> None:
    """Move open courses to another version of their programme, all or none."""
    from compliance.cli.rules_cmds import verdict

    report = (
        state.app()
        .migrate_courses(state.who(), to, list(patients) if patients else None, all_from)
        .to_dict()
    )
    if as_json:
        show_record(report, True)
        return
    say(f"to {report['to']}: migrated {report['migrated']}, unchanged {report['unchanged']}")
    rows = [
        {
            **{k: c[k] for k in ("patient", "state", "from", "to", "result")},
            "prescribe": f"{verdict(c['before'])} -> {verdict(c['after'])}",
        }
        for c in report["courses"]
    ]
    if rows:
        show_rows(rows, MIGRATE_COLUMNS, False, title="Courses")


@click.command()
@patient_argument
@json_option
@pass_ctx
def status(state: Context, patient: str, as_json: bool) -> None:
    """A patient's course: state, this cycle's checklist, window and deadlines, flags."""
    result = state.app().status(state.who(), patient, state.on_behalf_of)
    data = result.to_dict()
    if as_json:
        show_record(data, True)
        return
    c = data["course"]
    say(f"patient {c['patient']}  course {c['state']}  cycle {c['cycle']}  {c['ruleset']}")
    step = data["next"]
    if step:
        by = f" by {step['due_by']}" if step["due_by"] else ""
        who = f" ({step['who']})" if step["who"] else ""
        say(f"next: {step['what']}{by}{who}")
    say(
        f"category {c['category'] or '-'} ({c['category_reason'] or '-'}), enrolled "
        f"{c['enrolled_on']}, prescriber {c['prescriber']}"
    )
    window = data["decision"]["window"]
    if window:
        closes = deadline(window["closes_at"], window["zone"]) or window["closes_at"]
        say(f"window {window['first_day']} to {window['last_day']} (closes {closes})")
    if data["current_prescription"]:
        say(f"current prescription {data['current_prescription']['id']}")
    if data["open_authorization"]:
        a = data["open_authorization"]
        say(
            f"open authorization {a['formatted']} (do not dispense after "
            f"{deadline(a['do_not_dispense_after'], a['zone']) or '-'})"
        )
    show_rows(data["checklist"], CHECKLIST_COLUMNS, False, title="Checklist")
    if data["flags"]:
        show_rows(data["flags"], FLAG_COLUMNS, False, title="Flags")


@click.command()
@click.option(
    "--within",
    default=7,
    show_default=True,
    type=int,
    metavar="DAYS",
    help="Look-ahead for tests due and windows closing.",
)
@json_option
@pass_ctx
def due(state: Context, within: int, as_json: bool) -> None:
    """The worklist: tests due, windows closing, reversals owed, overdue tests, pregnancies."""
    app = state.app()
    flags = [f.to_dict() for f in app.due(state.who(), within, state.on_behalf_of)]
    if as_json or not flags:
        empty = f"nothing due within {within} days: no tests, windows, reversals or pregnancies"
        show_rows(flags, FLAG_COLUMNS, as_json, title="Due", empty=empty)
        return
    courses = app.list_courses(state.who(), limit=10_000, on_behalf_of=state.on_behalf_of)
    names = {c.patient: c.patient_name for c in courses}
    rows = [{**f, "name": names.get(f["patient"])} for f in flags]
    show_rows(rows, DUE_COLUMNS, False, title="Due")


@course.command("list")
@click.option(
    "--state",
    "state_name",
    type=click.Choice([s.value for s in CourseState]),
    help="Only courses in this state.",
)
@click.option("--prescriber", metavar="PRESCRIBER", help="Only this prescriber's courses.")
@click.option(
    "--programme",
    metavar="PROGRAMME",
    shell_complete=vocab.completer(vocab.programmes),
    help="Only this programme (e.g. ipledge) or ruleset (e.g. ipledge/2026-mod).",
)
@click.option("--limit", default=500, show_default=True, type=click.IntRange(1, 10_000))
@json_option
@pass_ctx
def course_list(
    state: Context,
    state_name: str | None,
    prescriber: str | None,
    programme: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """The overview: courses with patient and prescriber names, newest enrolment first."""
    courses = state.app().list_courses(
        state.who(), state_name, prescriber, programme, limit, state.on_behalf_of
    )
    show_rows(
        [c.to_dict() for c in courses],
        LIST_COLUMNS,
        as_json,
        title="Courses",
        empty="no course matches",
    )
