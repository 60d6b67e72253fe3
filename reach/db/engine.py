"""Engines and migrations.

``reach`` migrates the database on first use: every command that touches storage goes
through :func:`connect`, which runs Alembic's ``upgrade head`` once per database per process.
"""

from __future__ import annotations

import threading
from pathlib import Path

import orjson
from sqlalchemy import Engine, create_engine, event, inspect

from reach.errors import ReachError

_MIGRATIONS = Path(__file__).parent / "migrations"
_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def make_engine(url: str) -> Engine:
    """An engine tuned for Reach: SQLite in WAL mode with a busy timeout, PostgreSQL pooled."""
    # orjson parses the JSON attributes of every contact a send streams, 2-3x faster than
    # the standard library (reading attributes was the cost of streaming an audience).
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                               json_deserializer=orjson.loads)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            # WAL lets the tracking server write while a send or report reads.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10,
                           json_deserializer=orjson.loads)

    @event.listens_for(engine, "connect")
    def _pg_session(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        # PostgreSQL's JIT compiles any statement whose estimated cost passes jit_above_cost:
        # the report's attribution query spent 0.99 s of its 1.31 s compiling (EXPLAIN
        # ANALYZE, 1M messages), and no Reach statement runs long enough to win it back.
        cur = dbapi_conn.cursor()
        cur.execute("SET jit = off")
        cur.close()
        dbapi_conn.commit()  # psycopg opened a transaction for the SET: end it

    return engine


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def connect(url: str) -> Engine:
    """The engine for ``url``, its schema migrated; one engine (and pool) per URL per process."""
    try:
        with _lock:
            engine = _engines.get(url)
            if engine is None:
                engine = make_engine(url)
                migrate(engine)
                _engines[url] = engine
    except ReachError:
        raise
    except Exception as exc:  # driver errors vary; the user needs the URL and the cause
        raise ReachError(
            "D401",
            f"cannot open the database {_redact(url)}: {exc.__class__.__name__}: {exc}".strip(),
            hint="check database_url in reach.toml or REACH_DATABASE_URL",
        ) from exc
    return engine


def dispose_all() -> None:
    """Close every pooled connection (tests, and before a process forks workers)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def table_names(engine: Engine) -> list[str]:
    return inspect(engine).get_table_names()


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url
