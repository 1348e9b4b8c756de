"""The HTTP service (``pip install "compliance-ppp[http]"``, ``compliance serve``).

A thin FastAPI layer: every handler authenticates the caller, then makes one call to the public
API, so each request is one transaction and the engine's own rules, permissions and audit apply
exactly as they do in process. Nothing here decides a rule.
"""

from __future__ import annotations

from compliance.http.app import create_app

__all__ = ["create_app"]
