"""Jinja2 for marketers: sandboxed, strict about missing values, locale-aware filters.

Two environments: ``html_env`` autoescapes (email bodies), ``text_env`` does not (subjects,
text parts, SMS). Both use ``StrictUndefined`` so a value a contact lacks is an error unless
the template says ``| default(...)``. Compiled templates are cached by source, so loading the
same template for every batch costs nothing after the first time.

The formatting filters read the contact's ``locale`` and ``timezone`` from the render context,
so ``{{ order.total | currency('EUR') }}`` prints ``1.234,50 €`` for a German contact and
``€1,234.50`` for an American one.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel import dates as babel_dates
from babel import numbers as babel_numbers
from jinja2 import StrictUndefined, Template, TemplateSyntaxError, pass_context
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from templating.errors import TemplateError

DEFAULT_LOCALE = "en_US"


@lru_cache(maxsize=512)
def _locale(code: str | None) -> Locale:
    if code:
        try:
            return Locale.parse(str(code).replace("-", "_"))
        except (UnknownLocaleError, ValueError, TypeError):
            pass
    return Locale.parse(DEFAULT_LOCALE)


@lru_cache(maxsize=512)
def _zone(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _contact_of(ctx: Context) -> Mapping[str, Any]:
    contact = ctx.get("contact")
    return contact if isinstance(contact, Mapping) else {}


def _as_datetime(value: Any) -> datetime | date:
    if isinstance(value, datetime | date):
        return value
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        try:
            return datetime.fromisoformat(text) if "T" in text or " " in text or ":" in text \
                else date.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(f"not a date or time: {value!r}") from exc
    raise ValueError(f"not a date or time: {value!r}")


def _in_contact_zone(ctx: Context, value: datetime) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    zone = _zone(_contact_of(ctx).get("timezone"))
    return value.astimezone(zone) if zone is not None else value


@pass_context
def filter_date(ctx: Context, value: Any, format: str = "medium") -> str:
    """A date in the contact's locale: ``short``/``medium``/``long``/``full``, a CLDR pattern
    (``d MMM y``) or an strftime pattern (anything with ``%``)."""
    moment = _as_datetime(value)
    if isinstance(moment, datetime):
        moment = _in_contact_zone(ctx, moment)
    if "%" in format:
        return moment.strftime(format)
    day = moment.date() if isinstance(moment, datetime) else moment
    return babel_dates.format_date(day, format, locale=_locale(_contact_of(ctx).get("locale")))


@pass_context
def filter_datetime(ctx: Context, value: Any, format: str = "medium") -> str:
    """A date and time in the contact's locale and time zone (see ``date`` for formats)."""
    moment = _as_datetime(value)
    if not isinstance(moment, datetime):
        moment = datetime.combine(moment, time(0))
    moment = _in_contact_zone(ctx, moment)
    if "%" in format:
        return moment.strftime(format)
    return babel_dates.format_datetime(
        moment, format, tzinfo=moment.tzinfo, locale=_locale(_contact_of(ctx).get("locale"))
    )


@pass_context
def filter_time(ctx: Context, value: Any, format: str = "short") -> str:
    """A time of day in the contact's locale and time zone."""
    moment = _as_datetime(value)
    if not isinstance(moment, datetime):
        raise ValueError(f"not a time: {value!r}")
    moment = _in_contact_zone(ctx, moment)
    if "%" in format:
        return moment.strftime(format)
    return babel_dates.format_time(
        moment, format, tzinfo=moment.tzinfo, locale=_locale(_contact_of(ctx).get("locale"))
    )


def _number(value: Any) -> Decimal | int | float:
    if isinstance(value, int | float | Decimal):
        return value
    return Decimal(str(value).strip())


# Babel formatting costs ~50-100 µs a call; marketers format the same few values (prices,
# dates of the campaign) for every contact, so results are memoised per locale.
@lru_cache(maxsize=8192)
def _fmt_decimal(number: Decimal | int | float, decimals: int | None, locale: str) -> str:
    if decimals is None:
        return babel_numbers.format_decimal(number, locale=_locale(locale))
    pattern = "#,##0" + ("." + "0" * decimals if decimals > 0 else "")
    return babel_numbers.format_decimal(number, format=pattern, locale=_locale(locale))


@lru_cache(maxsize=8192)
def _fmt_currency(number: Decimal | int | float, code: str, locale: str) -> str:
    return babel_numbers.format_currency(number, code, locale=_locale(locale))


