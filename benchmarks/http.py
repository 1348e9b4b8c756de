"""Dispense authorization over HTTP beside the same call in process, in the same run.

One SQLite database (or PostgreSQL with ``--db``) holds patients whose prescriptions wait for an
authorization. ``compliance serve`` runs in its own process; one client authorizes half the
prescriptions through it with a keep-alive connection, and the same pharmacist authorizes the
other half in process, in alternating rounds so both see the same machine. The ratio is HTTP
throughput over in-process throughput (goal: at least 0.5). Nothing here asserts.
``python -m benchmarks.run`` runs it on SQLite and PostgreSQL (``http_benchmark``) and reports
the ratio beside the others.

The client is the standard library's ``http.client`` (about 0.5 ms of CPU a request here): the
client shares the machine's two cores with the server, and ``httpx`` (``--client httpx``) costs
about 1.5 ms a request of them, which a pharmacy terminal spends on its own machine.

    python -m benchmarks.http [--patients 200] [--rounds 4] [--db URL | --postgres]
        [--client stdlib|httpx]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
from rich.console import Console

from benchmarks.common import Measurement, pg_create, pg_drop, scratch_pg_url
from compliance import Compliance

GOAL = 0.5
LIMIT_LABEL = "the same request_authorization in process, alternating rounds in the same run"


def _ready(app: Compliance, count: int) -> tuple[str, str, list[str]]:
    """An administrator, a pharmacist, and ``count`` prescriptions ready to authorize."""
    admin = app.initialize("Bench Admin", training=True).id
    prs = app.register_prescriber(admin, "Dr Bench", "1234567893").id
    app.activate_prescriber(admin, prs)
    pharmacy = app.register_pharmacy(admin, "Bench Pharmacy", "1234567", "America/Chicago").id
    app.activate_pharmacy(admin, pharmacy)
    rph = app.register_pharmacist(admin, "Bench Pharmacist", pharmacy).id
    prescriptions = []
    for i in range(count):
        pat = app.register_patient(prs, f"Bench Patient {i}", "1990-05-05").patient.id
        app.enrol(prs, pat)
        app.assign_category(prs, pat, "cannot_get_pregnant", "NO_UTERUS")
        app.record_consent(prs, pat, "PATIENT_INFORMATION_CONSENT")
        app.record_counselling(prs, pat)
        app.record_comprehension(pat, pat)
        rx = app.prescribe(prs, pat, 30).prescription
        assert rx is not None
        prescriptions.append(rx.id)
    return admin, rph, prescriptions


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _timed(calls: Sequence[Callable[[], object]]) -> float:
    start = time.perf_counter()
    for call in calls:
        call()
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--db", help="database URL (default: a new SQLite file)")
    parser.add_argument(
        "--postgres", action="store_true", help="a scratch PostgreSQL database (BENCH_PG_URL)"
    )
    parser.add_argument(
        "--access-log", action="store_true", help="keep the service's access log on"
    )
    parser.add_argument(
        "--client", choices=CLIENTS, default="stdlib", help="the HTTP client library"
    )
    args = parser.parse_args(argv)
    result = measure(
        args.patients, args.rounds, args.db, args.postgres, args.access_log, client=args.client
    )
    print(json.dumps(result, indent=2))
    return 0


def measure(
    patients: int,
    rounds: int,
    db: str | None = None,
    postgres: bool = False,
    access_log: bool = False,
    work: Path | None = None,
    client: str = "stdlib",
) -> dict[str, object]:
    """One run on a new database (SQLite in ``work``, or a scratch PostgreSQL one)."""
    folder = Path(tempfile.mkdtemp(prefix="bench-http-", dir=work))
    url = db or f"sqlite:///{folder / 'bench.db'}"
    scratch = None
    if postgres:
        scratch = url = scratch_pg_url("http")
        pg_create(url)
    try:
        return _run(url, patients, rounds, access_log, client)
    finally:
        if scratch is not None:
            pg_drop(scratch)


def http_benchmark(
    backends: Sequence[str], patients: int, rounds: int, work: Path, console: Console
) -> list[Measurement]:
    """The report's rows: authorization throughput over HTTP against in process, per backend."""
    out = []
    for backend in backends:
        label = "SQLite" if backend == "sqlite" else "PostgreSQL"
        with console.status(f"HTTP beside in process on {label}, {patients} prescriptions"):
            result = measure(patients, rounds, postgres=backend == "postgresql", work=work)
        out.append(
            Measurement(
                "Dispense authorization over HTTP",
                f"throughput, {label}, one keep-alive client",
                "authorizations/s",
                float(str(result["http_per_second"])),
                float(str(result["in_process_per_second"])),
                LIMIT_LABEL,
                True,
                (">=", GOAL),
                result,
            )
        )
    return out


