"""The SES side, as the sesv2 API reports it: the sending identity (verified, Easy DKIM, a
custom MAIL FROM domain), the account (sending enabled, sandbox or production, quota and
rate) and the configuration set that publishes bounces and complaints.

Reads only, through one boto3 session (a client costs a few tenths of a second to make; the
session's loaded service models are shared).  The account is read with GetAccount and
turned into the `SendQuota` the send paces by; event destinations come from SES's v1
DescribeConfigurationSet, which reads the same configuration sets and which
SES-compatible servers (moto) answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from newsletter.config import Settings
from newsletter.doctor.report import FAIL, OK, WARN, Check
from newsletter.transports.ses.account import PAUSED, PAUSED_FIX, SANDBOX, SANDBOX_FIX, send_quota

AREA = "ses"


@dataclass(frozen=True)
class Identity:
    """What the identity check learnt, for the DNS checks that depend on it."""

    name: str | None  # the identity that covers the From address, if any
    dkim_domain: str | None  # the domain SES signs for with Easy DKIM, if it does
    mail_from_domain: str | None  # the custom MAIL FROM domain, if one is set


def check_ses(settings: Settings) -> tuple[list[Check], Identity]:
    import boto3

    ses = settings.transport.ses
    session = boto3.session.Session()
    client = _client(session, "sesv2", settings)
    checks: list[Check] = []
    try:
        identity, found = _identity(client, settings)
        checks += found
        checks += _account(client)
        if ses.configuration_set:
            checks += _configuration_set(session, client, settings, ses.configuration_set)
        else:
            checks.append(
                Check(
                    AREA,
                    "configuration set",
                    WARN,
                    "none configured: SES publishes no bounce or complaint events for these sends",
                    "create one with an SNS or SQS event destination and set [transport.ses] configuration_set "
                    "(docs/ses-events.md)",
                )
            )
    finally:
        client.close()
    return checks, identity


def _client(session, service: str, settings: Settings):
    from botocore.config import Config

    ses = settings.transport.ses
    timeout = settings.doctor.timeout
    return session.client(
        service,
        region_name=ses.region,
        endpoint_url=ses.endpoint_url or None,
        config=Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1}),
    )


def _identity(client, settings: Settings) -> tuple[Identity, list[Check]]:
    from botocore.exceptions import BotoCoreError, ClientError

    address = settings.from_address
    domain = settings.sender_domain
    answer = None
    name = None
    try:
        for candidate in (domain, address):
            try:
                answer = client.get_email_identity(EmailIdentity=candidate)
                name = candidate
                break
            except client.exceptions.NotFoundException:
                continue
    except (ClientError, BotoCoreError) as err:
        return Identity(None, None, None), [Check(AREA, "identity", FAIL, f"SES did not answer: {err}", _CREDENTIALS)]
    if answer is None or name is None:
        return Identity(None, None, None), [
            Check(
                AREA,
                "identity",
                FAIL,
                f"neither {domain} nor {address} is an SES identity in {settings.transport.ses.region}",
                f"verify the domain {domain} in SES (Identities -> Create identity -> Domain, with Easy DKIM)",
            )
        ]
    checks = []
    status = answer.get("VerificationStatus") or ("SUCCESS" if answer.get("VerifiedForSendingStatus") else "PENDING")
    if status == "SUCCESS":
        checks.append(Check(AREA, "identity", OK, f"{name} is verified for sending"))
    else:
        checks.append(
            Check(
                AREA,
                "identity",
                FAIL,
                f"{name} is not verified ({status})",
                "publish the DNS records SES shows for the identity and wait for verification",
            )
        )
    dkim = answer.get("DkimAttributes") or {}
    dkim_status = dkim.get("Status", "NOT_STARTED")
    is_domain = answer.get("IdentityType") == "DOMAIN"
    if dkim.get("SigningEnabled") and dkim_status == "SUCCESS":
        checks.append(Check(AREA, "DKIM", OK, f"Easy DKIM signs for {name}"))
    elif dkim_status in ("PENDING", "TEMPORARY_FAILURE"):
        checks.append(
            Check(AREA, "DKIM", WARN, f"Easy DKIM is {dkim_status} for {name}", "publish the three DKIM CNAME records")
        )
    else:
        checks.append(
            Check(
                AREA,
                "DKIM",
                FAIL,
                f"SES does not DKIM-sign for {name} ({dkim_status})",
                "enable Easy DKIM on the domain identity and publish its three CNAME records",
            )
        )
    signs = bool(dkim.get("SigningEnabled") and dkim_status == "SUCCESS")
    mail_from = (answer.get("MailFromAttributes") or {}).get("MailFromDomain") or None
    identity = Identity(name, (name if is_domain else name.rpartition("@")[2]) if signs else None, mail_from)
    return identity, checks


def _account(client) -> list[Check]:
    """Sending enabled, sandbox, quota, from GetAccount."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        account = client.get_account()
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") == "404":
            return [Check(AREA, "account", WARN, "this SES endpoint does not answer GetAccount", "")]
        return [Check(AREA, "account", FAIL, f"GetAccount failed: {err}", _CREDENTIALS)]
    except BotoCoreError as err:
        return [Check(AREA, "account", FAIL, f"GetAccount failed: {err}", _CREDENTIALS)]
    quota = send_quota(account)
    checks = []
    if quota.sending_enabled:
        checks.append(Check(AREA, "sending", OK, "sending is enabled"))
    else:
        checks.append(Check(AREA, "sending", FAIL, PAUSED, PAUSED_FIX))
    if quota.production_access:
        checks.append(Check(AREA, "production access", OK, "out of the sandbox"))
    else:
        checks.append(Check(AREA, "production access", WARN, SANDBOX, SANDBOX_FIX))
    remaining = quota.remaining_24_hours
    limit = "unlimited" if remaining is None else f"{int(quota.max_24_hour_send):,} a day, {int(remaining):,} left now"
    status = WARN if remaining is not None and remaining < 0.1 * quota.max_24_hour_send else OK
    checks.append(
        Check(
            AREA,
            "quota",
            status,
            f"{limit}; at most {quota.max_send_rate:g} messages/s",
            "sends past it stop and resume when you run them again; ask AWS for a higher quota",
        )
    )
    return checks


