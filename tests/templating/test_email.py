"""Email rendering: tracked links, pixel, footer, headers per RFC 5322/8058, MIME, DKIM."""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from campaigns.channels.smtp import wire_payload
from reach.settings import Settings
from templating.email import EmailTemplate, RenderedEmail
from templating.errors import TemplateError
from templating.textpart import html_to_text
from tracking.tokens import Signer

from .conftest import SECRET, mjml_doc

BODY = """<mj-text>Hello {{ contact.first_name }}</mj-text>
<mj-text><a href="https://acme.test/sale?x=1&amp;y=2">static</a>
<a href="https://acme.test/sale?x=1&amp;y=2">same again</a></mj-text>
<mj-button href="https://acme.test/p/{{ contact.id }}?ref=mail">personal</mj-button>
<mj-text><a href="mailto:help@acme.test">mail</a> <a href="tel:+15550100">call</a>
<a href="#top">top</a> <a href="https://acme.test/raw" data-reach-notrack>raw</a>
<a href="{{ view_in_browser_url }}">view</a></mj-text>
<mj-text>Missing: {{ contact.plan }}</mj-text>"""

CONTACT = {"email": "ann@example.test", "first_name": "Ann", "last_name": "Lee", "id": 7,
           "plan": "gold", "locale": "en_US", "timezone": "Europe/Paris"}
HEADERS = ["From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe",
           "X-Reach-Message", "MIME-Version", "List-Unsubscribe-Post", "Content-Type"]


def load(tmp_path: Path, settings: Settings, body: str = BODY, **kwargs: object) -> EmailTemplate:
    path = tmp_path / "news.mjml"
    path.write_text(mjml_doc(body))
    options: dict = {"subject": "Hi {{ contact.first_name }}", "from_addr": "Acme <news@acme.test>",
                     "preheader": "Deals for {{ contact.first_name }}"}
    options.update(kwargs)
    return EmailTemplate.load(path, name="news", settings=settings, **options)


def parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def hrefs(html: str) -> list[str]:
    return re.findall(r'<a\b[^>]*href="([^"]*)"', html)


def test_links_are_rewritten_to_signed_click_urls(tmp_path: Path, settings: Settings) -> None:
    out = load(tmp_path, settings).render(CONTACT, message_id=42, context={})
    signer = Signer([SECRET])
    clicks = [h for h in hrefs(out.html) if h.startswith("https://t.acme.test/c/")]
    targets = []
    for link in clicks:
        message_token, url_token = link.removeprefix("https://t.acme.test/c/").split("/")
        assert signer.verify_message(message_token) == 42
        targets.append(signer.verify_url(url_token))
    assert targets == ["https://acme.test/sale?x=1&y=2", "https://acme.test/sale?x=1&y=2",
                       "https://acme.test/p/7?ref=mail"]
    assert clicks[0] == clicks[1]  # one URL token per distinct link
    others = [h for h in hrefs(out.html) if not h.startswith("https://t.acme.test/c/")]
    assert others[:4] == ["mailto:help@acme.test", "tel:+15550100", "#top",
                          "https://acme.test/raw"]
    assert re.fullmatch(r"https://t\.acme\.test/v/[\w.-]+", others[4])  # view link untracked
    assert "data-reach-notrack" not in out.html
    # The text part lists the same tracked links.
    for link in clicks:
        assert link in out.text
    assert "mailto:help@acme.test" in out.text


def test_personalised_links_get_their_own_token(tmp_path: Path, settings: Settings) -> None:
    template = load(tmp_path, settings)
    signer = Signer([SECRET])
    for contact_id in (1, 2):
        out = template.render({**CONTACT, "id": contact_id}, message_id=contact_id, context={})
        link = [h for h in hrefs(out.html) if "/c/" in h][2]
        assert signer.verify_url(link.rsplit("/", 1)[1]) == f"https://acme.test/p/{contact_id}?ref=mail"


