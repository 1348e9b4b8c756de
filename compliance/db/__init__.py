"""Persistence: typed models, engines, transactions and programmatic migrations."""
