"""The ``compliance`` command: parse, call the public API, render. No SQL and no rules here."""
