"""`newsletter doctor` against real servers on 127.0.0.1: a DNS server (dnslib) serving a
good zone and broken ones (no SPF, DMARC p=none, no DKIM key, no MX), moto's SES (a
verified and an unverified identity, a configuration set with and without event
publishing; the account state through LocalSes's GetAccount), and `newsletter serve` over
https and plain http.  The command runs as the editor runs it (in-process CLI), and its JSON
and exit status are what is checked."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from dkim_keys import SELECTOR, make_key

pytest.register_assert_rewrite("tests.web_site")
from tests.dns_server import LocalDns
from tests.send_world import World
from tests.web_site import Site, served

pytest_plugins = ["dns_server", "tests.transport_servers"]

DOMAIN = "example.com"
TOPIC = "arn:aws:sns:us-east-1:123456789012:newsletter-events"


def good_zone(
    dns: LocalDns,
    *,
    dkim: str | None = None,
    spf: str | None = "v=spf1 include:amazonses.com ~all",
    domain: str = DOMAIN,
) -> None:
    if spf is not None:
        dns.add(domain, "TXT", spf)
    dns.add(domain, "TXT", "google-site-verification=not-an-spf-record")
    dns.add(domain, "MX", f"10 mx.{domain}.")
    dns.add(f"_dmarc.{domain}", "TXT", f"v=DMARC1; p=quarantine; rua=mailto:dmarc@{domain}")
    if dkim is not None:
        dns.add(f"{SELECTOR}._domainkey.{domain}", "TXT", dkim)


@pytest.fixture(scope="module")
def site(tmp_path_factory, tls_certificate) -> Iterator[Site]:
    """`newsletter serve` over https (its certificate trusted through SSL_CERT_FILE)."""
    root = tmp_path_factory.mktemp("doctor-world")
    world = World(root, f"sqlite:///{root / 'newsletter.db'}")
    try:
        with served(world, tls=tls_certificate) as running:
            yield running
    finally:
        world.close()


@pytest.fixture
def doctor(site: Site, local_dns: LocalDns, tls_certificate, monkeypatch, tmp_path):
    """`doctor(**sections)`: configure, run `newsletter doctor --json`, return (exit, checks by name)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_certificate.certfile))
    world = site.world
    world.configure("doctor", nameservers=local_dns.nameserver, timeout=5)
    world.configure("transport", kind="outbox")
    world.configure("newsletter", **{"from": f"AI行业速递 <digest@{DOMAIN}>"})
    world.configure("transport.smtp", dkim_selector="", dkim_key_file="")

    def run(**sections) -> tuple[int, dict[str, dict]]:
        for section, values in sections.items():
            world.configure(section.replace("_", "."), **values)
        result = world.cli("doctor", "--json")
        report = json.loads(result.stdout)
        assert report["ok"] == (result.returncode == 0)
        return result.returncode, {f"{c['area']}:{c['name']}": c for c in report["checks"]}

    return run


def statuses(checks: dict[str, dict]) -> dict[str, str]:
    return {name: check["status"] for name, check in checks.items()}


def test_a_good_zone_with_a_signing_smtp_sender_is_all_green_and_exits_0(doctor, local_dns, tmp_path):
    key_file, record = make_key(tmp_path)
    good_zone(local_dns, dkim=record, spf="v=spf1 ip4:192.0.2.10 -all")
    code, checks = doctor(
        transport={"kind": "smtp"}, transport_smtp={"dkim_selector": SELECTOR, "dkim_key_file": str(key_file)}
    )
    assert statuses(checks) == {
        "dns:SPF": "ok",
        "dns:DKIM": "ok",
        "dns:DMARC": "ok",
        "dns:DMARC alignment": "ok",
        "dns:MX": "ok",
        "web:https": "ok",
        "web:one-click unsubscribe": "ok",
    }
    assert code == 0
    assert (f"{SELECTOR}._domainkey.{DOMAIN}", "TXT") in local_dns.queries


def test_missing_spf_fails_with_the_record_to_add(doctor, local_dns, local_ses):
    good_zone(local_dns, spf=None)
    code, checks = doctor(transport={"kind": "ses"}, transport_ses={"endpoint_url": local_ses.endpoint_url})
    assert code == 1
    assert checks["dns:SPF"]["status"] == "fail"
    assert "include:amazonses.com" in checks["dns:SPF"]["fix"]


def test_spf_without_amazonses_fails_for_ses(doctor, local_dns, local_ses):
    good_zone(local_dns, spf="v=spf1 ip4:192.0.2.10 -all")
    _, checks = doctor(transport={"kind": "ses"}, transport_ses={"endpoint_url": local_ses.endpoint_url})
    assert checks["dns:SPF"]["status"] == "fail" and "amazonses.com" in checks["dns:SPF"]["detail"]


def test_dmarc_p_none_warns_and_no_dmarc_fails(doctor, local_dns):
    local_dns.add(DOMAIN, "TXT", "v=spf1 -all")
    local_dns.add(DOMAIN, "MX", "10 mx.example.com.")
    local_dns.add(f"_dmarc.{DOMAIN}", "TXT", "v=DMARC1; p=none")
    _, checks = doctor()
    assert checks["dns:DMARC"]["status"] == "warn" and "p=quarantine" in checks["dns:DMARC"]["fix"]
    local_dns.clear()
    local_dns.add(DOMAIN, "TXT", "v=spf1 -all")
    code, checks = doctor()
    assert checks["dns:DMARC"]["status"] == "fail" and f"_dmarc.{DOMAIN}" in checks["dns:DMARC"]["fix"]
    assert checks["dns:MX"]["status"] == "fail"
    assert code == 1


