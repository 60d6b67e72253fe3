"""Cross-file checks: references to segments and templates, and templates rendered
against sample contacts. Each returns diagnostics; nothing here sends or writes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from reach.errors import Diagnostic

if TYPE_CHECKING:
    from reach.project import Loaded, Project


def check_segment(project: Project, item: Loaded) -> list[Diagnostic]:
    from audiences.compiler import check_attributes

    declared = set(project.settings.attributes)
    if not declared:
        return []
    out = []
    for name in check_attributes(item.spec.conditions, declared):
        out.append(_at(item, project, "R206", f"unknown attribute {name!r}", ("conditions",),
                       "declare it in reach.toml's `attributes = [...]` or fix the name"))
    return out


def _at(item: Loaded, project: Project, code: str, message: str, keys: tuple[Any, ...],
        hint: str | None) -> Diagnostic:
    from reach.yamlload import loc_to_path, position

    line, col, width = position(item.doc.data, keys)
    return Diagnostic(code, message, project.rel(item.path), line, col, loc_to_path(keys), hint,
                      width)


def check_template_file(project: Project, item: Loaded, keys: tuple[Any, ...],
                        template: str, suffixes: tuple[str, ...]) -> list[Diagnostic]:
    from reach.project import hint_for

    path = project.template_path(template)
    if path.is_file():
        if path.suffix not in suffixes:
            return [_at(item, project, "K103", f"template {template!r} should end in "
                        f"{' or '.join(suffixes)}", keys, None)]
        return []
    folder = project.root / "templates"
    choices = [project.rel(p) for p in folder.glob("*") if p.suffix in suffixes] \
        if folder.is_dir() else []
    return [_at(item, project, "R201", f"template {template!r} not found", keys,
                hint_for(template, choices, "templates"))]


def check_segment_ref(project: Project, item: Loaded, keys: tuple[Any, ...],
                      name: str) -> list[Diagnostic]:
    from reach.project import hint_for

    if name in project.segments:
        return []
    return [_at(item, project, "R202", f"segment {name!r} not found", keys,
                hint_for(name, list(project.segments), "segments"))]


def check_email(project: Project, item: Loaded, keys: tuple[Any, ...], *, template: str,
                subject: str, from_addr: str, preheader: str | None,
                context: dict[str, Any]) -> list[Diagnostic]:
    """The template exists, compiles, and renders for every sample contact."""
    from reach.project import sample_contacts
    from templating.email import EmailTemplate, TemplateError

    out = check_template_file(project, item, (*keys, "template"), template, (".mjml", ".html"))
    if out:
        return out
    try:
        tpl = EmailTemplate.load(project.template_path(template), name=template, subject=subject,
                                 from_addr=from_addr, preheader=preheader,
                                 settings=project.settings)
    except TemplateError as exc:
        return [exc.diagnostic(project.rel(project.template_path(template)))]
    return tpl.check(sample_contacts(project.settings), context)


def check_sms(project: Project, item: Loaded, keys: tuple[Any, ...], *, template: str | None,
              body: str | None, context: dict[str, Any]) -> list[Diagnostic]:
    from reach.project import sample_contacts
    from templating.email import TemplateError
    from templating.sms import SmsTemplate

    path: Path | None = None
    if template:
        out = check_template_file(project, item, (*keys, "template"), template, (".sms", ".txt"))
        if out:
            return out
        path = project.template_path(template)
    try:
        tpl = SmsTemplate.load(name=template or "inline", body=body, path=path,
                               settings=project.settings)
    except TemplateError as exc:
        return [exc.diagnostic(project.rel(path) if path else project.rel(item.path))]
    return tpl.check(sample_contacts(project.settings), context)


def check_campaign(project: Project, item: Loaded) -> list[Diagnostic]:
    spec = item.spec
    out: list[Diagnostic] = []
    if spec.audience.segment:
        out += check_segment_ref(project, item, ("audience", "segment"), spec.audience.segment)
    else:
        out += check_conditions(project, item, ("audience", "conditions"),
                                spec.audience.conditions)
    context = {"campaign": spec.campaign}
    variants = spec.ab_test.variants if spec.ab_test else [None]
    for i, variant in enumerate(variants):
        vkeys: tuple[Any, ...] = ("ab_test", "variants", i) if variant else ()
        if spec.channel == "email":
            email = spec.email
            template = (variant and variant.template) or email.template
            tkeys = (*vkeys, ) if variant and variant.template else ("email",)
            out += check_email(
                project, item, tkeys, template=template,
                subject=(variant and variant.subject) or email.subject,
                from_addr=(variant and variant.from_) or email.from_,
                preheader=(variant and variant.preheader) or email.preheader,
                context={**context, "variant": variant.id if variant else None})
        else:
            sms = spec.sms
            body = (variant and variant.body) or sms.body
            out += check_sms(project, item, ("sms",), template=None if body else sms.template,
                             body=body, context=context)
    # One template error reported once, even if several variants share the template.
    unique: list[Diagnostic] = []
    for diag in out:
        if diag not in unique:
            unique.append(diag)
    return unique


def check_conditions(project: Project, item: Loaded, keys: tuple[Any, ...],
                     conditions: list[Any] | None) -> list[Diagnostic]:
    """Inline conditions: parsed with the segment language's own model."""
    from pydantic import ValidationError

    from audiences.spec import SegmentSpec
    from reach.yamlload import LoadedDoc, pydantic_diagnostics

    try:
        SegmentSpec.model_validate({"segment": "inline", "conditions": conditions or []})
    except ValidationError as exc:
        # Re-anchor the errors at the inline block of this file.
        node = item.doc.data
        for key in keys[:-1]:
            node = node[key]
        doc = LoadedDoc(file=project.rel(item.path), text=item.doc.text,
                        data={"segment": "inline", "conditions": node[keys[-1]]})
        doc.data = _rebase(node, keys[-1])
        return pydantic_diagnostics(exc, doc, SegmentSpec)
    return []


def _rebase(parent: Any, key: str) -> Any:
    """A mapping that looks like a segment file but keeps the inline block's positions."""
    from ruamel.yaml.comments import CommentedMap

    data = CommentedMap()
    data["segment"] = "inline"
    data["conditions"] = parent[key]
    data.lc.line, data.lc.col = parent.lc.line, parent.lc.col
    data.lc.data = {"segment": list(parent.lc.key(key)) * 2,
                    "conditions": list(parent.lc.key(key)) + list(parent.lc.value(key))}
    return data


def check_journey(project: Project, item: Loaded) -> list[Diagnostic]:
    try:
        from journeys.checks import check_journey as check
    except ImportError:
        return []
    return check(project, item)
