"""Acceptance timelines for issue 11, written from shared/domain/workflows.md, rules.md and
reason-codes.md (never from the engine's code), replayed through the public ``Compliance`` API."""
