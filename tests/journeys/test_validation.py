"""Golden validation messages: file:line:col, code and hint for many distinct mistakes."""

from __future__ import annotations

import json

from tests.journeys.conftest import Project

SHAPE = """
journey: shape
entry: {segment: trials}
settings:
  timezone: Europe/Berlni
  quiet_hours: "21:00 to 08:00"
  frequency_cap: {email: 3 every 7d}
steps:
  - id: a
    wiat: 2d
  - id: b
    wait_for: {event: purchase, timeout: 5d}
    on_timout: []
  - id: c
    branch:
      - if: {clickd: a}
        steps: []
  - id: d
    wait: 3x
  - id: e
    split:
      - {percent: 60, steps: []}
      - {percent: 30, steps: []}
  - id: f
    ab_test:
      variants:
        - {id: x, email: {template: templates/tips.mjml, subject: s}, sms: {body: hi}}
        - {id: y, sms: {body: hi}}
  - id: g
    email: {template: templates/tips.mjml, subject: s, preheadr: p}
"""
REFS = """
journey: refs
entry: {segment: trails}
steps:
  - id: one
    email: {template: templates/welcom.mjml, subject: Hi, from: "A <a@acme.test>"}
  - id: one
    wait: 1d
  - wait: 2d
  - id: check
    branch:
      - if: {clicked: onee}
        steps: []
  - id: nofrom
    email: {template: templates/tips.mjml, subject: Hi}
  - id: long
    sms: {body: "{{ contact.first_name }} {{ 'x' * 600 }}"}
  - id: broken
    email: {template: templates/broken.mjml, subject: Hi, from: "A <a@acme.test>"}
"""
DUPKEY = """
journey: dupkey
entry: {segment: trials}
entry: {segment: everyone}
steps:
  - {id: a, wait: 1d}
"""
ENTRY = """
journey: entry
entry: {segment: trials, event: signed_up}
steps:
  - {id: a, wait: 1d}
"""
TOP = """
journey: top
descripton: misspelt
entry: {segment: trials}
exit_on_goal: true
steps:
  - {id: a, wait: 1d}
"""
GOAL = """
journey: goal
entry: {segment: trials, re_entry: sometimes}
exit_on_goal: true
steps:
  - {id: a, wait: 1d}
"""
BROKEN = """<mjml><mj-body><mj-section><mj-column>
<mj-text>Hello</mj-text>
<mj-text>{{ contact.nickname }}</mj-text>
</mj-column></mj-section></mj-body></mjml>
"""

# (file, line, col, code, a fragment of message or hint)
EXPECTED = [
    ("journeys/dupkey.yaml", 3, 1, "Y002", "duplicate key 'entry'"),
    ("journeys/entry.yaml", 2, 8, "K103", "an event entry takes no 'segment'"),
    ("journeys/goal.yaml", 2, 36, "K103", "re_entry is never, always or {after: 30d}"),
    ("journeys/refs.yaml", 2, 18, "R202", "did you mean 'trials'?"),
    ("journeys/refs.yaml", 5, 23, "R201", "did you mean 'templates/welcome.mjml'?"),
    ("journeys/refs.yaml", 6, 9, "R205", "duplicate step id 'one' (first used at 'steps[0]')"),
    ("journeys/refs.yaml", 8, 5, "K102", "missing required key 'id' in 'steps[2]'"),
    ("journeys/refs.yaml", 11, 23, "R203", "did you mean 'one'?"),
    ("journeys/refs.yaml", 14, 12, "K102", "missing required key 'from'"),
    ("journeys/refs.yaml", 16, 17, "T303", "the limit is 3"),
    ("journeys/shape.yaml", 4, 13, "K103", "unknown time zone 'Europe/Berlni'"),
    ("journeys/shape.yaml", 5, 16, "K103", "quiet_hours must look like"),
    ("journeys/shape.yaml", 6, 18, "K103", "not a frequency cap"),
    ("journeys/shape.yaml", 9, 5, "K101", "did you mean 'wait'? allowed here: id, email, sms"),
    ("journeys/shape.yaml", 12, 5, "K101", "did you mean 'on_timeout'?"),
    ("journeys/shape.yaml", 15, 14, "K101", "did you mean 'clicked'?"),
    ("journeys/shape.yaml", 18, 11, "K103", "not a duration: '3x'"),
    ("journeys/shape.yaml", 21, 7, "K103", "add up to 90, not 100"),
    ("journeys/shape.yaml", 26, 11, "K103", "needs exactly one of 'email' or 'sms'"),
    ("journeys/shape.yaml", 29, 56, "K101", "did you mean 'preheader'?"),
    ("journeys/top.yaml", 2, 1, "K101", "did you mean 'description'?"),
    ("templates/broken.mjml", 3, None, "T302", "nickname"),
]


def test_validation_messages_are_positioned_coded_and_hinted(project: Project) -> None:
    for name, text in (("shape", SHAPE), ("refs", REFS), ("dupkey", DUPKEY),
                       ("entry", ENTRY), ("top", TOP), ("goal", GOAL)):
        project.journey(text, name)
    project.write("templates/broken.mjml", BROKEN)
    result = project.cli("validate", "--json", ok=False)
    assert result.exit_code == 1
    diags = json.loads(result.stdout)["diagnostics"]
    got = sorted((d["file"], d["line"], d["col"], d["code"],
                  f"{d['message']} | {d['hint']}") for d in diags
                 if d["file"].startswith(("journeys/", "templates/")))
    shown = "\n".join(map(str, got))
    assert len(got) == len(EXPECTED), shown
    for (file, line, col, code, text), have in zip(sorted(EXPECTED), got, strict=True):
        assert have[:4] == (file, line, col, code), shown
        assert text in have[4], shown
    # The text form shows the offending line with a caret, and the hint.
    text = project.cli("validate", ok=False).stderr
    assert "journeys/shape.yaml:9:5: error[K101] unknown key 'wiat'" in text
    assert "    wiat: 2d\n" in text and "^^^^" in text
    assert "hint: did you mean 'wait'? allowed here: id, email, sms, wait, wait_for" in text


def test_sample_journey_and_schema_validate(project: Project) -> None:
    from pathlib import Path

    import reach

    sample = Path(reach.__file__).parent / "scaffold" / "journeys" / "trial-onboarding.yaml"
    text = sample.read_text().replace("segment: new-trials", "segment: trials")
    for name in ("welcome", "tips", "nudge-a", "last-call"):
        project.write(f"templates/{name}.mjml", "<mjml><mj-body><mj-section><mj-column>"
                      "<mj-text>hi</mj-text></mj-column></mj-section></mj-body></mjml>")
    project.write("journeys/trial-onboarding.yaml", text)
    project.cli("validate")
    project.cli("schema")
    schema = json.loads((project.root / ".reach/schema/journey.json").read_text())
    assert "steps" in schema["properties"]