def test_pixel_footer_and_preheader(tmp_path: Path, settings: Settings) -> None:
    template = load(tmp_path, settings)
    out = template.render(CONTACT, message_id=42, context={})
    token = Signer([SECRET]).message_token(42)
    pixel = (f'<img src="https://t.acme.test/o/{token}.gif" width="1" height="1" alt="" '
             'style="display:none">')
    assert out.html.count(pixel) == 1
    assert out.html.index(pixel) < out.html.index("</body>")
    # No {{ unsubscribe_url }} in the template: a visible footer with the postal address.
    assert f'href="https://t.acme.test/u/{token}"' in out.html
    assert "Acme Ltd, 1 Road, Springfield" in out.html and "Unsubscribe" in out.html
    assert "Acme Ltd, 1 Road, Springfield" in out.text
    assert f"https://t.acme.test/u/{token}" in out.text
    # The preheader is personalised, hidden, and first in the body; not in the text part.
    body_start = out.html.index("<body")
    preheader = out.html.index("Deals for Ann")
    assert body_start < preheader < out.html.index("Hello Ann")
    assert "display:none" in out.html[preheader - 200:preheader]
    assert "Deals for Ann" not in out.text
    view = template.render_html_for_view(CONTACT, 42, {})
    assert "/o/" not in view and "Hello Ann" in view


def test_no_footer_when_the_template_has_an_unsubscribe_link(tmp_path: Path,
                                                             settings: Settings) -> None:
    body = BODY + '\n<mj-text><a href="{{ unsubscribe_url }}">leave</a></mj-text>'
    out = load(tmp_path, settings, body=body).render(CONTACT, message_id=5, context={})
    assert "Acme Ltd, 1 Road" not in out.html
    token = Signer([SECRET]).message_token(5)
    assert f'<a href="https://t.acme.test/u/{token}">leave</a>' in out.html