def test_no_dkim_key_at_the_selector_fails_and_so_does_alignment_without_signing(doctor, local_dns, tmp_path):
    key_file, _record = make_key(tmp_path)
    good_zone(local_dns, spf="v=spf1 ip4:192.0.2.10 -all")
    code, checks = doctor(
        transport={"kind": "smtp"}, transport_smtp={"dkim_selector": SELECTOR, "dkim_key_file": str(key_file)}
    )
    assert code == 1
    assert checks["dns:DKIM"]["status"] == "fail" and f"{SELECTOR}._domainkey.{DOMAIN}" in checks["dns:DKIM"]["detail"]
    # Another key published than the one configured is as bad as none.
    local_dns.add(f"{SELECTOR}._domainkey.{DOMAIN}", "TXT", make_key(tmp_path / "..")[1])
    _, checks = doctor()
    assert checks["dns:DKIM"]["status"] == "fail" and "not the public key" in checks["dns:DKIM"]["detail"]
    # An SMTP sender that does not sign: a warning, and DMARC alignment cannot be shown.
    _, checks = doctor(transport_smtp={"dkim_selector": "", "dkim_key_file": ""})
    assert checks["dns:DKIM"]["status"] == "warn"
    assert checks["dns:DMARC alignment"]["status"] == "fail"


def test_ses_verified_identity_account_and_event_publishing(doctor, local_dns, local_ses):
    good_zone(local_dns)
    local_ses.verify(DOMAIN)
    local_ses.client().create_configuration_set(ConfigurationSetName="news-events")
    classic = boto3.client(
        "ses",
        region_name=local_ses.region,
        endpoint_url=local_ses.endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    classic.create_configuration_set_event_destination(
        ConfigurationSetName="news-events",
        EventDestination={
            "Name": "news-events-sns",
            "Enabled": True,
            "MatchingEventTypes": ["bounce", "complaint", "delivery"],
            "SNSDestination": {"TopicARN": TOPIC},
        },
    )
    local_ses.set_quota(max_24_hour_send=50_000, max_send_rate=14, sent_last_24_hours=1_000)
    _, checks = doctor(
        transport={"kind": "ses"},
        transport_ses={"endpoint_url": local_ses.endpoint_url, "configuration_set": "news-events"},
    )
    assert checks["ses:identity"]["status"] == "ok" and DOMAIN in checks["ses:identity"]["detail"]
    assert statuses(checks)["ses:sending"] == statuses(checks)["ses:production access"] == "ok"
    assert checks["ses:quota"]["status"] == "ok" and "49,000 left" in checks["ses:quota"]["detail"]
    assert checks["ses:configuration set"]["status"] == "ok"
    assert checks["ses:event publishing"]["status"] == "ok"
    # moto starts Easy DKIM as NOT_STARTED and cannot finish it: the doctor says so.
    assert checks["ses:DKIM"]["status"] == "fail" and "Easy DKIM" in checks["ses:DKIM"]["fix"]
    assert checks["dns:DMARC alignment"]["status"] == "fail"


def test_ses_unverified_identity_paused_sandboxed_account_and_no_events(doctor, local_dns, local_ses):
    # moto keeps identities for the whole session: a domain no test verifies.
    unverified = "unverified.example.org"
    good_zone(local_dns, domain=unverified)
    local_ses.client().create_configuration_set(ConfigurationSetName="quiet")
    local_ses.set_quota(sending_enabled=False, production_access=False)
    code, checks = doctor(
        newsletter={"from": f"AI行业速递 <digest@{unverified}>"},
        transport={"kind": "ses"},
        transport_ses={"endpoint_url": local_ses.endpoint_url, "configuration_set": "quiet"},
    )
    assert code == 1
    assert checks["ses:identity"]["status"] == "fail" and "verify the domain" in checks["ses:identity"]["fix"]
    assert checks["ses:sending"]["status"] == "fail" and "paused" in checks["ses:sending"]["detail"]
    assert (
        checks["ses:production access"]["status"] == "warn" and "sandbox" in checks["ses:production access"]["detail"]
    )
    assert checks["ses:event publishing"]["status"] == "fail"
    _, checks = doctor(transport_ses={"configuration_set": "no-such-set"})
    assert checks["ses:configuration set"]["status"] == "fail"


def test_plain_http_base_url_fails_but_still_answers(doctor, local_dns, site):
    good_zone(local_dns)
    plain = site.url.replace("https://", "http://")
    _, checks = doctor(newsletter={"base_url": site.url})  # the https one, for the record
    assert checks["web:https"]["status"] == "ok"
    _, checks = doctor(newsletter={"base_url": "http://127.0.0.1:9"})
    assert checks["web:https"]["status"] == "fail"
    assert checks["web:one-click unsubscribe"]["status"] == "fail"
    assert plain.startswith("http://")
    site.world.configure("newsletter", base_url=site.url)


def test_text_report_has_a_symbol_and_a_fix_per_problem(doctor, local_dns, site):
    local_dns.add(DOMAIN, "TXT", "v=spf1 -all")
    doctor()
    result = site.world.cli("doctor")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(line.startswith("✓ SPF: v=spf1 -all") for line in lines)
    failed = [index for index, line in enumerate(lines) if line.startswith("✗ ")]
    assert failed and all(lines[index + 1].startswith("    fix: ") for index in failed)
    assert "Traceback" not in result.stdout + result.stderr


def test_an_unreachable_nameserver_is_a_failed_check_not_a_traceback(doctor, local_dns, site):
    site.world.configure("doctor", nameservers="127.0.0.1:9", timeout=0.5)
    result = site.world.cli("doctor", "--json")
    assert result.returncode == 1
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["SPF"]["status"] == "fail" and "no answer" in checks["SPF"]["detail"]
