"""`POST /hooks/ses`: SES events delivered by Amazon SNS over HTTP(S).

    routes = hook_routes(context)      # mounted by the serve app

The configuration set's event destination publishes to an SNS topic, and the topic's HTTPS
subscription posts each message here.  The answer tells SNS what to do next: SNS treats any
2xx as delivered, does not retry a 4xx, and retries anything else (and timeouts) for up to an
hour (SNS Developer Guide, "Amazon SNS message delivery retries" and "Prepare your HTTP/S
endpoint").  Hence:

- a message that does not verify (signature, topic, certificate host, age) -> 403: it is not
  from SNS, and repeating it will not make it so;
- an authentic message whose SES record we cannot read -> 400, logged: retrying cannot help;
- a failure on our side (the database) -> 503, so SNS tries again later; the dedupe key makes
  the retry harmless if the first attempt committed after all;
- everything else -> 200, including events about mail that is not in the ledger.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from newsletter.errors import StoreError, WebhookError
from newsletter.feedback.apply import FeedbackResult, apply_feedback_event
from newsletter.feedback.suppression import SuppressionPolicy
from newsletter.transports.ses.events import event_from_sns
from newsletter.transports.ses.sns import (
    MalformedMessage,
    SnsMessage,
    SnsMessageType,
    SnsVerifier,
    confirm_subscription,
)
from newsletter.web.log_lines import web_logger

log = web_logger(__name__)

# SNS messages are at most 256 KiB of payload plus the JSON envelope around it; anything much
# larger is not from SNS and is refused before it is read whole.
MAX_BODY_BYTES = 512 * 1024


class SesHook:
    """The `/hooks/ses` endpoint over a `WebContext`."""

    def __init__(self, context) -> None:
        self.context = context
        self.store = context.store
        self.policy = SuppressionPolicy.from_settings(context.settings.events)
        # One verifier for the app's lifetime: it caches SNS signing certificates.
        self.verifier: SnsVerifier = context.sns_verifier or SnsVerifier.from_settings(context.settings.events)
        if not context.settings.events.topic_arns and context.sns_verifier is None:
            log.warning("events.topic_arns is empty: /hooks/ses refuses every SNS message until a topic is configured")

    async def receive(self, request: Request) -> Response:
        body = await _read_limited(request, MAX_BODY_BYTES)
        if body is None:
            return _answer(413, "message too large for an SNS notification")
        try:
            # In a thread: verifying may fetch a signing certificate over the network.
            message = await run_in_threadpool(self.verifier.verify, body)
        except MalformedMessage as err:
            log.warning("/hooks/ses refused a malformed body: %s", err)
            return _answer(400, "not an SNS message")
        except WebhookError as err:
            log.warning("/hooks/ses refused a message: %s", err)
            return _answer(403, "not a verifiable SNS message")

        if message.type is SnsMessageType.SUBSCRIPTION_CONFIRMATION:
            return await self._confirm(message)
        if message.type is SnsMessageType.UNSUBSCRIBE_CONFIRMATION:
            # Someone unsubscribed this endpoint from the topic; nothing to do but say so,
            # since events stop arriving from now on.
            log.warning("SNS topic %s unsubscribed this endpoint (message %s)", message.topic_arn, message.message_id)
            return _answer(200, "ok")
        return await self._notification(message)

    async def _confirm(self, message: SnsMessage) -> Response:
        try:
            # SubscribeURL was checked to be on an SNS https origin by the verifier.
            await run_in_threadpool(confirm_subscription, message)
        except WebhookError as err:
            # Not the sender's fault: the request was authentic, our fetch failed.  A 5xx lets
            # SNS deliver the confirmation again.
            log.error("confirming the SNS subscription to %s failed: %s", message.topic_arn, err)
            return _answer(502, "could not confirm the subscription")
        log.info("confirmed the SNS subscription to %s", message.topic_arn)
        return _answer(200, "subscription confirmed")

    async def _notification(self, message: SnsMessage) -> Response:
        try:
            event = event_from_sns(message)
        except WebhookError as err:
            log.error(
                "SNS message %s from %s is authentic but not an SES event we read: %s",
                message.message_id,
                message.topic_arn,
                err,
            )
            return _answer(400, "not an SES event")
        if event is None:
            # SES's own set-up notices: authentic, and about nothing.
            return _answer(200, "ok")
        try:
            result = await run_in_threadpool(self._apply, event)
        except StoreError as err:
            log.error("SES event %s not stored, SNS will retry: %s", event.provider_message_id, err)
            return _answer(503, "try again later")
        log.info("%s", result.describe())
        return _answer(200, "ok")

    def _apply(self, event) -> FeedbackResult:
        with self.store.begin() as conn:
            return apply_feedback_event(conn, event, self.policy)


def hook_routes(context) -> list[Route]:
    """The SNS endpoint for SES events, over the app's `WebContext`."""
    hook = SesHook(context)
    return [Route("/hooks/ses", hook.receive, methods=["POST"], name="ses_hook")]


async def _read_limited(request: Request, limit: int) -> bytes | None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _answer(status: int, text: str) -> Response:
    return PlainTextResponse(text + "\n", status_code=status, headers={"Cache-Control": "no-store"})