def test_headers_and_parts_round_trip(tmp_path: Path, settings: Settings,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REACH_NOW", "2025-03-04T05:06:07+00:00")
    out = load(tmp_path, settings).render(CONTACT, message_id=42, context={})
    msg = parse(out.raw)
    assert list(msg.keys()) == HEADERS
    assert msg["From"] == "Acme <news@acme.test>"
    assert msg["To"] == "Ann Lee <ann@example.test>" == out.to
    assert msg["Subject"] == "Hi Ann" == out.subject
    assert msg["Date"] == "Tue, 04 Mar 2025 05:06:07 +0000"
    assert msg["Date"].datetime.isoformat() == "2025-03-04T05:06:07+00:00"
    assert msg["Message-ID"] == out.message_id_header
    assert re.fullmatch(r"<42\.[0-9a-f]{16}@acme\.test>", out.message_id_header)
    token = Signer([SECRET]).message_token(42)
    assert msg["List-Unsubscribe"] == (f"<https://t.acme.test/u/{token}>, "
                                       "<mailto:unsubscribe@acme.test?subject=unsubscribe>")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["X-Reach-Message"] == "42"
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert parts[0].get_content() == out.text
    assert parts[1].get_content() == out.html
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    assert msg.defects == [] and all(p.defects == [] for p in parts)
    assert b"\r\n" in out.raw and b"\n" not in out.raw.replace(b"\r\n", b"")
    assert max(len(line) for line in out.raw.split(b"\r\n")) <= 78


def test_message_ids_are_unique(tmp_path: Path, settings: Settings) -> None:
    template = load(tmp_path, settings)
    ids = {template.render(CONTACT, message_id=1, context={}).message_id_header
           for _ in range(50)}
    assert len(ids) == 50


def test_mailto_from_settings_and_reply_to(tmp_path: Path, settings: Settings) -> None:
    settings = settings.model_copy(update={"unsubscribe_mailto": "optout@lists.acme.test"})
    out = load(tmp_path, settings, reply_to="Support <help@acme.test>").render(
        CONTACT, message_id=1, context={})
    msg = parse(out.raw)
    assert msg["List-Unsubscribe"].endswith(
        "<mailto:optout@lists.acme.test?subject=unsubscribe>")
    assert msg["Reply-To"] == "help@acme.test"


def test_header_injection_is_impossible(tmp_path: Path, settings: Settings) -> None:
    evil = {**CONTACT, "first_name": "Ann\r\nBcc: victim@evil.test\r\n\r\nbody",
            "last_name": "Lee\nX-Evil: 1"}
    out = load(tmp_path, settings).render(evil, message_id=9, context={})
    msg = parse(out.raw)
    assert list(msg.keys()) == HEADERS
    assert "Bcc" not in msg and "X-Evil" not in msg
    assert msg["Subject"] == "Hi Ann Bcc: victim@evil.test body"
    assert msg["To"].addresses[0].addr_spec == "ann@example.test"
    with pytest.raises(TemplateError):
        load(tmp_path, settings).render({**CONTACT, "email": "a@b.test\r\nBcc: c@d.test"},
                                        message_id=1, context={})


@pytest.mark.parametrize("subject", [
    "Grüße, {{ contact.first_name }} — 50 % de réduction 🎉 " * 3,
    "=?utf-8?q?not_an_encoded_word?= {{ contact.first_name }}",
    "A rather long plain ASCII subject line that certainly needs folding because it is " * 3,
])
def test_subjects_round_trip(tmp_path: Path, settings: Settings, subject: str) -> None:
    contact = {**CONTACT, "first_name": "Zoë", "last_name": "Ó \"Brien\", Jr."}
    out = load(tmp_path, settings, subject=subject).render(contact, message_id=3, context={})
    msg = parse(out.raw)
    assert msg["Subject"] == out.subject == subject.replace(
        "{{ contact.first_name }}", "Zoë").strip()
    assert msg["To"].addresses[0].display_name == 'Zoë Ó "Brien", Jr.'
    assert msg["To"].addresses[0].addr_spec == "ann@example.test"
    assert max(len(line) for line in out.raw.split(b"\r\n")) <= 78


def test_text_template_is_used_when_given(tmp_path: Path, settings: Settings) -> None:
    text_path = tmp_path / "news.txt"
    text_path.write_text("Plain hello {{ contact.first_name }}: {{ unsubscribe_url }}\n")
    out = load(tmp_path, settings, text_path=text_path).render(CONTACT, message_id=2,
                                                              context={})
    token = Signer([SECRET]).message_token(2)
    assert out.text == f"Plain hello Ann: https://t.acme.test/u/{token}\n"


def test_check_reports_missing_values_on_the_mjml_line(tmp_path: Path,
                                                      settings: Settings) -> None:
    template = load(tmp_path, settings)
    assert template.check([CONTACT], {}) == []
    no_plan = {k: v for k, v in CONTACT.items() if k != "plan"}
    diags = template.check([CONTACT, no_plan, {**no_plan, "email": "b@example.test"}], {})
    assert len(diags) == 1
    diag = diags[0]
    assert (diag.code, diag.file, diag.line) == ("T302", str(tmp_path / "news.mjml"), 13)
    assert "plan" in diag.message and "ann@example.test" in diag.message
    lines = (tmp_path / "news.mjml").read_text().splitlines()
    assert "{{ contact.plan }}" in lines[diag.line - 1]


def test_subject_errors_are_reported(tmp_path: Path, settings: Settings) -> None:
    template = load(tmp_path, settings, subject="Hi {{ contact.nickname }}")
    diags = template.check([CONTACT], {})
    assert [d.code for d in diags] == ["T302"] and "(subject)" in (diags[0].file or "")


def test_load_errors_name_the_line(tmp_path: Path, settings: Settings) -> None:
    with pytest.raises(TemplateError) as jinja_error:
        load(tmp_path, settings, body="<mj-text>ok</mj-text>\n<mj-text>{% if x %}</mj-text>")
    assert (jinja_error.value.code, jinja_error.value.line) == ("T301", 7)
    with pytest.raises(TemplateError) as mjml_error:
        load(tmp_path, settings, body="<mj-text>ok</mj-text>\n<mj-text>a < b</mj-text>")
    assert (mjml_error.value.code, mjml_error.value.line) == ("T301", 7)


def test_dkim_signature_verifies(tmp_path: Path, settings: Settings) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    key_path = tmp_path / "dkim.pem"
    key_path.write_bytes(pem)
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    import base64
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"reach._domainkey.acme.test."
        return record

    template = load(tmp_path, settings, dkim_selector="reach", dkim_private_key_path=key_path)
    out: RenderedEmail = template.render(CONTACT, message_id=11, context={})
    assert out.raw.startswith(b"DKIM-Signature:")
    assert dkim.verify(out.raw, dnsfunc=dnsfunc)
    signed = parse(out.raw)["DKIM-Signature"]
    h_tag = re.search(r"h=([^;]+)", signed.replace("\r\n", "").replace(" ", "")).group(1)
    assert {"list-unsubscribe", "list-unsubscribe-post", "from", "to", "subject", "date",
            "message-id"} <= set(h_tag.lower().split(":"))
    tampered = out.raw.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
                               b"List-Unsubscribe-Post: nothing")
    assert not dkim.verify(tampered, dnsfunc=dnsfunc)
    # The signed message is still wire-clean, and sent as is it is the same bytes.
    assert out.wire_clean
    assert wire_payload(out.raw, clean=True) == wire_payload(out.raw)


