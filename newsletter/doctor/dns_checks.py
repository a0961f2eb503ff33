"""The From domain's DNS as receivers read it: SPF (RFC 7208), DKIM keys (RFC 6376), DMARC
(RFC 7489) and MX for where bounces go.  Gmail's and Yahoo's bulk-sender rules (2024) ask
for SPF and DKIM, a DMARC record (p=none at least) and alignment with the From domain.

Every question goes through dnspython to the resolvers of `[doctor] nameservers` (or the
system's); an answer that does not come is a failed check, not a traceback.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

from newsletter.doctor.report import FAIL, OK, WARN, Check

AREA = "dns"


class DnsProblem(Exception):
    """The resolver did not answer (timeout, SERVFAIL, no server): not the same as "no record"."""


class Dns:
    """TXT and MX look-ups through dnspython, answering [] for a name or type that has none."""

    def __init__(self, nameservers: Sequence[str], timeout: float) -> None:
        import dns.nameserver
        import dns.resolver

        if nameservers:
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = [_nameserver(dns.nameserver, entry) for entry in nameservers]
        else:
            resolver = dns.resolver.Resolver()
        resolver.lifetime = timeout
        self.resolver = resolver

    def txt(self, name: str) -> list[str]:
        # A TXT record may be split into several character strings (RFC 7208 section 3.3:
        # joined without spaces).
        return [b"".join(record.strings).decode("utf-8", "replace") for record in self._ask(name, "TXT")]

    def mx(self, name: str) -> list[str]:
        return [record.exchange.to_text().rstrip(".") for record in self._ask(name, "MX")]

    def _ask(self, name: str, kind: str) -> list:
        import dns.exception
        import dns.resolver

        try:
            return list(self.resolver.resolve(name, kind))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.DNSException, OSError) as err:
            raise DnsProblem(f"no answer for {kind} {name}: {err}") from err


def _nameserver(module, entry: str):
    host, _, port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
    return module.Do53Nameserver(host or entry, int(port) if port else 53)


@dataclass(frozen=True)
class DkimPlan:
    """How the mail is DKIM-signed: by SES (its Easy DKIM status), by us (a selector and the
    public key of our private key), or not known to be signed at all."""

    kind: str  # "ses", "selector" or "none"
    selector: str = ""
    public_key: bytes = b""  # DER SubjectPublicKeyInfo of the configured private key


def spf(dns: Dns, domain: str, *, ses: bool) -> Check:
    try:
        records = [r for r in dns.txt(domain) if r.lower().startswith("v=spf1")]
    except DnsProblem as err:
        return Check(AREA, "SPF", FAIL, str(err), "check [doctor] nameservers or the domain's DNS servers")
    suggestion = '"v=spf1 include:amazonses.com ~all"' if ses else '"v=spf1 include:<your mail server> ~all"'
    if not records:
        return Check(AREA, "SPF", FAIL, f"{domain} has no SPF record", f"add a TXT record at {domain}: {suggestion}")
    if len(records) > 1:
        # RFC 7208 section 4.5: more than one record is a permanent error.
        return Check(AREA, "SPF", FAIL, f"{domain} has {len(records)} SPF records", "merge them into one TXT record")
    record = records[0]
    terms = record.lower().split()
    if "+all" in terms or "all" in terms:
        return Check(AREA, "SPF", FAIL, f"{record!r} lets every host send", "end it with ~all or -all")
    if ses and "include:amazonses.com" not in terms:
        return Check(AREA, "SPF", FAIL, f"{record!r} does not include amazonses.com", "add include:amazonses.com")
    if not any(term.endswith("all") for term in terms):
        return Check(AREA, "SPF", WARN, f"{record!r} has no all term", "end it with ~all or -all")
    return Check(AREA, "SPF", OK, record)


def dkim_key(dns: Dns, domain: str, plan: DkimPlan) -> Check:
    """For senders that sign themselves: the selector's key is published and is ours."""
    name = f"{plan.selector}._domainkey.{domain}"
    try:
        records = [r for r in dns.txt(name) if "p=" in r]
    except DnsProblem as err:
        return Check(AREA, "DKIM", FAIL, str(err), "check [doctor] nameservers or the domain's DNS servers")
    if not records:
        return Check(
            AREA,
            "DKIM",
            FAIL,
            f"no DKIM key at {name}",
            f'publish a TXT record at {name}: "v=DKIM1; k=rsa; p=<the public key of dkim_key_file>"',
        )
    tags = _tags(records[0])
    published = "".join(tags.get("p", "").split())
    if not published:
        return Check(AREA, "DKIM", FAIL, f"the key at {name} is revoked (empty p=)", "publish the current public key")
    try:
        matches = base64.b64decode(published) == plan.public_key
    except ValueError:
        matches = False
    if not matches:
        return Check(
            AREA,
            "DKIM",
            FAIL,
            f"the key at {name} is not the public key of dkim_key_file",
            "publish the public key of the configured private key, or point dkim_selector at it",
        )
    return Check(AREA, "DKIM", OK, f"{name} publishes the key messages are signed with")


