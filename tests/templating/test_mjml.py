"""MJML compilation: every MJML 4 component, Jinja kept intact, errors on the right line."""

from __future__ import annotations

from pathlib import Path

import pytest

from templating import mjml as mjml_mod
from templating.errors import TemplateError
from templating.jinja import compile_template
from templating.mjml import MJML_COMPONENTS, compile_mjml

from .conftest import DATA, mjml_doc


def test_every_mjml4_component_renders(tmp_path: Path) -> None:
    source = (DATA / "all_components.mjml").read_text()
    html = compile_mjml(source, name="all_components.mjml", cache_dir=tmp_path)
    expected = {
        "mj-raw": "<!-- raw-marker -->",
        "mj-text / mj-class / mj-attributes": "color:#0000ff",
        "mj-button": 'href="https://acme.test/button?c={{ contact.id }}"',
        "mj-image": 'alt="image-alt"',
        "mj-divider": "border-top:solid",
        "mj-spacer": "height:20px",
        "mj-table": "table-cell",
        "mj-wrapper": "border:1px solid #000000",
        "mj-group": "group-right",
        "mj-hero": "hero-text",
        "mj-social": "social-fb",
        "mj-navbar": "nav-two",
        "mj-accordion": "accordion-text",
        "mj-carousel": "carousel2.jpg",
        "mj-style": ".big { font-size: 20px; }",
        "mj-style inline": ".red { color: #ff0000; }",
        "mj-font": "family=Roboto",
        "mj-preview": "Preview for {{ contact.first_name }}",
        "mj-title": "<title>All components for {{ contact.first_name }}</title>",
        "mj-breakpoint": "min-width:320px",
        "mj-column": "mj-column-per-100",
    }
    missing = {component: text for component, text in expected.items() if text not in html}
    assert not missing
    used = {tag for tag in MJML_COMPONENTS if f"<{tag}" in source}
    assert used >= MJML_COMPONENTS - {"mj-include", "mj-html-attributes", "mj-html-attribute",
                                      "mj-selector"}


def test_jinja_survives_compilation(tmp_path: Path) -> None:
    body = (
        '<mj-text>Hi {{ contact["first_name"] }} {# a comment #}'
        "{% if contact.score < 10 and contact.score > 1 %}low{% else %}high{% endif %}"
        "</mj-text>\n"
        '<mj-button href="{{ contact.url | default("https://acme.test/x?a=1&b=2") }}">'
        "Go</mj-button>\n"
        "<mj-text>{% for item in items %}<p>{{ item }}</p>{% endfor %}</mj-text>\n"
        "<mj-raw>{% raw %}{{ literally }}{% endraw %}</mj-raw>"
    )
    html = compile_mjml(mjml_doc(body), name="t.mjml", cache_dir=tmp_path)
    assert "{% if contact.score < 10 and contact.score > 1 %}" in html
    assert 'href="{{ contact.url | default("https://acme.test/x?a=1&b=2") }}"' in html
    rendered = compile_template(html, name="t.html", html=True).render(
        contact={"first_name": "Zoë <b>", "score": 5}, items=["one", "two"])
    assert "Hi Zoë &lt;b&gt; low" in rendered
    assert 'href="https://acme.test/x?a=1&amp;b=2"' in rendered
    assert "<p>one</p><p>two</p>" in rendered
    assert "{{ literally }}" in rendered


@pytest.mark.parametrize(
    ("body", "line", "words"),
    [
        ("<mj-text>fine</mj-text>\n<mj-text>a < b</mj-text>", 7, "'<' does not start"),
        ("<mj-text>fine</mj-text>\n<mj-text><p>open</mj-text>", 7, "</mj-text> does not match"),
        ("<mj-text>fine</mj-text>\n<mj-text align=center>x</mj-text>", 7, "'<' does not start"),
        ("<mj-text>fine</mj-text>\n<mj-colum>x</mj-colum>", 7, "unknown MJML component"),
    ],
)
def test_broken_template_names_its_line(tmp_path: Path, body: str, line: int,
                                        words: str) -> None:
    with pytest.raises(TemplateError) as caught:
        compile_mjml(mjml_doc(body), name="broken.mjml", cache_dir=tmp_path)
    assert caught.value.code == "T301"
    assert caught.value.file == "broken.mjml"
    assert caught.value.line == line
    assert words in caught.value.message


def test_unclosed_tag_points_at_its_opening_line(tmp_path: Path) -> None:
    source = "<mjml>\n<mj-body>\n<mj-section>\n<mj-column>\n</mj-section>\n</mj-body>\n</mjml>"
    with pytest.raises(TemplateError) as caught:
        compile_mjml(source, name="b.mjml", cache_dir=tmp_path)
    assert caught.value.line == 5
    assert "<mj-column> opened on line 4" in caught.value.message


def test_unknown_component_suggests_the_right_one(tmp_path: Path) -> None:
    with pytest.raises(TemplateError) as caught:
        compile_mjml(mjml_doc("<mj-buton href='https://x.test'>x</mj-buton>"), name="b.mjml",
                     cache_dir=tmp_path)
    assert caught.value.hint == "did you mean <mj-button>?"


def test_compiled_html_is_cached_on_disk(tmp_path: Path, mjml_cache: Path) -> None:
    source = mjml_doc("<mj-text>cached {{ contact.first_name }}</mj-text>")
    compile_mjml(source, name="c.mjml")  # no cache_dir: REACH_MJML_CACHE
    files = list(mjml_cache.glob("*.html"))
    assert len(files) == 1
    # Prove the second compile reads the disk: alter the cached artifact, drop memory.
    files[0].write_text(files[0].read_text().replace("cached", "from-disk"))
    mjml_mod._memory.clear()
    assert "from-disk {{ contact.first_name }}" in compile_mjml(source, name="c.mjml")
    # A different source is a different key.
    other = compile_mjml(source.replace("cached", "other"), name="c.mjml")
    assert "other {{ contact.first_name }}" in other
    assert len(list(mjml_cache.glob("*.html"))) == 2


def test_unwritable_cache_does_not_stop_compilation(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    html = compile_mjml(mjml_doc("<mj-text>ok</mj-text>"), name="x.mjml",
                        cache_dir=blocker / "sub")
    assert "ok" in html


def test_html_split_across_mj_raw_blocks_is_accepted(tmp_path: Path) -> None:
    # A known MJML pattern: open a table in one mj-raw, close it in another.
    source = ("<mjml><mj-body><mj-raw><table><tr><td></mj-raw><mj-section><mj-column>"
              "<mj-text>inside</mj-text></mj-column></mj-section><mj-raw></td></tr></table>"
              "</mj-raw></mj-body></mjml>")
    assert "inside" in compile_mjml(source, name="split.mjml", cache_dir=tmp_path)


def test_error_becomes_a_diagnostic_with_the_shown_path(tmp_path: Path) -> None:
    with pytest.raises(TemplateError) as caught:
        compile_mjml(mjml_doc("<mj-colum/>"), name="/abs/t.mjml", cache_dir=tmp_path)
    diag = caught.value.diagnostic("templates/t.mjml")
    assert (diag.code, diag.file, diag.line) == ("T301", "templates/t.mjml", 6)
    assert diag.headline().startswith("templates/t.mjml:6: error[T301] unknown MJML component")