CLIENTS = ("stdlib", "httpx")


class _Terminal:
    """One keep-alive connection that POSTs JSON and reads the whole answer."""

    def __init__(self, port: int, headers: dict[str, str], library: str) -> None:
        self.library = library
        self.headers = {**headers, "Content-Type": "application/json"}
        self.base = f"http://127.0.0.1:{port}"
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.httpx = httpx.Client(base_url=self.base, headers=headers, timeout=60)

    def wait_ready(self) -> None:
        for _ in range(600):
            try:
                self.httpx.get("/v1/health")
                return
            except httpx.TransportError:
                time.sleep(0.05)

    def post(self, path: str, body: dict[str, object]) -> int:
        if self.library == "httpx":
            return self.httpx.post(path, json=body).status_code
        self.conn.request("POST", path, json.dumps(body).encode(), self.headers)
        response = self.conn.getresponse()
        response.read()
        return response.status

    def authorize(self, prescription: str) -> None:
        status = self.post("/v1/authorizations", {"prescription": prescription})
        if status != 201:  # a refused request would be measured as a fast one
            raise RuntimeError(f"authorization of {prescription} answered {status}")

    def close(self) -> None:
        self.conn.close()
        self.httpx.close()


def _run(
    url: str, patients: int, rounds: int, access_log: bool, client: str = "stdlib"
) -> dict[str, object]:
    pepper = secrets.token_hex(32)
    env = {**os.environ, "COMPLIANCE_API_PEPPER": pepper}
    env.pop("COMPLIANCE_ACTOR", None)
    with Compliance.open(url) as app:
        admin, rph, prescriptions = _ready(app, patients)
        pharmacy = app.get_person(admin, rph).pharmacy
        assert pharmacy is not None
        key = app.add_client(
            admin, "Bench terminal", "pharmacy-terminal", pharmacy, pepper=pepper.encode()
        ).key
        port = _free_port()
        command = [sys.executable, "-m", "compliance", "--db", url, "serve", "--port", str(port)]
        if not access_log:
            command.append("--no-access-log")
        server = subprocess.Popen(  # noqa: S603 - our own command line
            command,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            headers = {"Authorization": f"Bearer {key}", "X-Acting-Person": rph}
            terminal = _Terminal(port, headers, client)
            try:
                terminal.wait_ready()
                half = len(prescriptions) // 2
                over_http, in_process = prescriptions[:half], prescriptions[half:]
                per = max(1, half // rounds)
                http_time = local_time = 0.0
                done_http = done_local = 0
                for r in range(rounds):
                    batch_h = over_http[r * per : (r + 1) * per]
                    batch_l = in_process[r * per : (r + 1) * per]

                    def post(rx: str) -> Callable[[], object]:
                        return lambda: terminal.authorize(rx)

                    def local(rx: str) -> Callable[[], object]:
                        return lambda: app.request_authorization(rph, rx)

                    http_time += _timed([post(rx) for rx in batch_h])
                    local_time += _timed([local(rx) for rx in batch_l])
                    done_http += len(batch_h)
                    done_local += len(batch_l)
            finally:
                terminal.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    http_rate, local_rate = done_http / http_time, done_local / local_time
    ratio = http_rate / local_rate
    return {
        "database": url.split(":", 1)[0],
        "access_log": access_log,
        "client": client,
        "authorizations_per_kind": done_http,
        "http_per_second": round(http_rate, 1),
        "in_process_per_second": round(local_rate, 1),
        "ratio": round(ratio, 3),
        "goal": f">= {GOAL}",
        "met": ratio >= GOAL,
    }


if __name__ == "__main__":
    raise SystemExit(main())
