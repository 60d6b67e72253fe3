"""SMS: GSM-7 / UCS-2 and segment counting exactly per 3GPP TS 23.038."""

from __future__ import annotations

from pathlib import Path

import pytest

from reach.settings import Settings
from templating.errors import TemplateError
from templating.sms import SmsMeasure, SmsTemplate, measure

REFERENCE_VECTORS = [
    ("A" * 160, "GSM-7", 160, 1),
    ("A" * 161, "GSM-7", 161, 2),
    ("€" * 80, "GSM-7", 160, 1),
    ("Hello 😀", "UCS-2", 8, 1),
    ("😀" * 36, "UCS-2", 72, 2),
    ("A" * 152 + "€" + "A" * 152, "GSM-7", 306, 3),
]

BOUNDARY_VECTORS = [
    ("", "GSM-7", 0, 1),
    ("A" * 306, "GSM-7", 306, 2),  # exactly two full parts
    ("A" * 307, "GSM-7", 307, 3),
    ("A" * 459, "GSM-7", 459, 3),
    ("A" * 460, "GSM-7", 460, 4),
    ("€" * 81, "GSM-7", 162, 2),  # 76 escapes (152) fill part one, 5 (10) go to part two
    ("A" * 152 + "€", "GSM-7", 154, 1),  # fits in a single 160-septet message
    ("A" * 159 + "€", "GSM-7", 161, 2),
    ("A" * 153 + "€" + "A" * 151, "GSM-7", 306, 2),  # escape starts part two exactly
    ("{}" * 80, "GSM-7", 320, 3),  # 76 pairs per part: 152 + 152 + 16
    ("A" * 70, "GSM-7", 70, 1),
    ("Ç is basic, ç is not", "UCS-2", 20, 1),
    ("ж" * 70, "UCS-2", 70, 1),
    ("ж" * 71, "UCS-2", 71, 2),
    ("ж" * 134, "UCS-2", 134, 2),
    ("ж" * 135, "UCS-2", 135, 3),
    ("ж" * 66 + "😀" + "ж" * 10, "UCS-2", 78, 2),  # emoji straddles 67: moves to part two
    ("ж" * 65 + "😀" + "ж" * 67, "UCS-2", 134, 2),  # emoji ends part one exactly
    ("ж" * 66 + "😀" + "ж" * 66, "UCS-2", 134, 3),  # same size, but the pair cannot split
]


@pytest.mark.parametrize(("text", "encoding", "units", "segments"),
                         REFERENCE_VECTORS + BOUNDARY_VECTORS)
def test_measure(text: str, encoding: str, units: int, segments: int) -> None:
    assert measure(text) == SmsMeasure(encoding, units, segments)  # type: ignore[arg-type]


def test_every_extension_char_costs_two_septets() -> None:
    for char in "\f^{}\\[~]|€":
        assert measure(char) == SmsMeasure("GSM-7", 2, 1)


def test_render_appends_stop_text_once(settings: Settings) -> None:
    sms = SmsTemplate.load(name="promo", body="Hi {{ contact.first_name }}!", path=None,
                           settings=settings)
    out = sms.render({"first_name": "Ann"}, context={})
    assert out.body == "Hi Ann! Reply STOP to opt out."
    assert out.measure == measure(out.body)
    already = SmsTemplate.load(name="p2", body="Hi. Text stop to quit", path=None,
                               settings=settings)
    assert already.render({}, context={}).body == "Hi. Text stop to quit"
    bare = SmsTemplate.load(name="p3", body="Hi", path=None, settings=settings, stop_text=None)
    assert bare.render({}, context={}).body == "Hi"


def test_check_reports_missing_values_with_line(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "promo.sms"
    path.write_text("Hi {{ contact.first_name }}\nyour code {{ contact.code }}\n")
    sms = SmsTemplate.load(name="promo", body=None, path=path, settings=settings)
    diags = sms.check([{"first_name": "Ann", "code": "X"}, {"first_name": "Bob"}], {})
    assert [(d.code, d.file, d.line) for d in diags] == [("T302", str(path), 2)]
    assert "'code'" in diags[0].message


def test_check_refuses_too_many_segments(settings: Settings) -> None:
    # settings.max_sms_segments == 2; the emoji makes it UCS-2 and 3 parts for a long name.
    sms = SmsTemplate.load(name="promo", body="😀 Hi {{ contact.first_name }} " + "x" * 100,
                           path=None, settings=settings)
    assert sms.check([{"first_name": "Ann"}], {}) == []
    diags = sms.check([{"first_name": "Ann", "phone": "+15550100"},
                       {"first_name": "A" * 40, "phone": "+15550101"}], {})
    assert [d.code for d in diags] == ["T303"]
    assert "+15550101" in diags[0].message and "UCS-2" in diags[0].message
    assert "'😀'" in (diags[0].hint or "")


def test_load_needs_exactly_one_source(settings: Settings) -> None:
    with pytest.raises(TemplateError):
        SmsTemplate.load(name="x", body=None, path=None, settings=settings)
    with pytest.raises(TemplateError) as caught:
        SmsTemplate.load(name="x", body="{% if %}", path=None, settings=settings)
    assert caught.value.code == "T301"
