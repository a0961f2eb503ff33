"""`newsletter build` and `newsletter check`: load, render, check, write the files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from newsletter.compose.checks import Finding, check_rendered, issue_links, repeated_links
from newsletter.compose.issue.model import Issue
from newsletter.compose.issue.parse import load_issue
from newsletter.compose.render import Rendered, Renderer
from newsletter.config import Settings
from newsletter.errors import InputError


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
    settings: Settings, issue_file: Path, *, templates_dir: Path | None = None, fetch_links: bool = False
) -> tuple[Issue, list[Finding]]:
    """Every check; with `fetch_links`, each link is also fetched (`link_check.py`).  Links
    already sent in an earlier issue of the list are looked up when the database exists."""
    rendered = render_issue(settings, issue_file, templates_dir=templates_dir)
    findings = check_rendered(rendered, settings) + history_findings(settings, rendered.issue)
    if fetch_links:
        from newsletter.compose.link_check import check_links

        findings += check_links(rendered.issue)
    return rendered.issue, sorted(findings, key=lambda finding: finding.line or 0)


def history_findings(settings: Settings, issue: Issue) -> list[Finding]:
    """Links this issue shares with issues already sent to its list; nothing when there is
    no database yet (a check must not create one)."""
    from newsletter.errors import StoreError
    from newsletter.store import Store
    from newsletter.store.link_history import earlier_links

    url = settings.database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return []
    try:
        with Store.open(url) as store, store.read() as conn:
            earlier = earlier_links(
                conn,
                issue.list or settings.newsletter.list,
                (link for link, _ in issue_links(issue)),
                slug=issue.slug,
                issue_date=issue.date,
            )
    except StoreError as err:
        return [Finding("warning", "repeat", f"links not compared with earlier issues: {err}", issue.path, None)]
    return repeated_links(issue, earlier)


def build_issue(
    settings: Settings, issue_file: Path, *, out_dir: Path | None = None, templates_dir: Path | None = None
) -> BuildResult:
    """Write email.html, email.txt and web.html (slots filled with preview values)."""
    rendered = render_issue(settings, issue_file, templates_dir=templates_dir)
    out_dir = out_dir or Path("build") / rendered.issue.slug
    email_html, email_text = rendered.preview(settings)
    files = []
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, content in (("email.html", email_html), ("email.txt", email_text), ("web.html", rendered.web_html)):
            path = out_dir / name
            # Write next to the target and rename, so a reader (the preview, a browser) never
            # sees half a file.
            partial = path.with_name(path.name + ".partial")
            partial.write_text(content, encoding="utf-8")
            partial.replace(path)
            files.append(path)
    except FileExistsError:
        raise InputError(f"{out_dir}: exists and is not a directory; give --out a directory") from None
    except OSError as err:
        raise InputError(f"{out_dir}: cannot write the build there: {err.strerror or err}") from None
    return BuildResult(rendered.issue, rendered, tuple(files), tuple(check_rendered(rendered, settings)))
