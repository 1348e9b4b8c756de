"""Property-based fuzzing of the whole OpenAPI description (schemathesis), bounded so the suite
stays fast: whatever the input, no 5xx, and every answer matches its declared media type and
schema. Each operation is called with a key that may use it, so the fuzz reaches the engine."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("fastapi")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import checks  # noqa: E402

from compliance.api import Compliance  # noqa: E402
from compliance.clock import FixedClock  # noqa: E402
from compliance.http import create_app  # noqa: E402
from tests.conftest import T0, build_world  # noqa: E402
from tests.test_http import PEPPER, serve, stop  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fuzzed(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    path = tmp_path_factory.mktemp("fuzz") / "compliance.db"
    shutil.copy(sqlite_template, path)
    with Compliance.open(f"sqlite:///{path}", FixedClock(T0)) as compliance:
        w = build_world(compliance)

        def key(kind: str, party: str) -> str:
            return compliance.add_client(w.admin.id, kind, kind, party, pepper=PEPPER).key

        headers = {
            "admin": {"Authorization": f"Bearer {key('administrator', w.admin.id)}"},
            "pharmacy": {
                "Authorization": f"Bearer {key('pharmacy-terminal', w.pharmacy.id)}",
                "X-Acting-Person": w.pharmacist.id,
            },
            "prescriber": {"Authorization": f"Bearer {key('prescriber-system', w.prescriber.id)}"},
        }
        server, thread, base = serve(create_app(compliance, pepper=PEPPER))
        try:
            yield {"base": base, "headers": headers}
        finally:
            stop(server, thread)


def _party(path: str) -> str:
    if path.startswith(("/v1/clients", "/v1/settings", "/v1/rules/")):
        return "admin"
    if path.startswith(("/v1/authorizations", "/v1/dispense-checks", "/fhir/")):
        return "pharmacy"
    return "prescriber"


OPERATION_CHECKS = [
    checks.not_a_server_error,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


def _fuzzer(operation: Any, headers: dict[str, str]) -> Any:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=6,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=OPERATION_CHECKS)

    return fuzz


def test_no_input_makes_the_service_fail(fuzzed: dict[str, Any]) -> None:
    # The schemathesis pytest plugin is not used: each operation's strategy runs under
    # hypothesis here, so the bound (examples per operation) is explicit.
    api = schemathesis.openapi.from_url(f"{fuzzed['base']}/v1/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) > 20
    for operation in operations:
        _fuzzer(operation, dict(fuzzed["headers"][_party(operation.path)]))()
