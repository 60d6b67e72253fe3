"""`reach init`: a working sample project with a fresh secret key."""

from __future__ import annotations

import csv
import json
import random
import secrets
import shutil
from datetime import timedelta
from pathlib import Path

from reach import clock

HERE = Path(__file__).parent
FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Margaret", "Linus", "Guido",
         "Frances", "Ken", "Radia", "John", "Katherine", "Tim", "Hedy", "Niklaus", "Sophie",
         "Jürgen", "Zoë", "Søren", "Chloé"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Hamilton", "Torvalds",
        "van Rossum", "Allen", "Thompson", "Perlman", "Backus", "Johnson", "Berners-Lee",
        "Lamarr", "Wirth", "Wilson", "Schmidhuber", "Müller"]
COUNTRIES = [("DE", "Europe/Berlin", "+49 30 1234{:04d}"),
             ("AT", "Europe/Vienna", "+43 1 5123{:04d}"),
             ("CH", "Europe/Zurich", "+41 44 668{:04d}"),
             ("GB", "Europe/London", "+44 20 7946{:04d}"),
             ("US", "America/New_York", "+1 212 555 {:04d}"),
             ("FR", "Europe/Paris", "+33 1 4268{:04d}")]
PLANS = ["free", "trial", "pro", "pro", "team"]


class InitError(Exception):
    pass


def write_project(target: Path, *, contacts: int = 200, seed: int = 7,
                  tracking_base_url: str | None = None) -> Path:
    """Copy the sample files into ``target`` and generate contacts, events and reach.toml."""
    target.mkdir(parents=True, exist_ok=True)
    if (target / "reach.toml").exists():
        raise InitError(f"{target} already has a reach.toml; choose an empty folder")
    for sub in ("segments", "campaigns", "journeys", "templates"):
        shutil.copytree(HERE / sub, target / sub, dirs_exist_ok=True)
    lines = [
        "# Reach settings; every value can be overridden with REACH_<NAME> variables.",
        f'secret_key = "{secrets.token_urlsafe(32)}"',
        f'api_key = "{secrets.token_urlsafe(24)}"',
        'database_url = "sqlite:///reach.db"',
        'email_transport = "outbox"',
        'sms_transport = "outbox"',
        f'tracking_base_url = "{tracking_base_url or "http://127.0.0.1:8787"}"',
        'physical_address = "Acme Inc., 1 Example Street, Springfield"',
    ]
    (target / "reach.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _write_contacts(target / "contacts.csv", contacts, seed)
    _write_events(target / "events.jsonl", contacts, seed)
    (target / ".gitignore").write_text("reach.db*\noutbox/\n.reach-spool\n", encoding="utf-8")
    return target


def _people(count: int, seed: int) -> list[list[str]]:
    """Deterministic sample contacts: the same seed gives the same list."""
    rng = random.Random(seed)
    now = clock.now()
    rows = []
    for i in range(count):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        country, tz, phone = rng.choice(COUNTRIES)
        created = now - timedelta(days=rng.randint(0, 400), hours=rng.randint(0, 23))
        plan = "trial" if created > now - timedelta(days=14) else rng.choice(PLANS)
        handle = f"{first}.{last}".lower().replace(" ", "")
        handle = handle.encode("ascii", "ignore").decode()
        rows.append([f"{handle}.{i}@example.com", first, last, country, tz,
                     phone.format(rng.randint(1000, 9999)), plan,
                     "true" if rng.random() < 0.1 else "false",
                     created.isoformat(timespec="seconds")])
    return rows


def _write_contacts(path: Path, count: int, seed: int) -> None:
    now = clock.now()
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["email", "first_name", "last_name", "country", "timezone", "phone",
                      "plan", "vip", "created_at"])
        out.writerows(_people(count, seed))
        # Two broken rows, so a new user sees how rejected rows are reported.
        out.writerow(["not-an-email", "Broken", "Row", "DE", "Europe/Berlin", "", "free",
                      "false", now.isoformat(timespec="seconds")])
        out.writerow(["bad.date@example.com", "Bad", "Date", "DE", "Europe/Berlin", "", "free",
                      "false", "yesterday-ish"])


def _write_events(path: Path, count: int, seed: int) -> None:
    """Purchases of the last 30 days, so behavioural segments have members."""
    rng = random.Random(seed + 1)
    emails = [row[0] for row in _people(count, seed)]
    now = clock.now()
    with path.open("w", encoding="utf-8") as fh:
        for n in range(count):
            at = now - timedelta(days=rng.randint(0, 29), minutes=rng.randint(0, 1440))
            event = {"id": f"seed-{n}", "contact": rng.choice(emails), "type": "purchase",
                     "occurred_at": at.isoformat(timespec="seconds"),
                     "properties": {"amount": round(rng.uniform(9, 199), 2)}}
            fh.write(json.dumps(event) + "\n")
