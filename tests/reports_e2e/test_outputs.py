"""`reach report` through the real CLI: JSON, CSV, terminal table and HTML file."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from reports.export import COLUMNS


@pytest.fixture
def cli(spring: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from reach.cli import app

    monkeypatch.setenv("REACH_DATABASE_URL", db_url)
    monkeypatch.delenv("REACH_NOW", raising=False)
    runner = CliRunner()

    def invoke(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(app, ["--project", str(tmp_path), "report", *args],
                             catch_exceptions=False)

    return invoke


def test_json_gives_exact_figures(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("spring", "--json")
    assert result.exit_code == 0, result.output
    r = json.loads(result.output)
    assert (r["sent"], r["delivered"], r["conversions"], r["revenue"]) == (388, 380, 20, 990.0)
    assert (r["cost"], r["roi"], r["roas"], r["cpa"]) == (119.4, 7.291457, 8.291457, 5.97)
    assert [v["variant"] for v in r["variants"]] == ["a", "b"]
    assert r["decision"]["winner"] == "a" and r["holdout"]["holdout_contacts"] == 20


def test_window_and_basis_options_change_attribution(cli) -> None:  # type: ignore[no-untyped-def]
    # Clicks only: 100 (never clicked, credited by delivery) drops out, and 206 comes back
    # (the other campaign's delivery is no longer a touch): 20 conversions, 990 − 30 + 60.
    r = json.loads(cli("spring", "--json", "--attribution", "click").output)
    assert (r["conversions"], r["revenue"]) == (20, 1020.0)
    # One day from the last touch: only the T0 + 1 d purchases of 1–10 (clicked at T0 + 2 h)
    # and 207 (clicked again at T0 + 1 d 2 h) remain.
    r = json.loads(cli("spring", "--json", "--window", "1d").output)
    assert (r["conversions"], r["revenue"]) == (11, 520.0)


def test_bad_basis_is_a_user_error(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("spring", "--attribution", "first_touch")
    assert result.exit_code == 1 and "K103" in result.output


def test_unknown_name_is_a_user_error(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("nope")
    assert result.exit_code == 1 and "R202" in result.output


def test_csv_has_one_row_per_level(cli, out_dir: Path) -> None:  # type: ignore[no-untyped-def]
    path = out_dir / "r.csv"
    assert cli("--csv", str(path)).exit_code == 0
    table = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert tuple(table[0]) == COLUMNS
    levels = [(r["level"], r["name"], r["variant"]) for r in table]
    assert levels == [("campaign", "other", ""), ("campaign", "spring", ""),
                      ("variant", "spring", "a"), ("variant", "spring", "b")]
    spring = table[1]
    assert (spring["sent"], spring["conversions"], spring["revenue"], spring["roi"]) == (
        "388", "20", "990.0", "7.291457")
    assert spring["decision_winner"] == "a"
    assert float(table[2]["click_ci_low"]) < 20 / 190 < float(table[2]["click_ci_high"])


def test_terminal_table_shows_human_and_total(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("spring")
    assert result.exit_code == 0
    assert "100 (130 all)" in result.output  # unique opens: human, then with machine ones
    assert "A/B:" in result.output and "holdout:" in result.output


def test_html_file_is_self_contained(cli, out_dir: Path) -> None:  # type: ignore[no-untyped-def]
    path = out_dir / "r.html"
    assert cli("spring", "--html", str(path)).exit_code == 0
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and "<svg" in page
    for banned in ("<script", "<link", "http://", "https://", "@import", "url("):
        assert banned not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "Engagement per hour since send" in page  # --html adds the timeline