@lru_cache(maxsize=4096)
def _fmt_percent(number: Decimal | int | float, decimals: int, locale: str) -> str:
    pattern = "#,##0" + ("." + "0" * decimals if decimals > 0 else "") + "%"
    return babel_numbers.format_percent(number, format=pattern, locale=_locale(locale))


def _locale_key(ctx: Context) -> str:
    return str(_contact_of(ctx).get("locale") or DEFAULT_LOCALE)


@lru_cache(maxsize=512)
def _int_grouping(locale: str) -> str | None:
    """The group separator when plain ``{:,}`` grouping matches Babel for this locale.

    Integers that differ per contact (points, order counts) miss the memo; for them a
    str.format with the locale's separator is ~50x faster. It is used only for locales where
    it was checked to give Babel's own output (not e.g. es, which leaves 1234 ungrouped).
    """
    group = babel_numbers.get_group_symbol(_locale(locale))
    if "," in group:
        return None
    for probe in (7, 1234, -12345, 1234567, 123456789):
        if f"{probe:,}".replace(",", group) != _fmt_decimal(probe, None, locale):
            return None
    return group


@pass_context
def filter_number(ctx: Context, value: Any, decimals: int | None = None) -> str:
    """A number with the contact's grouping and decimal separators (``1 234,5`` in fr)."""
    locale = _locale_key(ctx)
    if decimals is None and type(value) is int:
        group = _int_grouping(locale)
        if group is not None:
            return f"{value:,}".replace(",", group)
    return _fmt_decimal(_number(value), decimals, locale)


@pass_context
def filter_currency(ctx: Context, value: Any, currency: str | None = None) -> str:
    """An amount of money in the contact's locale; the currency defaults to the contact's
    ``currency`` attribute, then USD."""
    code = currency or _contact_of(ctx).get("currency") or "USD"
    return _fmt_currency(_number(value), str(code).upper(), _locale_key(ctx))


@pass_context
def filter_percent(ctx: Context, value: Any, decimals: int = 0) -> str:
    """``0.256 | percent`` → ``26%`` (locale-aware)."""
    return _fmt_percent(_number(value), decimals, _locale_key(ctx))


def filter_first_word(value: Any) -> str:
    """The first word of a string (``{{ contact.name | first_word }}``)."""
    parts = str(value).split()
    return parts[0] if parts else ""


FILTERS = {
    "date": filter_date,
    "datetime": filter_datetime,
    "time": filter_time,
    "number": filter_number,
    "currency": filter_currency,
    "percent": filter_percent,
    "first_word": filter_first_word,
}


def _make_env(autoescape: bool) -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        autoescape=autoescape, undefined=StrictUndefined, keep_trailing_newline=True,
        auto_reload=False, cache_size=0,
    )
    env.filters.update(FILTERS)
    return env


html_env = _make_env(True)
text_env = _make_env(False)
_compiled: dict[tuple[bool, str, str], Template] = {}


def compile_template(source: str, *, name: str, html: bool) -> Template:
    """Compile once (cached by environment, name and source); syntax errors raise T301."""
    key = (html, name, source)
    template = _compiled.get(key)
    if template is None:
        env = html_env if html else text_env
        try:
            code = env.compile(source, name=name, filename=name)
        except TemplateSyntaxError as exc:
            raise TemplateError("T301", f"template syntax error: {exc.message}", name,
                                exc.lineno, "check the {{ }} and {% %} tags on this line") \
                from exc
        # A plain dict of the globals, not the ChainMap Jinja builds: every render copies them
        # into its context, and copying a ChainMap walks it in Python.
        template = env.template_class.from_code(env, code, dict(env.make_globals(None)), None)
        _compiled[key] = template
    return template


def check_syntax(source: str, *, name: str, html: bool) -> None:
    """Raise T301 with the line of a Jinja syntax error (or unknown filter) in ``source``."""
    env = html_env if html else text_env
    try:
        env.compile(source, name=name, filename=name, raw=True)
    except TemplateSyntaxError as exc:
        raise TemplateError("T301", f"template syntax error: {exc.message}", name,
                            exc.lineno, "check the {{ }} and {% %} tags on this line") from exc


def error_line(exc: BaseException, name: str) -> int | None:
    """The line of template ``name`` where a render error happened (Jinja maps frames)."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == name:
            line = frame.lineno
    return line


_UNDEFINED_NAME = re.compile(r"'([^']+)' is undefined|has no attribute '([^']+)'")


def undefined_name(exc: BaseException) -> str | None:
    """The missing variable or attribute named by an ``UndefinedError``."""
    match = _UNDEFINED_NAME.search(str(exc))
    if match is None:
        return None
    return match.group(1) or match.group(2)
