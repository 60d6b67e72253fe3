"""Fixtures of the templating tests: settings with a key, a private MJML cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from reach.settings import Settings

SECRET = "test-secret-key-0123456789abcdef"
DATA = Path(__file__).parent / "data"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        project_dir=tmp_path, secret_key=SECRET, tracking_base_url="https://t.acme.test",
        physical_address="Acme Ltd, 1 Road, Springfield", max_sms_segments=2,
    )


@pytest.fixture(autouse=True)
def mjml_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "mjml-cache"
    monkeypatch.setenv("REACH_MJML_CACHE", str(folder))
    return folder


def mjml_doc(body: str, head: str = "") -> str:
    """A whole MJML document around a column's content."""
    return (
        "<mjml>\n"
        f"  <mj-head>{head}</mj-head>\n"
        "  <mj-body>\n"
        "    <mj-section>\n"
        "      <mj-column>\n"
        f"{body}\n"
        "      </mj-column>\n"
        "    </mj-section>\n"
        "  </mj-body>\n"
        "</mjml>\n"
    )