def test_text_part_falls_back_to_per_message_conversion(tmp_path: Path,
                                                        settings: Settings) -> None:
    # The {% if %} opens in the <head> (dropped by html2text) and closes in the body: the text
    # template cannot be derived once, so the text is converted from each rendered HTML.
    path = tmp_path / "odd.mjml"
    path.write_text(
        "<mjml><mj-head><mj-style>{% if contact.vip %}.vip { color: red; }</mj-style>"
        "</mj-head><mj-body><mj-section><mj-column><mj-text>VIP {{ contact.first_name }}"
        "{% endif %} hello</mj-text></mj-column></mj-section></mj-body></mjml>")
    template = EmailTemplate.load(path, name="odd", subject="s", from_addr="a@acme.test",
                                  preheader=None, settings=settings)
    vip = template.render({**CONTACT, "vip": True}, message_id=1, context={})
    assert "VIP Ann hello" in vip.text
    assert vip.text == html_to_text(vip.html)
    plain = template.render({**CONTACT, "vip": False}, message_id=2, context={})
    assert "VIP" not in plain.text and plain.text == html_to_text(plain.html)


def test_plain_html_templates_are_tracked_too(tmp_path: Path, settings: Settings) -> None:
    path = tmp_path / "plain.html"
    path.write_text('<html><body><p>Hi {{ contact.first_name }}</p>'
                    '<a href="https://acme.test/x">x</a></body></html>')
    out = EmailTemplate.load(path, name="plain", subject="s", from_addr="a@acme.test",
                             preheader=None, settings=settings).render(CONTACT, message_id=3,
                                                                       context={})
    assert "<p>Hi Ann</p>" in out.html
    assert hrefs(out.html)[0].startswith("https://t.acme.test/c/")
    assert "/o/" in out.html and "Unsubscribe" in out.html


@pytest.mark.parametrize("contact", [
    CONTACT,
    {**CONTACT, "first_name": "Zoë \u201cthe\u201d Ångström", "last_name": "Ölçer " * 12},
    {**CONTACT, "first_name": ".dot"},
])
def test_rendered_messages_are_wire_clean_and_need_no_scan(tmp_path: Path, settings: Settings,
                                                           contact: dict) -> None:
    """The SMTP shortcut (no line-ending or dot-stuffing scan) gives exactly the bytes the
    full scan gives, for long folded Unicode headers too."""
    subject = "{{ contact.first_name }} — " + "a long subject that must fold " * 6
    template = load(tmp_path, settings, subject=subject)
    out = template.render(contact, message_id=5, context={})
    assert out.wire_clean
    assert wire_payload(out.raw, clean=True) == wire_payload(out.raw)


def test_a_header_with_a_bare_line_break_is_not_wire_clean() -> None:
    from templating.mime import wire_clean_headers

    assert wire_clean_headers(b"To: a@b.test\r\nSubject: x\r\n")
    assert wire_clean_headers(b"Subject: x\r\n folded\r\n")
    assert not wire_clean_headers(b"To: a@b.test\nBcc: c@d.test\r\n")
    assert not wire_clean_headers(b"To: a@b.test\rX: y\r\n")
    assert not wire_clean_headers(b"To: a@b.test\r\n.X: y\r\n")
    assert not wire_clean_headers(b"To: a@b.test")
