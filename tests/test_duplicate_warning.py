"""The possible-duplicate warning at registration, from the patient's point of view: the same
person typed on another keyboard (look-alike letters from another script, full-width forms,
accents, case) is flagged; a different person is not; and databases registered before the wider
fold are carried forward by the migration."""

from __future__ import annotations

from sqlalchemy import text

from compliance.api import Compliance
from compliance.clock import FixedClock
from compliance.db import migrate
from compliance.db.engine import make_engine
from tests.conftest import T0, World, build_world

DOB = "1994-06-15"


def test_look_alike_letters_from_another_script_warn(world: World) -> None:
    app, prs = world.app, world.prescriber.id
    first = app.register_patient(prs, "Anna Petrova", DOB).patient.id
    cyrillic_a = "\u0410nna Petrova"  # CYRILLIC CAPITAL LETTER A, then Latin
    assert cyrillic_a != "Anna Petrova"
    second = app.register_patient(prs, cyrillic_a, DOB)
    assert second.possible_duplicates == (first,)


def test_other_spellings_of_the_same_letters_warn(world: World) -> None:
    app, prs = world.app, world.prescriber.id
    first = app.register_patient(prs, "Maria Lopez", DOB).patient.id
    for typed in (
        "MARIA LOPEZ",
        "M\u0430r\u0456\u0430 L\u043ep\u0435z",  # Cyrillic a, i, o, e (U+0430 ...)
        "\uff2d\uff41\uff52\uff49\uff41 Lopez",  # full-width Latin
        "Mar\u00eda L\u00f3pez",  # accents
        "  maria   lopez ",
    ):
        assert first in app.register_patient(prs, typed, DOB).possible_duplicates, typed


def test_a_different_person_does_not_warn(world: World) -> None:
    app, prs = world.app, world.prescriber.id
    app.register_patient(prs, "Anna Petrova", DOB)
    assert app.register_patient(prs, "Anna Petrova", "1994-06-16").possible_duplicates == ()
    assert app.register_patient(prs, "Hanna Petrova", DOB).possible_duplicates == ()
    # All-Cyrillic "ANNA" (U+0410 U+041D ...) reads as Latin "AHHA", not "ANNA".
    assert (
        app.register_patient(prs, "\u0410\u041d\u041d\u0410 Petrova", DOB).possible_duplicates == ()
    )


def test_search_by_name_finds_the_look_alike_spelling(world: World) -> None:
    app, prs = world.app, world.prescriber.id
    pat = app.register_patient(prs, "\u0410nna Petrova", DOB).patient.id
    assert [p.id for p in app.find_patients(prs, name="anna")] == [pat]


def test_migration_recomputes_keys_of_patients_registered_before(db_url: str) -> None:
    with Compliance.open(db_url, FixedClock(T0)) as app:
        world = build_world(app)
        pat = app.register_patient(world.prescriber.id, "\u0410nna Petrova", DOB).patient.id
    engine = make_engine(db_url)
    try:
        migrate.downgrade(engine, "0007")
        with engine.begin() as conn:  # the key as the earlier fold wrote it: Cyrillic kept
            conn.execute(text("UPDATE patients SET name_key = :key"), {"key": "\u0430nna petrova"})
        migrate.upgrade(engine)
        with engine.connect() as conn:
            assert (
                conn.execute(text("SELECT name_key FROM patients")).scalar_one() == "anna petrova"
            )
    finally:
        engine.dispose()
    with Compliance.open(db_url, FixedClock(T0)) as app:
        again = app.register_patient(world.prescriber.id, "Anna Petrova", DOB)
        assert again.possible_duplicates == (pat,)
