from typing import Literal

from reach.spec import SpecModel
from reach.yamlload import parse_yaml, validate_model


class Step(SpecModel):
    id: str
    wait: str | None = None


class Doc(SpecModel):
    name: str
    kind: Literal["a", "b"] = "a"
    steps: list[Step] = []


def test_unknown_key_position_and_hint() -> None:
    text = "name: x\nsteps:\n  - id: one\n    wiat: 2d\n"
    doc, diags = parse_yaml(text, "f.yaml")
    assert not diags
    model, diags = validate_model(Doc, doc)
    assert model is None
    (d,) = diags
    assert (d.code, d.line, d.col, d.path) == ("K101", 4, 5, "steps[0].wiat")
    assert "did you mean 'wait'" in d.hint
    assert "f.yaml:4:5: error[K101]" in d.render(text)


def test_duplicate_key_and_syntax_error() -> None:
    _, diags = parse_yaml("name: x\nname: y\n", "d.yaml")
    assert diags[0].code == "Y002" and diags[0].line == 2
    _, diags = parse_yaml("name: [x\n", "s.yaml")
    assert diags[0].code == "Y001"


def test_missing_and_invalid_values_all_reported() -> None:
    doc, _ = parse_yaml("kind: c\nsteps:\n  - wait: 1d\n", "m.yaml")
    _, diags = validate_model(Doc, doc)
    codes = sorted(d.code for d in diags)
    assert codes == ["K102", "K102", "K103"]
    invalid = next(d for d in diags if d.code == "K103")
    assert invalid.line == 1 and invalid.col == 7
