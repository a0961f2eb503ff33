"""`newsletter build` and `newsletter check`: load, render, check, write the files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from newsletter.compose.checks import Finding, check_rendered
from newsletter.compose.issue.model import Issue
from newsletter.compose.issue.parse import load_issue
from newsletter.compose.render import Rendered, Renderer
from newsletter.config import Settings


@dataclass(frozen=True)
class BuildResult:
    issue: Issue
    rendered: Rendered
    files: tuple[Path, ...]
    findings: tuple[Finding, ...]


def render_issue(settings: Settings, issue_file: Path, *, templates_dir: Path | None = None) -> Rendered:
    issue = load_issue(issue_file, default_language=settings.newsletter.language)
    return Renderer(settings, templates_dir).render(issue)


def check_issue(
    settings: Settings, issue_file: Path, *, templates_dir: Path | None = None
) -> tuple[Issue, list[Finding]]:
    rendered = render_issue(settings, issue_file, templates_dir=templates_dir)
    return rendered.issue, check_rendered(rendered, settings)


def build_issue(
    settings: Settings, issue_file: Path, *, out_dir: Path | None = None, templates_dir: Path | None = None
) -> BuildResult:
    """Write email.html, email.txt and web.html (slots filled with preview values)."""
    rendered = render_issue(settings, issue_file, templates_dir=templates_dir)
    out_dir = out_dir or Path("build") / rendered.issue.slug
    out_dir.mkdir(parents=True, exist_ok=True)
    email_html, email_text = rendered.preview(settings)
    files = []
    for name, content in (("email.html", email_html), ("email.txt", email_text), ("web.html", rendered.web_html)):
        path = out_dir / name
        # Write next to the target and rename, so a reader (the preview, a browser) never
        # sees half a file.
        partial = path.with_name(path.name + ".partial")
        partial.write_text(content, encoding="utf-8")
        partial.replace(path)
        files.append(path)
    return BuildResult(rendered.issue, rendered, tuple(files), tuple(check_rendered(rendered, settings)))