def dmarc(dns: Dns, domain: str) -> tuple[Check, dict[str, str]]:
    """The DMARC record of `domain`, or of its parent (RFC 7489 section 6.6.3 falls back to the
    organizational domain; one label up covers a sending subdomain)."""
    candidates = [domain]
    if domain.count(".") >= 2:
        candidates.append(domain.split(".", 1)[1])
    try:
        for candidate in candidates:
            records = [r for r in dns.txt(f"_dmarc.{candidate}") if r.lower().startswith("v=dmarc1")]
            if records:
                break
    except DnsProblem as err:
        return Check(AREA, "DMARC", FAIL, str(err), "check [doctor] nameservers or the domain's DNS servers"), {}
    if not records:
        return (
            Check(
                AREA,
                "DMARC",
                FAIL,
                f"_dmarc.{domain} has no DMARC record",
                f'add a TXT record at _dmarc.{domain}: "v=DMARC1; p=none; rua=mailto:dmarc@{domain}", then tighten',
            ),
            {},
        )
    tags = _tags(records[0])
    policy = tags.get("p", "").lower()
    if policy not in ("none", "quarantine", "reject"):
        return Check(AREA, "DMARC", FAIL, f"{records[0]!r} has no valid p=", "set p=none, quarantine or reject"), tags
    if policy == "none":
        return (
            Check(
                AREA,
                "DMARC",
                WARN,
                f"policy p=none at _dmarc.{candidate}: receivers act on no failure",
                "once the rua= reports show your mail passing, move to p=quarantine",
            ),
            tags,
        )
    return Check(AREA, "DMARC", OK, f"p={policy} at _dmarc.{candidate}"), tags


def alignment(domain: str, tags: dict[str, str], signing_domain: str | None) -> Check:
    """DMARC passes when SPF or DKIM passes for a domain aligned with From (RFC 7489 section
    3.1); SES's default MAIL FROM (amazonses.com) never aligns, so DKIM has to."""
    if signing_domain is None:
        return Check(
            AREA,
            "DMARC alignment",
            FAIL,
            f"no DKIM signature for {domain} is known: DMARC fails for every message",
            "sign with the From domain (SES: verify the domain with Easy DKIM; SMTP: set dkim_selector and dkim_key_file)",
        )
    strict = tags.get("adkim", "r").lower() == "s"
    aligned = signing_domain == domain or (not strict and (domain.endswith("." + signing_domain)))
    if not aligned:
        return Check(
            AREA,
            "DMARC alignment",
            FAIL,
            f"DKIM signs for {signing_domain}, From is {domain}" + (" (adkim=s)" if strict else ""),
            f"sign with d={domain}",
        )
    return Check(AREA, "DMARC alignment", OK, f"DKIM d={signing_domain} aligns with From {domain}")


def bounce_mx(dns: Dns, domain: str, *, why: str) -> Check:
    try:
        hosts = dns.mx(domain)
    except DnsProblem as err:
        return Check(AREA, "MX", FAIL, str(err), "check [doctor] nameservers or the domain's DNS servers")
    if not hosts:
        return Check(AREA, "MX", FAIL, f"{domain} has no MX record: {why}", f"add an MX record for {domain}")
    return Check(AREA, "MX", OK, f"{domain} receives mail at {', '.join(sorted(hosts))}")


def _tags(record: str) -> dict[str, str]:
    """`k=v; k=v` tag lists (DKIM and DMARC records)."""
    tags = {}
    for part in record.split(";"):
        key, _, value = part.strip().partition("=")
        if key:
            tags[key.strip().lower()] = value.strip()
    return tags
