"""A marketer's project folder: discover, load and validate every file.

``load_project`` never stops at the first problem: it collects every diagnostic of every
file (syntax, unknown keys, references to missing segments, templates and steps, templates
that fail against sample contacts) so one ``reach validate`` shows all there is to fix.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from reach.errors import Diagnostic
from reach.settings import Settings
from reach.yamlload import LoadedDoc, load_yaml, suggest, validate_model

KIND_DIRS = {"segment": "segments", "campaign": "campaigns", "journey": "journeys"}


@dataclass
class Loaded:
    """One validated file: its spec, its document (for positions) and its path."""

    spec: Any
    doc: LoadedDoc
    path: Path
    report: bool = True  # its problems are shown (False: loaded only as a reference)


@dataclass
class Project:
    root: Path
    settings: Settings
    segments: dict[str, Loaded] = field(default_factory=dict)
    campaigns: dict[str, Loaded] = field(default_factory=dict)
    journeys: dict[str, Loaded] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(d.severity == "error" for d in self.diagnostics)

    def rel(self, path: Path) -> str:
        try:
            return str(path.resolve().relative_to(self.root))
        except ValueError:
            return str(path)

    def template_path(self, name: str) -> Path:
        return (self.root / name).resolve()

    def segment_specs(self) -> dict[str, Any]:
        return {name: item.spec for name, item in self.segments.items()}

    def find(self, ref: str) -> tuple[str, Loaded] | None:
        """A campaign or journey by name or by file path."""
        path = (self.root / ref).resolve() if not Path(ref).is_absolute() else Path(ref)
        for kind, table in (("campaign", self.campaigns), ("journey", self.journeys)):
            if ref in table:
                return kind, table[ref]
            for item in table.values():
                if item.path.resolve() == path:
                    return kind, item
        return None


def _spec_model(kind: str) -> type[BaseModel]:
    if kind == "segment":
        from audiences.spec import SegmentSpec

        return SegmentSpec
    if kind == "campaign":
        from campaigns.spec import CampaignSpec

        return CampaignSpec
    from journeys.spec import JourneySpec

    return JourneySpec


def discover(root: Path) -> list[Path]:
    files: list[Path] = []
    for sub in KIND_DIRS.values():
        folder = root / sub
        if folder.is_dir():
            files.extend(sorted(p for p in folder.rglob("*") if p.suffix in (".yaml", ".yml")))
    return files


def load_project(settings: Settings, paths: list[Path] | None = None) -> Project:
    """Load and validate every YAML file (or only ``paths``, plus what they reference)."""
    root = settings.project_dir.resolve()
    project = Project(root=root, settings=settings)
    all_files = discover(root)
    wanted = {p.resolve() for p in paths} if paths else None
    for path in all_files:
        _load_file(project, path, report=wanted is None or path.resolve() in wanted)
    if wanted:
        # Explicit files outside the standard folders are validated too.
        for path in wanted - {p.resolve() for p in all_files}:
            _load_file(project, path, report=True)
    _check_references(project)
    return project


def _load_file(project: Project, path: Path, *, report: bool) -> None:
    display = project.rel(path)
    doc, diags = load_yaml(path, display)
    if doc is None:
        if report:
            project.diagnostics.extend(diags)
        return
    kind = next((k for k in KIND_DIRS if k in doc.data), None)
    if kind is None:
        if report:
            project.diagnostics.append(Diagnostic(
                "K104", "cannot tell what this file is", display, 1, 1,
                hint="a segment file starts with 'segment: NAME', a campaign with "
                "'campaign: NAME', a journey with 'journey: NAME'"))
        return
    try:
        model = _spec_model(kind)
    except ImportError:  # a file kind whose package is not installed in this build
        return
    spec, diags = validate_model(model, doc)
    if spec is None and diags and all(d.code == "K101" for d in diags):
        # Only unknown keys: check the rest too (references, templates), so one run of
        # `reach validate` shows everything there is to fix.
        spec, _ = validate_model(model, _without(doc, [d.path or "" for d in diags]))
    if diags:
        if report:
            project.diagnostics.extend(diags)
        if spec is None:
            return
    name = getattr(spec, kind)
    table = {"segment": project.segments, "campaign": project.campaigns,
             "journey": project.journeys}[kind]
    if name in table:
        line, col = doc.data.lc.value(kind)
        project.diagnostics.append(Diagnostic(
            "R204", f"{kind} name {name!r} is already used by {project.rel(table[name].path)}",
            display, line + 1, col + 1, kind, "names must be unique within a project",
            len(name)))
        return
    table[name] = Loaded(spec=spec, doc=doc, path=path, report=report)


def _without(doc: LoadedDoc, paths: list[str]) -> LoadedDoc:
    """A copy of the document without the keys at ``paths`` (e.g. 'steps[2].wiat')."""
    import copy
    import re

    data = copy.deepcopy(doc.data)
    for path in paths:
        parts: list[Any] = [int(p) if p.isdigit() else p
                            for p in re.findall(r"[^.\[\]]+", path)]
        node = data
        try:
            for part in parts[:-1]:
                node = node[part]
            del node[parts[-1]]
        except (KeyError, IndexError, TypeError):
            continue
    return LoadedDoc(file=doc.file, text=doc.text, data=data)


def _check_references(project: Project) -> None:
    from reach.checks import check_campaign, check_journey, check_segment

    for item in project.segments.values():
        if item.report:
            project.diagnostics.extend(check_segment(project, item))
    for item in project.campaigns.values():
        if item.report:
            project.diagnostics.extend(check_campaign(project, item))
    for item in project.journeys.values():
        if item.report:
            project.diagnostics.extend(check_journey(project, item))


def sample_contacts(settings: Settings, limit: int = 20) -> list[dict[str, Any]]:
    """Contacts templates are checked against: the project's contacts.csv, else one example."""
    path = settings.project_dir / settings.sample_contacts
    rows: list[dict[str, Any]] = []
    if path.exists():
        with path.open(newline="", encoding="utf-8") as fh:
            for i, row in enumerate(csv.DictReader(fh)):
                if i >= limit:
                    break
                rows.append({k: v for k, v in row.items() if k and v not in (None, "")})
    if not rows:
        rows = [{"email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace",
                 "country": "GB", "timezone": "Europe/London", "locale": "en_GB"}]
    for row in rows:
        row.setdefault("id", 0)
        row.setdefault("attributes", {})
    return rows


def hint_for(name: str, choices: list[str], what: str) -> str:
    return suggest(name, choices) or (
        f"known {what}: {', '.join(sorted(choices))}" if choices else f"no {what} defined yet")
