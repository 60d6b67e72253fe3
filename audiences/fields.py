"""Turning one input record (a CSV row or a JSON object) into contact columns.

Typed columns are validated, never silently nulled: a bad value raises :class:`RowError`
with the reason, and the importer reports the row as rejected. Everything else goes into
the JSON ``attributes``. CSV text is typed conservatively (see :func:`parse_csv_value`).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

from audiences.consent import STATUSES
from reach import clock

try:  # email-validator gives precise reasons; fall back to a strict-enough pattern
    from email_validator import EmailNotValidError, validate_email
except ImportError:  # pragma: no cover - exercised only where the package is missing
    validate_email = None  # type: ignore[assignment]
    EmailNotValidError = ValueError  # type: ignore[assignment,misc]

TEXT_LIMITS = {"first_name": 255, "last_name": 255, "locale": 35, "external_id": 255}
TYPED = ("email", "phone", "first_name", "last_name", "country", "timezone", "locale",
         "created_at", "external_id")
STATUS_FIELDS = ("email_status", "sms_status")
# Columns the importer never takes from input.
RESERVED = ("id", "attributes", "updated_at", "erased_at")

_INT = re.compile(r"^-?(0|[1-9]\d{0,17})$")  # no leading zeros: "01234" is a code, not 1234
_FLOAT = re.compile(r"^-?(0|[1-9]\d*)\.\d+([eE][-+]?\d+)?$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# The common case, checked in a microsecond: an ASCII dot-atom local part and a domain of
# LDH labels ending in an alphabetic TLD. Anything else goes to email-validator.
_PLAIN_EMAIL = re.compile(
    r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"
)
_RESERVED_TLDS = (".invalid", ".local", ".localhost", ".onion", ".arpa")
_COUNTRY = re.compile(r"^[A-Za-z]{2}$")


class RowError(ValueError):
    """Why one input row cannot be imported."""


def parse_csv_value(text: str) -> Any:
    """CSV text to a JSON value: integers and decimals without leading zeros become
    numbers, ``true``/``false`` (any case) booleans, ISO times are normalised to UTC
    (``2026-03-01T09:00:00+00:00``), ISO dates kept; everything else stays a string."""
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text):
        return float(text)
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    return normalise_time_text(text)


def normalise_time_text(text: str) -> str:
    """ISO date-times to UTC ISO text with seconds (so they compare as text); others as is."""
    if _ISO_TIME.match(text) and not _ISO_DATE.match(text):
        try:
            return clock.parse_instant(text).isoformat(timespec="seconds")
        except clock.ClockError:
            return text
    return text


def clean_email(value: Any) -> str:
    """A lower-cased, syntactically valid address."""
    text = str(value).strip().lower()
    if len(text) <= 254 and _PLAIN_EMAIL.match(text) and len(text.split("@")[0]) <= 64:
        if text.endswith(_RESERVED_TLDS):
            raise RowError(f"invalid email {text!r}: a reserved domain that cannot receive mail")
        return text
    if validate_email is not None:
        try:
            # test_environment: *.test domains are what demos and staging lists use.
            validate_email(text, check_deliverability=False, test_environment=True)
        except EmailNotValidError as exc:
            raise RowError(f"invalid email {text!r}: {exc}") from None
    elif not _EMAIL.match(text) or len(text) > 320:
        raise RowError(f"invalid email {text!r}")
    return text


def _possible(number: phonenumbers.PhoneNumber) -> bool:
    # Not "possible only locally" (a number that needs an area code to be dialled).
    reason = phonenumbers.is_possible_number_with_reason(number)
    return bool(reason == phonenumbers.ValidationResult.IS_POSSIBLE)


@lru_cache(maxsize=4096)
def _possible_length(code: int, digits: int) -> bool:
    """Whether a national number of ``digits`` digits (no leading zero) is possible under
    country ``code``: phonenumbers decides that by the length alone (its possible lengths
    of the code's main region), so one answer per (code, length) serves every row."""
    shortest = 10 ** (digits - 1)
    return _possible(phonenumbers.PhoneNumber(country_code=code, national_number=shortest))


_E164 = re.compile(r"^\+([1-9]\d{6,14})$")


def _fast_e164(text: str) -> str | None:
    """``text`` if it is already a possible E.164 number (a 2 µs check instead of a 25 µs
    parse); None when the full parser must decide."""
    match = _E164.match(text)
    if not match:
        return None
    digits = match.group(1)
    for size in (1, 2, 3):
        code = int(digits[:size])
        if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            national = digits[size:]
            if national.startswith("0"):  # Italian-style leading zeros: let the parser judge
                return None
            return text if national and _possible_length(code, len(national)) else None
    return None


def clean_phone(value: Any, country: str | None) -> str:
    """E.164, reading national numbers in the row's country."""
    text = str(value).strip()
    fast = _fast_e164(text)
    if fast is not None:
        return fast
    try:
        number = phonenumbers.parse(text, country)
    except phonenumbers.NumberParseException as exc:
        raise RowError(f"invalid phone {text!r}: {exc}") from None
    # is_possible (length and shape) rather than is_valid: reserved test ranges such as
    # +1 555 01xx are refused by is_valid but are what demos and test lists use.
    if not _possible(number):
        raise RowError(f"invalid phone {text!r}: not a possible number"
                       + ("" if country else " (add a country column for national numbers)"))
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@lru_cache(maxsize=1024)
def _zone_ok(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def clean_created_at(value: Any) -> datetime:
    if isinstance(value, datetime):
        return clock.as_utc(value)  # type: ignore[return-value]
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    try:
        return clock.parse_instant(str(value))
    except clock.ClockError:
        raise RowError(f"invalid created_at {value!r}: use an ISO date such as 2026-03-01"
                       ) from None


def clean_record(record: dict[str, Any], from_csv: bool) -> tuple[dict[str, Any], dict[str, str]]:
    """(contact columns incl. ``attributes``, statuses by channel) of one input record.

    Empty values are skipped: an import never clears a field it was not given.
    """
    cols: dict[str, Any] = {}
    attrs: dict[str, Any] = {}
    statuses: dict[str, str] = {}
    for raw_key, value in record.items():
        key = (raw_key or "").strip()
        if not key:
            if value not in (None, "", []):
                raise RowError("a value without a column name (more fields than headers?)")
            continue
        if value is None or (isinstance(value, str) and value.strip() == ""):
            continue
        if isinstance(value, str):
            value = value.strip()
        if key in RESERVED:
            if key == "id":  # an export's own ids: informative, never written back
                continue
            if key == "attributes" and isinstance(value, dict):
                attrs.update(value)
                continue
            raise RowError(f"column {key!r} cannot be imported")
        if key in STATUS_FIELDS:
            status = str(value).lower()
            if status not in STATUSES:
                raise RowError(f"invalid {key} {value!r}: use one of {', '.join(STATUSES)}")
            statuses[key.split("_")[0]] = status
        elif key in TYPED:
            cols[key] = value
        else:
            attrs[key] = parse_csv_value(value) if from_csv and isinstance(value, str) else value
    if "country" in cols:
        country = str(cols["country"])
        if not _COUNTRY.match(country):
            raise RowError(f"invalid country {country!r}: use a two-letter ISO code such as DE")
        cols["country"] = country.upper()
    if "email" in cols:
        cols["email"] = clean_email(cols["email"])
    if "phone" in cols:
        cols["phone"] = clean_phone(cols["phone"], cols.get("country"))
    if "timezone" in cols and not _zone_ok(str(cols["timezone"])):
        raise RowError(f"invalid timezone {cols['timezone']!r}: use an IANA name such as "
                       "Europe/Berlin")
    if "created_at" in cols:
        cols["created_at"] = clean_created_at(cols["created_at"])
    for key, limit in TEXT_LIMITS.items():
        if key in cols:
            cols[key] = str(cols[key])
            if len(cols[key]) > limit:
                raise RowError(f"{key} is longer than {limit} characters")
    if "email" not in cols and "external_id" not in cols:
        raise RowError("a contact needs an email or an external_id")
    cols["attributes"] = attrs
    return cols, statuses
