"""Storage: the schema, the engine and migrations."""

from reach.db.engine import connect, make_engine, migrate

__all__ = ["connect", "make_engine", "migrate"]
