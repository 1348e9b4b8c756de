"""The benchmark report's notes and tables say what the run measured, and nothing it did not."""

from __future__ import annotations

from typing import Any

from benchmarks import population
from benchmarks.common import Measurement
from benchmarks.run import _notes


def _document(cpus: int, start: list[float], end: list[float]) -> dict[str, Any]:
    return {
        "machine": {
            "logical_cpus": cpus,
            "load_average_at_start": start,
            "load_average_at_end": end,
        },
        "parameters": {},
    }


def _dispense(backend: str, clients: int) -> Measurement:
    return Measurement(
        f"Dispense authorization, {backend}",
        f"throughput, {clients} clients",
        "authorizations/s",
        800.0,
        1200.0,
        "raw transaction",
        True,
        None,
        {"clients": clients},
    )


def test_the_load_the_run_itself_causes_does_not_mark_the_machine_busy() -> None:
    quiet = _notes(_document(2, [0.2, 0.3, 0.4], [1.9, 1.6, 1.1]), [], [])
    assert quiet == []
    busy = _notes(_document(2, [1.4, 0.9, 0.5], [1.9, 1.6, 1.1]), [], [])
    assert len(busy) == 1 and "before the run (load average 1.4 on 2 logical CPUs)" in busy[0]


def test_clients_sharing_the_cpus_with_the_server_are_not_called_a_scaling_figure() -> None:
    rows = [_dispense("PostgreSQL", 1), _dispense("PostgreSQL", 4), _dispense("SQLite", 1)]
    notes = _notes(_document(2, [0.1, 0.1, 0.1], [0.1, 0.1, 0.1]), [], rows)
    assert len(notes) == 1
    assert "With 4 clients" in notes[0] and "not a scaling figure" in notes[0]
    # Enough CPUs for every client and the server: nothing to say.
    assert _notes(_document(8, [0.1, 0.1, 0.1], [0.1, 0.1, 0.1]), [], rows) == []
    # One client beside the server: nothing to say either.
    one = [_dispense("PostgreSQL", 1)]
    assert _notes(_document(2, [0.1, 0.1, 0.1], [0.1, 0.1, 0.1]), [], one) == []


def _run(units: int, seconds: float) -> dict[str, Any]:
    return {
        "units": units,
        "seconds": seconds,
        "cpu_seconds": seconds,
        "peak_rss_mb": 100.0,
        "seconds_per_unit": seconds / units,
    }


def _size(patients: int) -> dict[str, Any]:
    events = patients * 20
    return {
        "patients": patients,
        "events": events,
        "operations": {
            op.key: _run(patients if op.unit == "course" else events, patients / 10_000)
            for op in population.OPERATIONS
        },
        "single_patient": {"click": {"median_seconds": 0.04}},
    }


def test_the_projection_table_appears_only_where_there_is_something_to_project() -> None:
    measured = population.render({"backends": {"SQLite": [_size(10_000), _size(100_000)]}})
    assert not any("linear projection" in line for line in measured)
    assert not any("marginal cost is" in line for line in measured)
    small = population.render({"backends": {"SQLite": [_size(1_000), _size(4_000)]}})
    header = [i for i, line in enumerate(small) if "linear projection" in line]
    assert len(header) == 1
    projected = small[header[0] + 2 : header[0] + 2 + len(population.OPERATIONS)]
    assert all(line.startswith("| SQLite | `compliance ") for line in projected)
