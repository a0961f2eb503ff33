"""Planning a send: render and check the issue, store it, and work out the audience, the
rate and the number of workers, before anything is sent.

    plan = plan_send(settings, store, issue_file, options)   # what would happen; no mail
    summary = run_send(plan, progress=...)                   # do it (campaign.py)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from newsletter import config as config_module
from newsletter.compose.checks import Finding, check_rendered, issue_links, repeated_links
from newsletter.compose.issue.model import Issue
from newsletter.compose.issue.parse import load_issue
from newsletter.compose.render import Rendered, Renderer, SlottedText
from newsletter.config import Settings
from newsletter.errors import ConfigError, InputError
from newsletter.mail.message import MessageFactory
from newsletter.sending.warmup import Clock, WarmupBudget, todays_budget, utc_now
from newsletter.store import Store, ledger
from newsletter.store.ledger import LedgerCounts, StoredIssue
from newsletter.store.link_history import earlier_links
from newsletter.store.lists import find_list_id, get_or_create_list
from newsletter.tokens import Links, Tokens
from newsletter.transports.base import SendQuota
from newsletter.transports.configured import open_transport
from newsletter.transports.ses import account

TEST_SUBJECT_PREFIX = "[TEST] "


@dataclass(frozen=True)
class SendOptions:
    list_slug: str | None = None
    rate: float | None = None
    workers: int | None = None
    retry_failed: bool = False
    resend_uncertain: bool = False
    force: bool = False
    templates_dir: Path | None = None
    # What time it is, for the warm-up's day (tests set it to simulate days).
    clock: Clock = utc_now
    # For `send --test`: the list need not exist yet.
    for_test: bool = False


@dataclass
class SendPlan:
    """What `run_send` will do; everything the CLI shows before asking for confirmation."""

    settings: Settings
    store: Store
    options: SendOptions
    issue: Issue
    rendered: Rendered
    stored: StoredIssue
    list_slug: str
    list_id: int
    counts: LedgerCounts
    # Rows that will be attempted: the queued ones, or the whole audience before the snapshot.
    audience: int
    findings: list[Finding]
    rate: float | None
    workers: int
    quota: SendQuota | None
    notes: list[str] = field(default_factory=list)
    # Why no send can go now (a paused SES account): refused before anything is asked.
    refusal: str | None = None
    # Today's warm-up allowance; None when [sending] warmup is off.
    warmup: WarmupBudget | None = None

    @property
    def snapshotted(self) -> bool:
        return self.stored.snapshot_at is not None

    @property
    def complete(self) -> bool:
        return self.stored.completed_at is not None and not self.audience

    def message_factory(self, *, subject_prefix: str = "") -> MessageFactory:
        return MessageFactory(
            self.settings,
            self.rendered,
            issue_id=self.stored.id,
            issue_uid=self.stored.uid,
            list_slug=self.list_slug,
            links=Links(self.settings.base_url, Tokens(self.settings.newsletter.secret)),
            subject_prefix=subject_prefix,
        )

    @property
    def blocked(self) -> bool:
        return any(f.failed for f in self.findings) and not self.options.force


# ---------------------------------------------------------------------------
def plan_send(settings: Settings, store: Store, issue_file: Path, options: SendOptions) -> SendPlan:
    """Render and check the issue, store it, and work out audience, rate and workers.

    Writes only the issue's own row (content, links); no ledger row changes here.
    """
    require_sending_secret(settings)
    issue = load_issue(issue_file, default_language=settings.newsletter.language)
    fresh = Renderer(settings, options.templates_dir).render(issue)
    return plan_rendered(settings, store, fresh, check_rendered(fresh, settings), options)


def plan_rendered(
    settings: Settings, store: Store, fresh: Rendered, findings: list[Finding], options: SendOptions
) -> SendPlan:
    """`plan_send` for an issue already rendered and checked: a scheduled send's frozen
    render (sending/schedule.py) goes out as it was when it was scheduled."""
    require_sending_secret(settings)
    issue = fresh.issue
    email_html, email_text = fresh.html.marked(), fresh.text.marked()
    source_sha = ledger.source_digest(email_html + email_text + fresh.web_html)
    notes: list[str] = []
    with store.begin() as conn:
        stored = ledger.get_issue(conn, issue.slug)
        list_slug = _list_slug(settings, options, issue, stored, conn)
        list_id = find_list_id(conn, list_slug)
        if list_id is None and options.for_test:
            # A [TEST] copy needs no audience, only the issue's row (its links resolve
            # through it); the list it names is where subscribers will be imported.
            list_id = get_or_create_list(conn, list_slug)
        if list_id is None:
            raise InputError(
                f"there is no list {list_slug!r}; import subscribers into it first "
                f"(newsletter subscribers import FILE --list {list_slug})"
            )
        urls = (url for url, _ in issue_links(issue))
        findings += repeated_links(issue, earlier_links(conn, list_slug, urls, slug=issue.slug, issue_date=issue.date))
        stored = ledger.save_issue(
            conn,
            slug=issue.slug,
            title=issue.title,
            subject=issue.subject,
            preheader=issue.preheader,
            issue_date=issue.date,
            language=issue.language,
            list_id=list_id,
            email_html=email_html,
            email_text=email_text,
            web_html=fresh.web_html,
            source_sha256=source_sha,
            link_urls=fresh.links,
            link_origins=[origin.as_json() for origin in fresh.link_origins],
        )
        if stored.snapshot_at is not None:
            rendered = _frozen(stored, issue, ledger.issue_links(conn, stored.id))
            if stored.source_sha256 != source_sha:
                notes.append(
                    f"{issue.path} changed since this issue's send began; the rest of its audience gets "
                    "the version already being sent, so everyone receives the same issue"
                )
            counts = ledger.counts(conn, stored.id)
            # Rows failed temporarily go again once due (sending/retry.py), or all at once
            # with --retry-failed.
            due = (
                counts.failed_temporary
                if options.retry_failed
                else ledger.due_retries(conn, stored.id, options.clock())
            )
            audience = counts.queued + due
            if options.resend_uncertain:
                audience += counts.sending
        else:
            rendered = fresh
            counts = LedgerCounts()
            audience = ledger.count_audience(conn, list_id)
    quota, verified = _account(settings)
    refusal = None
    if quota is not None and not quota.sending_enabled:
        refusal = f"{account.PAUSED}; {account.PAUSED_FIX}"
    if quota is not None and not quota.production_access and verified is not None:
        with store.read() as conn:
            unverified = sum(
                1
                for address in ledger.addresses_to_send(
                    conn, stored.id, list_id, snapshotted=stored.snapshot_at is not None
                )
                if not account.sandbox_receives(address, verified)
            )
        notes.append(
            f"{account.SANDBOX}: {unverified:,} of the {audience:,} addresses to send to are not verified "
            f"and will be refused; {account.SANDBOX_FIX}"
        )
    rate = _effective_rate(settings, options, quota, notes)
    workers = options.workers or _default_workers(settings, rate)
    if quota is not None and quota.remaining_24_hours is not None and audience > quota.remaining_24_hours:
        notes.append(
            f"SES allows {int(quota.remaining_24_hours)} more messages in the current 24 hours; the send will stop "
            "there and resume when you run it again"
        )
    warmup = todays_budget(settings, store, options.clock)
    if warmup is not None and audience > warmup.remaining:
        notes.append(
            f"warm-up day {warmup.day}: {warmup.cap:,} messages allowed today, {warmup.sent_today:,} already sent; "
            f"this send stops after {warmup.remaining:,} and goes on when you run it again tomorrow"
        )
    return SendPlan(
        settings=settings,
        store=store,
        options=options,
        issue=issue,
        rendered=rendered,
        stored=stored,
        list_slug=list_slug,
        list_id=list_id,
        counts=counts,
        audience=audience,
        findings=findings,
        rate=rate,
        workers=workers,
        quota=quota,
        notes=notes,
        refusal=refusal,
        warmup=warmup,
    )


def require_sending_secret(settings: Settings) -> None:
    Tokens(settings.newsletter.secret)  # raises ConfigError naming the key when it is empty
    if settings.newsletter.secret == config_module.DEMO_SECRET and settings.transport.kind != "outbox":
        raise ConfigError(
            "is the example configuration's demo secret; set a long random one (NEWSLETTER_SECRET) "
            "before sending real mail",
            key="newsletter.secret",
            source=settings.source,
        )
    if (
        settings.transport.kind != "outbox"
        and len(settings.newsletter.secret.encode("utf-8")) < config_module.MIN_SECRET_BYTES
    ):
        # `newsletter serve` refuses it too (web/refusals.py): the links would lead nowhere.
        raise ConfigError(
            f"must be at least {config_module.MIN_SECRET_BYTES} bytes long with the {settings.transport.kind} "
            "transport (make one: python3 -c 'import secrets; print(secrets.token_urlsafe(48))')",
            key="newsletter.secret",
            source=settings.source,
        )


def _list_slug(settings: Settings, options: SendOptions, issue: Issue, stored: StoredIssue | None, conn) -> str:
    wanted = options.list_slug or issue.list or settings.newsletter.list
    if stored is not None and stored.snapshot_at is not None and stored.list_id is not None:
        sent_to = ledger.list_slug(conn, stored.list_id)
        if options.list_slug and options.list_slug != sent_to:
            raise InputError(
                f"issue {issue.slug!r} is being sent to list {sent_to!r}; it cannot go to {options.list_slug!r} as well"
            )
        return sent_to
    return wanted


def _frozen(stored: StoredIssue, issue: Issue, link_urls: list[str]) -> Rendered:
    """The issue as stored when its send began."""
    return Rendered(
        issue=dataclasses.replace(issue, subject=stored.subject),
        html=SlottedText.parse(stored.email_html),
        text=SlottedText.parse(stored.email_text),
        web_html=stored.web_html,
        links=tuple(link_urls),
    )


def _account(settings: Settings) -> tuple[SendQuota | None, frozenset[str] | None]:
    """SES's quota, and in the sandbox the verified identities (who may receive mail)."""
    if settings.transport.kind != "ses":
        return None, None
    with open_transport(settings) as transport:
        quota = transport.quota()
        if quota is None or quota.production_access:
            return quota, None
        listing = getattr(transport, "verified_identities", None)
        return quota, listing() if listing is not None else None


def _effective_rate(
    settings: Settings, options: SendOptions, quota: SendQuota | None, notes: list[str]
) -> float | None:
    """--rate, else the configured rate, else SES's MaxSendRate; never above MaxSendRate."""
    configured = {"smtp": settings.transport.smtp.rate, "ses": settings.transport.ses.rate}.get(
        settings.transport.kind, 0
    )
    rate = options.rate or configured or None
    if quota is not None and quota.max_send_rate > 0:
        if rate is None:
            rate = quota.max_send_rate
        elif rate > quota.max_send_rate:
            notes.append(f"SES allows {quota.max_send_rate:g} messages/s; sending at that rate instead of {rate:g}")
            rate = quota.max_send_rate
    return rate


def _default_workers(settings: Settings, rate: float | None) -> int:
    """Enough threads to reach the rate: an SES call takes ~50-150 ms, an SMTP transaction
    longer; the outbox writes local files, where more threads only fight over the GIL."""
    if settings.transport.kind == "outbox":
        return 1
    latency = 0.15 if settings.transport.kind == "ses" else 0.3
    wanted = math.ceil((rate or 20) * latency) + 1
    return max(1, min(wanted, 32 if settings.transport.kind == "ses" else 8))
