"""One checkup of the sending setup: the From domain's DNS, the SES identity and account
(when the transport is SES), and the web side.  Each finding is a `Check`; the report's exit
code is 1 when any of them failed.

    report = run_doctor(settings)
    print(report.text())
"""

from __future__ import annotations

from newsletter.config import Settings
from newsletter.doctor import dns_checks, ses_checks, web_checks
from newsletter.doctor.dns_checks import DkimPlan, Dns
from newsletter.doctor.report import Check, Report


def run_doctor(settings: Settings) -> Report:
    domain = settings.sender_domain
    kind = settings.transport.kind
    dns = Dns(settings.doctor.nameservers, settings.doctor.timeout)
    checks: list[Check] = []
    ses_found: list[Check] = []
    signing_domain: str | None = None
    bounce_domain, why = domain, "bounces to the From address have nowhere to go"
    if kind == "ses":
        ses_found, identity = ses_checks.check_ses(settings)
        signing_domain = identity.dkim_domain
        if identity.mail_from_domain:
            bounce_domain, why = identity.mail_from_domain, "SES cannot take bounces at the custom MAIL FROM domain"
    checks.append(dns_checks.spf(dns, domain, ses=kind == "ses"))
    plan = _dkim_plan(settings)
    if plan.kind == "selector":
        checks.append(dns_checks.dkim_key(dns, domain, plan))
        signing_domain = domain
    elif kind == "smtp":
        checks.append(
            Check(
                "dns",
                "DKIM",
                "warn",
                "newsletter does not sign (no [transport.smtp] dkim_selector); only right if your SMTP server signs",
                "set dkim_selector and dkim_key_file, or make sure the server signs with d=" + domain,
            )
        )
        signing_domain = None
    dmarc_check, tags = dns_checks.dmarc(dns, domain)
    checks.append(dmarc_check)
    if kind != "outbox":
        checks.append(dns_checks.alignment(domain, tags, signing_domain))
    checks.append(dns_checks.bounce_mx(dns, bounce_domain, why=why))
    checks += ses_found
    checks += web_checks.check_web(settings)
    return Report(domain, tuple(checks))


def _dkim_plan(settings: Settings) -> DkimPlan:
    from newsletter.mail.dkim_signer import dkim_signer

    if settings.transport.kind == "ses":
        return DkimPlan("ses")
    signer = dkim_signer(settings) if settings.transport.kind == "smtp" else None
    if signer is None:
        return DkimPlan("none")
    return DkimPlan("selector", selector=settings.transport.smtp.dkim_selector, public_key=signer.public_key())
