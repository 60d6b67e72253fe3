"""Jinja for marketers: sandbox, strict undefined, escaping, locale-aware filters."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from jinja2 import UndefinedError
from jinja2.exceptions import SecurityError

from templating.errors import TemplateError
from templating.jinja import check_syntax, compile_template, error_line


def render(source: str, html: bool = False, **ctx: object) -> str:
    return compile_template(source, name="t", html=html).render(**ctx)


def test_html_autoescapes_and_text_does_not() -> None:
    contact = {"first_name": "<Ann & Bob>"}
    assert render("{{ contact.first_name }}", html=True, contact=contact) == \
        "&lt;Ann &amp; Bob&gt;"
    assert render("{{ contact.first_name }}", html=False, contact=contact) == "<Ann & Bob>"


def test_missing_value_is_an_error_unless_defaulted() -> None:
    source = "line one\n{{ contact.first_name | default('friend') }}\n{{ contact.nickname }}"
    template = compile_template(source, name="strict.html", html=True)
    with pytest.raises(UndefinedError) as caught:
        template.render(contact={})
    assert error_line(caught.value, "strict.html") == 3
    assert render("{{ contact.nickname | default('friend') }}", contact={}) == "friend"


def test_sandbox_refuses_unsafe_attributes() -> None:
    with pytest.raises(SecurityError):
        render("{{ contact.__class__.__mro__[1].__subclasses__() }}", contact={})


def test_syntax_error_names_the_line() -> None:
    with pytest.raises(TemplateError) as caught:
        check_syntax("ok\nok\n{% if x %}never closed", name="s.mjml", html=True)
    assert (caught.value.code, caught.value.line) == ("T301", 3)
    with pytest.raises(TemplateError) as unknown_filter:
        check_syntax("\n{{ x | no_such_filter }}", name="s.mjml", html=True)
    assert unknown_filter.value.line == 2


@pytest.mark.parametrize(
    ("locale", "expected"),
    [("de_DE", "1.234,50\xa0€"), ("en-US", "€1,234.50"), (None, "€1,234.50"),
     ("xx_bogus", "€1,234.50")],
)
def test_currency_follows_the_contact_locale(locale: str | None, expected: str) -> None:
    assert render("{{ 1234.5 | currency('EUR') }}", contact={"locale": locale}) == expected


def test_currency_defaults_to_the_contact_currency() -> None:
    contact = {"locale": "en_GB", "currency": "gbp"}
    assert render("{{ '19.9' | currency }}", contact=contact) == "£19.90"


def test_number_and_percent() -> None:
    assert render("{{ 1234.5 | number }}", contact={"locale": "fr_FR"}) == "1\u202f234,5"
    assert render("{{ 1234.5 | number(2) }}", contact={"locale": "en_US"}) == "1,234.50"
    assert render("{{ 0.256 | percent }}", contact={"locale": "en_US"}) == "26%"


def test_dates_use_the_contact_timezone_and_locale() -> None:
    moment = datetime(2024, 1, 1, 23, 30, tzinfo=UTC)  # already Jan 2 in Paris
    paris = {"locale": "de_DE", "timezone": "Europe/Paris"}
    assert render("{{ when | date }}", contact=paris, when=moment) == "02.01.2024"
    assert render("{{ when | date('long') }}", contact={"locale": "fr_FR"},
                  when=date(2024, 1, 2)) == "2 janvier 2024"
    assert render("{{ when | datetime('%Y-%m-%d %H:%M') }}", contact=paris,
                  when="2024-01-01T23:30:00Z") == "2024-01-02 00:30"
    assert render("{{ when | time }}", contact={"locale": "de_DE", "timezone": "Asia/Tokyo"},
                  when=moment) == "08:30"
    # Unknown time zone: left in UTC rather than failing the send.
    assert render("{{ when | date('%d') }}", contact={"timezone": "Mars/Base"},
                  when=moment) == "01"


def test_title_and_first_word() -> None:
    assert render("{{ 'ann smith' | title }} {{ 'ann smith' | first_word }}") == "Ann Smith ann"


@pytest.mark.parametrize("locale", ["en_US", "de_DE", "fr_FR", "es_ES", "hi_IN", "de_CH", "ar_EG"])
def test_number_fast_path_matches_babel(locale: str) -> None:
    from babel.numbers import format_decimal

    for value in (0, 7, 999, 1000, 1234, -12345, 1234567, 10**12):
        assert render("{{ n | number }}", contact={"locale": locale}, n=value) == \
            format_decimal(value, locale=locale)