def _configuration_set(session, client, settings: Settings, name: str) -> list[Check]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client.get_configuration_set(ConfigurationSetName=name)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") not in ("NotFoundException", "ConfigurationSetDoesNotExist"):
            return [Check(AREA, "configuration set", FAIL, f"SES did not answer: {err}", _CREDENTIALS)]
        return [
            Check(
                AREA,
                "configuration set",
                FAIL,
                f"{name!r} does not exist in {settings.transport.ses.region}: SES refuses sends naming it",
                "create it, or fix [transport.ses] configuration_set",
            )
        ]
    except BotoCoreError as err:
        return [Check(AREA, "configuration set", FAIL, f"SES did not answer: {err}", _CREDENTIALS)]
    classic = _client(session, "ses", settings)
    try:
        answer = classic.describe_configuration_set(
            ConfigurationSetName=name, ConfigurationSetAttributeNames=["eventDestinations"]
        )
    except (ClientError, BotoCoreError) as err:
        return [Check(AREA, "event publishing", FAIL, f"SES did not answer: {err}", _CREDENTIALS)]
    finally:
        classic.close()
    published: set[str] = set()
    for destination in answer.get("EventDestinations") or []:
        if destination and destination.get("Enabled", True):
            published |= {kind.lower() for kind in destination.get("MatchingEventTypes", [])}
    missing = [kind for kind in ("bounce", "complaint") if kind not in published]
    checks = [Check(AREA, "configuration set", OK, f"{name!r} exists")]
    if missing:
        checks.append(
            Check(
                AREA,
                "event publishing",
                FAIL,
                f"{name!r} publishes no {' or '.join(missing)} events: bad addresses are never suppressed",
                "add an SNS or SQS event destination for Bounce and Complaint (docs/ses-events.md)",
            )
        )
    else:
        checks.append(Check(AREA, "event publishing", OK, f"{name!r} publishes bounces and complaints"))
    return checks


_CREDENTIALS = "check the AWS credentials, [transport.ses] region and endpoint_url"
