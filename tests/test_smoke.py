from __future__ import annotations

from tests.conftest import World


def test_world_builds_and_audit_verifies(world: World) -> None:
    report = world.app.verify_audit(world.admin.id)
    assert report.ok, report.first_break
    assert report.events == 8
