"""The E.164 fast path of the import gives what the full phonenumbers parser gives."""

from __future__ import annotations

import phonenumbers
from hypothesis import given, settings
from hypothesis import strategies as st

from audiences.fields import RowError, clean_phone

CODES = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)


def by_parser(text: str) -> str | None:
    """The slow path alone: parse, refuse what is not possible, format as E.164."""
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        return None
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason != phonenumbers.ValidationResult.IS_POSSIBLE:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def cleaned(text: str) -> str | None:
    try:
        return clean_phone(text, None)
    except RowError:
        return None


@settings(max_examples=3000, deadline=None)
@given(code=st.sampled_from(CODES), national=st.integers(1, 10**14 - 1))
def test_e164_fast_path_agrees_with_the_parser(code: int, national: int) -> None:
    text = f"+{code}{national}"
    assert cleaned(text) == by_parser(text)


@settings(max_examples=500, deadline=None)
@given(code=st.sampled_from(CODES), digits=st.integers(1, 14))
def test_every_length_of_every_code(code: int, digits: int) -> None:
    for national in (10 ** (digits - 1), 10**digits - 1, 5 * 10 ** (digits - 1) + 7):
        text = f"+{code}{national}"
        assert cleaned(text) == by_parser(text)


def test_leading_zero_and_national_numbers_take_the_parser() -> None:
    assert cleaned("+390612345678") == by_parser("+390612345678")  # Rome: the zero stays
    assert clean_phone("0151 12345678", "DE") == "+4915112345678"
