"""A whole project in tmp_path, driven through the real CLI with REACH_NOW."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from reach.cli import app, journey_cmds

if not any(c.name == "tick" for c in app.registered_commands):
    journey_cmds.register(app)

SECRET = "journey-test-secret-0123456789abcdef"
MJML = """<mjml><mj-body><mj-section><mj-column>
<mj-text>Hi {{ contact.first_name | default('there') }}, TEXT</mj-text>
<mj-button href="https://acme.test/go">Go</mj-button>
</mj-column></mj-section></mj-body></mjml>
"""
SEGMENTS = {
    "trials": "segment: trials\nconditions:\n  - {attribute: plan, eq: trial}\n",
    "everyone": "segment: everyone\nconditions: []\n",
}
CONTACTS = [
    {"email": "ada@example.com", "first_name": "Ada", "plan": "trial",
     "timezone": "Europe/London", "phone": "+447700900001"},
    {"email": "bob@example.com", "first_name": "Bob", "plan": "trial",
     "timezone": "America/New_York", "phone": "+12125550002"},
    {"email": "cy@example.com", "first_name": "Cy", "plan": "pro",
     "timezone": "Asia/Tokyo", "phone": "+81300000003"},
]


@dataclass
class Project:
    root: Path
    db_url: str

    def write(self, rel: str, text: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    def journey(self, text: str, name: str = "j") -> Path:
        return self.write(f"journeys/{name}.yaml", text)

    def cli(self, *args: str, now: str | None = None, ok: bool = True,
            env: dict[str, str] | None = None) -> Any:
        extra = {"REACH_NOW": now} if now else {}
        result = CliRunner().invoke(app, ["--project", str(self.root), *args],
                                    env={**extra, **(env or {})}, catch_exceptions=False)
        if ok and result.exit_code != 0:
            raise AssertionError(f"reach {' '.join(args)} exited {result.exit_code}:\n"
                                 f"{result.output}")
        return result

    def run(self, name: str = "j", now: str | None = None) -> dict[str, Any]:
        """One tick of a journey through `reach run NAME --json`."""
        out = self.cli("run", name, "--json", now=now).stdout
        return json.loads(out.strip().splitlines()[-1])

    def import_contacts(self, rows: list[dict[str, Any]], now: str) -> None:
        path = self.root / "contacts.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        self.cli("contacts", "import", str(path), now=now)

    def events(self, rows: list[dict[str, Any]], now: str) -> None:
        path = self.root / "events-in.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        self.cli("events", "import", str(path), now=now)

    def engine(self) -> Engine:
        from reach.db import connect

        return connect(self.db_url)

    def rows(self, query: Any) -> list[Any]:
        with self.engine().connect() as conn:
            return list(conn.execute(query).mappings())

    def states(self) -> dict[str, dict[str, Any]]:
        from reach.db.schema import contacts, journey_states

        q = select(journey_states, contacts.c.email).join(
            contacts, contacts.c.id == journey_states.c.contact_id)
        return {r["email"]: dict(r) for r in self.rows(q)}

    def sent(self, name: str = "j") -> list[tuple[str, str, str | None, str]]:
        """(email, step, variant, status) of every ledger row of the journey, in order."""
        from reach.db.schema import contacts, messages

        q = (select(contacts.c.email, messages.c.step_id, messages.c.variant,
                    messages.c.status, messages.c.channel)
             .join(contacts, contacts.c.id == messages.c.contact_id)
             .where(messages.c.source_name == name).order_by(messages.c.id))
        return [(r["email"], r["step_id"], r["variant"], r["status"]) for r in self.rows(q)]


@pytest.fixture(autouse=True)
def _mjml_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REACH_MJML_CACHE", str(tmp_path / "mjml-cache"))
    monkeypatch.delenv("REACH_NOW", raising=False)


@pytest.fixture
def project(tmp_path: Path, db_url: str) -> Iterator[Project]:
    root = tmp_path / "proj"
    p = Project(root=root, db_url=db_url)
    p.write("reach.toml", f'secret_key = "{SECRET}"\ndatabase_url = "{db_url}"\n'
            'physical_address = "Acme, 1 Road, Springfield"\n')
    for name, text in SEGMENTS.items():
        p.write(f"segments/{name}.yaml", text)
    for name in ("welcome", "tips", "nudge", "last"):
        p.write(f"templates/{name}.mjml", MJML.replace("TEXT", name))
    p.write("templates/hello.sms", "Hi {{ contact.first_name }}, hello from Acme")
    yield p
    from reach.db.engine import dispose_all

    dispose_all()
