"""Cross-reference checks of a journey file (after its shape validated).

Missing step ids, duplicate step ids (R205, at the duplicate), references to missing
segments (R202), templates (R201) and steps (R203, with did-you-mean), messages without a
sender, and templates that fail to compile or render for the sample contacts (T30x,
with the template's own line). Nothing here writes or sends.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from journeys.spec import (
    AbTestStep,
    BranchStep,
    ClickedCondition,
    EmailBody,
    EmailStep,
    IfArm,
    JourneyAllGroup,
    JourneyAnyGroup,
    JourneyNotGroup,
    OpenedCondition,
    SmsBody,
    SmsStep,
    SplitStep,
    WaitForStep,
)
from reach.errors import Diagnostic

if TYPE_CHECKING:
    from reach.project import Loaded, Project

Keys = tuple[Any, ...]


def walk_steps(steps: list[Any], keys: Keys = ("steps",)) -> Iterator[tuple[Any, Keys]]:
    """Every step, nested ones included, in document order, with its key path."""
    for i, step in enumerate(steps):
        here = (*keys, i)
        yield step, here
        if isinstance(step, WaitForStep):
            yield from walk_steps(step.on_timeout, (*here, "on_timeout"))
        elif isinstance(step, BranchStep):
            for j, arm in enumerate(step.branch):
                if isinstance(arm, IfArm):
                    yield from walk_steps(arm.steps, (*here, "branch", j, "steps"))
                else:
                    yield from walk_steps(arm.else_, (*here, "branch", j, "else"))
        elif isinstance(step, SplitStep):
            for j, path in enumerate(step.split):
                yield from walk_steps(path.steps, (*here, "split", j, "steps"))


def _conditions(cond: Any, keys: Keys) -> Iterator[tuple[Any, Keys]]:
    yield cond, keys
    if isinstance(cond, JourneyAllGroup):
        for i, c in enumerate(cond.all):
            yield from _conditions(c, (*keys, "all", i))
    elif isinstance(cond, JourneyAnyGroup):
        for i, c in enumerate(cond.any):
            yield from _conditions(c, (*keys, "any", i))
    elif isinstance(cond, JourneyNotGroup):
        yield from _conditions(cond.not_, (*keys, "not"))


def check_journey(project: Project, item: Loaded) -> list[Diagnostic]:
    """Every cross-reference and template problem of one journey file."""
    from reach.checks import _at, check_segment_ref

    spec = item.spec
    out: list[Diagnostic] = []
    steps = list(walk_steps(spec.steps))
    seen: dict[str, Keys] = {}
    for step, keys in steps:
        if step.id is None:
            out.append(_at(item, project, "K102", f"missing required key 'id' in "
                           f"'{_path(keys)}'", keys, "every step needs an id unique in the "
                           "journey, e.g. `id: welcome`; reports are per step id"))
        elif step.id in seen:
            out.append(_at(item, project, "R205", f"duplicate step id {step.id!r} (first used "
                           f"at '{_path(seen[step.id])}')", (*keys, "id"),
                           "step ids must be unique in a journey; rename one of them"))
        else:
            seen[step.id] = keys
    if spec.entry.segment:
        out += check_segment_ref(project, item, ("entry", "segment"), spec.entry.segment)
    message_steps = [s.id for s, _ in steps
                     if isinstance(s, EmailStep | SmsStep | AbTestStep) and s.id]
    context = {"journey": spec.journey, "campaign": None}
    for step, keys in steps:
        if isinstance(step, BranchStep):
            for j, arm in enumerate(step.branch):
                if isinstance(arm, IfArm):
                    out += _check_condition(project, item, arm.if_, (*keys, "branch", j, "if"),
                                            message_steps)
        ctx = {**context, "step": step.id, "variant": None}
        if isinstance(step, EmailStep):
            out += _check_message(project, item, step.email, (*keys, "email"), ctx)
        elif isinstance(step, SmsStep):
            out += _check_message(project, item, step.sms, (*keys, "sms"), ctx)
        elif isinstance(step, AbTestStep):
            for j, v in enumerate(step.ab_test.variants):
                vkeys = (*keys, "ab_test", "variants", j)
                body = v.email if v.email is not None else v.sms
                kind = "email" if v.email is not None else "sms"
                out += _check_message(project, item, body, (*vkeys, kind),
                                      {**ctx, "variant": v.id})
    unique: list[Diagnostic] = []
    for diag in out:
        if diag not in unique:
            unique.append(diag)
    return unique


def _path(keys: Keys) -> str:
    from reach.yamlload import loc_to_path

    return loc_to_path(keys)


def _check_condition(project: Project, item: Loaded, cond: Any, keys: Keys,
                     message_steps: list[str]) -> list[Diagnostic]:
    from audiences.spec import SegmentRef
    from reach.checks import _at, check_segment_ref
    from reach.project import hint_for

    out: list[Diagnostic] = []
    for c, ckeys in _conditions(cond, keys):
        if isinstance(c, OpenedCondition | ClickedCondition):
            key = "opened" if isinstance(c, OpenedCondition) else "clicked"
            ref = getattr(c, key)
            if ref not in message_steps:
                out.append(_at(item, project, "R203", f"step {ref!r} not found among the "
                               "journey's message steps", (*ckeys, key),
                               hint_for(ref, message_steps, "message steps")))
        elif isinstance(c, SegmentRef):
            out += check_segment_ref(project, item, (*ckeys, "segment"), c.segment)
    return out


def _check_message(project: Project, item: Loaded, body: EmailBody | SmsBody, keys: Keys,
                   context: dict[str, Any]) -> list[Diagnostic]:
    from reach.checks import _at, check_template_file
    from reach.project import sample_contacts

    samples = sample_contacts(project.settings)
    if isinstance(body, EmailBody):
        from templating.email import EmailTemplate

        sender = body.from_ or item.spec.settings.from_
        if not sender:
            return [_at(item, project, "K102", f"missing required key 'from' in "
                        f"'{_path(keys)}'", keys, "add `from:` to the step or `from:` under "
                        "the journey's `settings:`")]
        out = check_template_file(project, item, (*keys, "template"), body.template,
                                  (".mjml", ".html"))
        if out:
            return out
        path = project.template_path(body.template)
        try:
            tpl = EmailTemplate.load(path, name=body.template, subject=body.subject,
                                     from_addr=sender, preheader=body.preheader,
                                     settings=project.settings)
            return [_relative(project, d) for d in tpl.check(samples, context)]
        except Exception as exc:  # TemplateError (T301) or a bad From address
            return [_template_error(project, item, exc, (*keys, "template"))]
    from templating.sms import SmsTemplate

    if body.template:
        out = check_template_file(project, item, (*keys, "template"), body.template,
                                  (".sms", ".txt"))
        if out:
            return out
    name = body.template or f"{item.spec.journey}:{context['step']}"
    try:
        tpl = SmsTemplate.load(name=name, body=body.body,
                               path=project.template_path(body.template) if body.template
                               else None, settings=project.settings)
        diags = tpl.check(samples, context)
    except Exception as exc:
        return [_template_error(project, item, exc, (*keys, "template" if body.template
                                                     else "body"))]
    if body.template:
        return [_relative(project, d) for d in diags]
    # An inline body: point at the body in the journey file.
    return [_at(item, project, d.code, d.message, (*keys, "body"), d.hint) for d in diags]


def _relative(project: Project, diag: Diagnostic) -> Diagnostic:
    from dataclasses import replace
    from pathlib import Path

    if diag.file and Path(diag.file).is_absolute():
        return replace(diag, file=project.rel(Path(diag.file)))
    return diag


def _template_error(project: Project, item: Loaded, exc: Exception, keys: Keys) -> Diagnostic:
    from reach.checks import _at

    file = getattr(exc, "file", None)
    code = getattr(exc, "code", "T301")
    message = getattr(exc, "message", str(exc))
    hint = getattr(exc, "hint", None)
    if file and getattr(exc, "line", None) is not None:
        return _relative(project, Diagnostic(code, message, file, exc.line, None, None, hint))
    return _at(item, project, code, message, keys, hint)
