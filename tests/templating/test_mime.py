"""Header helpers of templating.mime that take shortcuts past the standard library."""

from __future__ import annotations

import re
from email.utils import formataddr

from hypothesis import given
from hypothesis import strategies as st

from templating.mime import MimeSkeleton, clean, format_address


@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40))
def test_format_address_writes_what_formataddr_writes_for_ascii_names(name: str) -> None:
    # The fast path skips formataddr for names without specials; the result must not differ.
    cleaned = clean(name)
    expected = formataddr((cleaned, "ada@example.com")) if cleaned else "ada@example.com"
    assert format_address(name, "ada@example.com") == expected


def test_message_ids_are_unique_and_well_formed() -> None:
    skeleton = MimeSkeleton(from_header="Acme <a@acme.test>", reply_to=None, domain="acme.test")
    ids = [skeleton.message_id(7) for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"<7\.[0-9a-f]{16}@acme\.test>", i) for i in ids)
