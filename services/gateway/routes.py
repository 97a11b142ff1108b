"""Public HTTP routes: open a link, submit the form, show the confirmation."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Mapping
from typing import Any, cast

from litestar import Litestar, Request, Response, asgi, get
from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.exceptions import MethodNotAllowedException, NotFoundException
from litestar.types import ASGIApp, HTTPScope, Receive, Scope, Send

from services.gateway import (
    access,
    form_body,
    form_token,
    i18n,
    link,
    origin_check,
    request_body,
    submission,
)
from services.gateway.accepted_form import AcceptedForms
from services.gateway.directory import Directory, Rejected, Reporter
from services.gateway.duplicate_window import DuplicateWindow
from services.gateway.page import TEXT, Page
from services.gateway.pages import TEMPLATES, Pages, human_size
from services.gateway.publisher import (
    PayloadTooLarge,
    PublishFailed,
    publish_submission,
)
from services.gateway.rate_limit import RateLimiter, client_network
from services.gateway.settings import GatewaySettings
from shared.messaging import DependencyUnavailable
from shared.metrics import LinkMetrics
from shared.random_ids import RandomIds

logger = logging.getLogger(__name__)

LINK_PATHS = [
    # Spelled as the product documentation prints it, which intranets copied.
    "/public/TicketAllgmein/Ticket.aspx",
    "/public/TicketAllgemein/Ticket.aspx",
]
_REFERENCE = re.compile(r"T-[0-9A-Z]{5}-[0-9A-Z]{5}")
_SUBMISSION_IDS = RandomIds()

_STYLESHEET = (TEMPLATES.parent / "static" / "app.css").read_bytes()

AnyRequest = Request[Any, Any, Any]


def _request_id(scope: Scope) -> str:
    return str(scope.get("state", {}).get("request_id", ""))


def _reject(state: State, reason: str, request_id: str) -> Page:
    logger.info(
        "link rejected",
        extra={"event": "link_rejected", "reason": reason, "request_id": request_id},
    )
    link_metrics: LinkMetrics = state.link_metrics
    link_metrics.count_rejection(reason)
    pages: Pages = state.pages
    return pages.not_found()


def _unavailable(exc: Exception, request_id: str) -> None:
    logger.warning(
        "dependency unavailable: %s",
        exc,
        extra={"event": "dependency_unavailable", "request_id": request_id},
    )


@asgi(LINK_PATHS, include_in_schema=False, copy_scope=False)
async def open_form(scope: Scope, receive: Receive, send: Send) -> None:
    """Resolve the link in the query string and render the ticket form.

    A plain ASGI handler, because Litestar's parameter parsing and response
    building took about 50 µs of CPU time per opened link in a measurement,
    a third of the gateway's own work for it.

    A link over a rate limit gets the neutral page with 429 before any
    lookup. Every invalid link is counted against the rate limits and
    answered no sooner than `GATEWAY_INVALID_LINK_MIN_SECONDS` after it
    arrived, so that the reasons, which take zero to two service round
    trips, cannot be distinguished by timing.
    """
    if await _answered_other_method(scope, send, "GET"):
        return
    http_scope = cast("HTTPScope", scope)
    page = await _open_form(http_scope, Litestar.from_scope(scope).state)
    await page(scope, receive, send)


async def _answered_other_method(scope: Scope, send: Send, served: str) -> bool:
    """Respond to a method other than `served` as Litestar does on its own
    routes: OPTIONS with 204 and `Allow`, the others with 405. Returns False
    for a request with the `served` method.

    Litestar passes every kind of request to a plain ASGI handler, so a
    websocket request is closed as on a path without a route.
    """
    if scope["type"] != ScopeType.HTTP:
        raise NotFoundException()
    method = scope["method"]
    if method == served:
        return False
    allow = ", ".join(sorted((served, "OPTIONS")))
    if method != "OPTIONS":
        raise MethodNotAllowedException(headers={"Allow": allow})
    await send(
        {
            "type": "http.response.start",
            "status": 204,
            "headers": [(b"allow", allow.encode("ascii"))],
        }
    )
    await send({"type": "http.response.body", "body": b"", "more_body": False})
    return True


async def _open_form(scope: HTTPScope, state: State) -> Page:
    started = time.monotonic()
    pages: Pages = state.pages
    limiter: RateLimiter = state.rate_limiter
    request_id = _request_id(scope)
    client = scope.get("client")
    address = client_network(client[0] if client else None)
    parsed = link.parse(scope["query_string"])
    secret = parsed.secret if isinstance(parsed, link.Link) else None

    blocked = await limiter.check_link(address, secret)
    if blocked is not None:
        return pages.too_many_requests(blocked.retry_after)
    if isinstance(parsed, link.MalformedLink):
        await limiter.record_link_failure(address, secret, parsed.reason)
        await _pad_rejection(state, started)
        return _reject(state, parsed.reason, request_id)

    directory: Directory = state.directory
    try:
        if isinstance(parsed, link.SignedLink):
            found = await directory.resolve_signed_link(parsed.token, request_id)
        else:
            found = await directory.resolve_link(
                parsed.secret, parsed.personnel_number, request_id
            )
    except DependencyUnavailable as exc:
        _unavailable(exc, request_id)
        return pages.unavailable()
    if isinstance(found, Rejected):
        await limiter.record_link_failure(address, secret, found.reason)
        await _pad_rejection(state, started)
        return _reject(state, found.reason, request_id)

    settings: GatewaySettings = state.settings
    language = i18n.negotiate(_header(scope, b"accept-language"), found.tenant.language)
    context = _context(found, language, _SUBMISSION_IDS.uuid4(), settings)
    scope["state"][access.TENANT_ID] = found.tenant.tenant_id
    # The request's access line names the tenant whose form was opened. A
    # second line at INFO cost about 15 µs, a tenth of opening a link.
    logger.debug(
        "form opened",
        extra={
            "event": "form_opened",
            "tenant_id": found.tenant.tenant_id,
            "submission_id": context.submission_id,
            "signed_link": found.signed,
            "request_id": request_id,
        },
    )
    return pages.form(
        context,
        form_token.sign(settings.form_key, context),
        frame_ancestors=found.tenant.frame_ancestors,
    )


def _header(scope: HTTPScope, name: bytes) -> str | None:
    """Return the first value of the header `name` (lowercase), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def _pad_rejection(state: State, started: float) -> None:
    """Sleep until the invalid-link minimum has passed since `started`."""
    settings: GatewaySettings = state.settings
    remaining = settings.invalid_link_min_seconds - (time.monotonic() - started)
    if remaining > 0:
        await asyncio.sleep(remaining)


def _context(
    found: Reporter,
    language: str,
    submission_id: str,
    settings: GatewaySettings,
    opened_by: form_token.FormContext | None = None,
) -> form_token.FormContext:
    """Build a form's context; `opened_by` carries the opening secret or key
    and a signed link's fixed values over from the form that was posted."""
    now = int(time.time())
    if opened_by is None:
        signed, secret_id, key_id = found.signed, found.secret_id, found.key_id
        location, category = found.preset_location, found.preset_category
        link_expires_at = found.link_expires_at
        first_rendered_at = now
    else:
        signed = opened_by.signed_link
        secret_id, key_id = opened_by.secret_id, opened_by.key_id
        location, category = opened_by.preset_location, opened_by.preset_category
        link_expires_at = opened_by.link_expires_at
        first_rendered_at = opened_by.first_rendered_at
    return form_token.FormContext(
        tenant_id=found.tenant.tenant_id,
        tenant_name=found.tenant.name,
        personnel_number=found.person.personnel_number,
        person_name=found.person.display_name,
        language=language,
        categories=found.tenant.categories,
        submission_id=submission_id,
        expires_at=now + settings.form_ttl_seconds,
        signed_link=signed,
        secret_id=secret_id,
        key_id=key_id,
        preset_location=location,
        preset_category=category,
        link_expires_at=link_expires_at,
        first_rendered_at=first_rendered_at,
    )


def _language(headers: Mapping[str, str]) -> str:
    return i18n.negotiate(headers.get("accept-language"), None)


def _headers(scope: HTTPScope) -> dict[str, str]:
    """Return the request's headers by lowercase name; the first of a
    repeated header wins, as with Litestar's `Request.headers.get`."""
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return headers


async def _read_fields(
    receive: Receive, headers: Mapping[str, str], pages: Pages, limit: int
) -> form_body.FormBody | Page:
    """Read and split the body; only a urlencoded form is accepted.

    Reading first enforces the size limit (413) whatever the content type.
    A multipart body with more parts than a form has fields gets 413 too.
    """
    body = await request_body.read_body(receive, headers, limit)
    language = _language(headers)
    texts = i18n.texts(language)
    too_many = texts["too_many_fields_message"].format(max=form_body.MAX_FIELDS)
    full_type = headers.get("content-type", "")
    content_type = full_type.split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        parts = form_body.multipart_part_count(body, full_type)
        if parts is not None and parts > form_body.MAX_FIELDS:
            return pages.error(language, 413, "request_too_large_title", too_many)
    if content_type != "application/x-www-form-urlencoded":
        return pages.error(
            language,
            415,
            "unsupported_media_type_title",
            texts["unsupported_media_type_message"],
        )
    try:
        return form_body.parse(body)
    except form_body.TooManyFields:
        return pages.error(language, 413, "request_too_large_title", too_many)


def _form_rejected(
    headers: Mapping[str, str], pages: Pages, reason: str, request_id: str
) -> Page:
    logger.info(
        "form rejected: %s",
        reason,
        extra={"event": "form_rejected", "reason": reason, "request_id": request_id},
    )
    language = _language(headers)
    if reason in ("cross_site_fetch", "foreign_origin", "foreign_referer"):
        return pages.error(
            language,
            403,
            "forbidden_title",
            i18n.texts(language)["forbidden_message"],
        )
    return pages.error(
        language, 400, "bad_request_title", i18n.texts(language)["bad_request_message"]
    )


def _confirmation_redirect(
    settings: GatewaySettings, reference: str, language: str, tenant_id: str
) -> Page:
    tenant = form_token.sign_tenant(settings.form_key, tenant_id)
    return Page(
        b"",
        303,
        {
            "Location": f"/public/tickets/{reference}?lang={language}&tenant={tenant}",
            **PUBLIC_REDIRECT_HEADERS,
        },
        media_type=TEXT,
    )


async def _repeated_post(
    state: State,
    context: form_token.FormContext,
    values: dict[str, str],
    request_id: str,
    *,
    sequence: int | None = None,
) -> Page | None:
    """Respond to a post of a form that was already accepted, without publishing:
    the same values redirect to the same confirmation, other values get 409.
    Returns None when no accepted form is found (`AcceptedForms.find`)."""
    forms: AcceptedForms = state.accepted_forms
    found = await forms.find(
        tenant_id=context.tenant_id,
        submission_id=context.submission_id,
        request_id=request_id,
        sequence=sequence,
    )
    if found is None:
        return None
    changed = found.differs_from(values)
    logger.info(
        "form posted again",
        extra={
            "event": "form_replayed",
            "changed": changed,
            "tenant_id": context.tenant_id,
            "submission_id": context.submission_id,
            "request_id": request_id,
        },
    )
    if not changed:
        settings: GatewaySettings = state.settings
        return _confirmation_redirect(
            settings, found.reference, context.language, context.tenant_id
        )
    pages: Pages = state.pages
    message = i18n.texts(context.language)["already_sent_message"].format(
        reference=found.reference
    )
    return pages.error(context.language, 409, "already_sent_title", message)


@asgi("/public/tickets", include_in_schema=False, copy_scope=False)
async def submit(scope: Scope, receive: Receive, send: Send) -> None:
    """Validate a posted form, publish it, and redirect to the confirmation.

    A plain ASGI handler like `open_form`, which saved about 20 µs of CPU
    time per post in a measurement.
    """
    if await _answered_other_method(scope, send, "POST"):
        return
    http_scope = cast("HTTPScope", scope)
    page = await _submit(http_scope, receive, Litestar.from_scope(scope).state)
    await page(scope, receive, send)


async def _submit(scope: HTTPScope, receive: Receive, state: State) -> Page:
    pages: Pages = state.pages
    settings: GatewaySettings = state.settings
    request_id = _request_id(scope)
    headers = _headers(scope)

    # Step 1: read the body, and reject a post that another site sent.
    fields = await _read_fields(receive, headers, pages, settings.max_body_bytes)
    if isinstance(fields, Page):
        return fields
    cross_site = origin_check.cross_site_reason(headers)
    if cross_site is not None:
        return _form_rejected(headers, pages, cross_site, request_id)

    # Step 2: the token identifies the form; a forged one is rejected here.
    try:
        context = form_token.verify(
            settings.form_key, fields.values.get("form_token", "")
        )
        expired = False
    except form_token.ExpiredToken as exc:
        context, expired = exc.context, True
    except form_token.InvalidToken as exc:
        return _form_rejected(headers, pages, str(exc), request_id)
    scope["state"][access.TENANT_ID] = context.tenant_id
    if expired and 0 < context.link_expires_at <= time.time():
        # A form lives its own lifetime, but is never renewed past the expiry
        # of the signed link that opened it.
        return _reject(state, "expired_link", request_id)
    values = {name: fields.values.get(name, "") for name in submission.FIELDS}
    # A signed link's fixed values win over whatever was posted.
    if context.preset_category:
        values["category"] = context.preset_category
    if context.preset_location:
        values["location"] = context.preset_location
    # A repeat of a young form is caught by the publish below, which JetStream
    # reports as a duplicate. Only older forms are looked up first.
    window: DuplicateWindow = state.duplicate_window
    looked_up = not await window.covers(context.first_rendered_at)
    if looked_up:
        repeated = await _repeated_post(state, context, values, request_id)
        if repeated is not None:
            return repeated

    async def answer_to_repeat() -> Page | None:
        # A check below may reject a young form that was accepted before;
        # its repeat gets the confirmation or 409, as an older form's does.
        if looked_up:
            return None
        return await _repeated_post(state, context, values, request_id)

    # Step 3: check again that intake is on, the person active and the secret
    # or key that opened the form still valid. An expired token gets a fresh
    # one only after this check, so a revoked secret cannot renew its forms.
    directory: Directory = state.directory
    try:
        found = await directory.recheck(
            context.tenant_id,
            context.personnel_number,
            request_id,
            secret_id=context.secret_id,
            key_id=context.key_id,
        )
    except DependencyUnavailable as exc:
        _unavailable(exc, request_id)
        return pages.form(
            context,
            form_token.sign(settings.form_key, context),
            values=values,
            banner_key="banner_unavailable",
            status=503,
        )
    if isinstance(found, Rejected):
        if (repeated := await answer_to_repeat()) is not None:
            return repeated
        return _reject(state, found.reason, request_id)
    fresh = _context(found, context.language, context.submission_id, settings, context)
    frame_ancestors = found.tenant.frame_ancestors
    if expired and (repeated := await answer_to_repeat()) is not None:
        return repeated
    if expired:
        return pages.form(
            fresh,
            form_token.sign(settings.form_key, fresh),
            values=values,
            banner_key="banner_expired",
            status=400,
            frame_ancestors=frame_ancestors,
        )

    # Step 4: validate every field and show all errors at once.
    errors = submission.validate(values, fields.invalid_encoding, fresh.categories)
    if errors and (repeated := await answer_to_repeat()) is not None:
        return repeated
    if errors:
        logger.info(
            "form has invalid fields",
            extra={
                "event": "form_invalid",
                "fields": ",".join(sorted(errors)),
                "request_id": request_id,
            },
        )
        return pages.form(
            fresh,
            form_token.sign(settings.form_key, fresh),
            values=values,
            errors=errors,
            status=400,
            frame_ancestors=frame_ancestors,
        )

    # Step 5: the person and the tenant may have sent too many forms.
    limiter: RateLimiter = state.rate_limiter
    blocked = await limiter.check_submission(fresh.tenant_id, fresh.personnel_number)
    if blocked is not None and (repeated := await answer_to_repeat()) is not None:
        return repeated
    if blocked is not None:
        return pages.form(
            fresh,
            form_token.sign(settings.form_key, fresh),
            values=values,
            banner_key="banner_rate_limited",
            status=429,
            frame_ancestors=frame_ancestors,
            retry_after=blocked.retry_after,
        )

    # Step 6: publish, and respond only once JetStream has stored the event.
    event = submission.build_event(fresh, values)
    try:
        published = await publish_submission(
            state.nc, event, timeout=settings.request_timeout, request_id=request_id
        )
    except PayloadTooLarge as exc:
        logger.info(
            "submission too large for NATS: %s",
            exc,
            extra={"event": "payload_too_large", "request_id": request_id},
        )
        return _too_large(pages, fresh.language, exc.limit)
    except PublishFailed as exc:
        logger.warning(
            "publish failed: %s",
            exc,
            extra={
                "event": "publish_failed",
                "reason": exc.reason,
                "submission_id": fresh.submission_id,
                "request_id": request_id,
            },
        )
        return pages.form(
            fresh,
            form_token.sign(settings.form_key, fresh),
            values=values,
            banner_key="banner_unavailable",
            status=503,
            frame_ancestors=frame_ancestors,
        )
    duplicate = published.duplicate
    if duplicate:
        repeated = await _repeated_post(
            state, context, values, request_id, sequence=published.sequence
        )
        if repeated is not None:
            return repeated
    logger.info(
        "submission accepted",
        extra={
            "event": "submission_duplicate" if duplicate else "submission_accepted",
            "tenant_id": fresh.tenant_id,
            "submission_id": fresh.submission_id,
            "reference": event.data.reference,
            "request_id": request_id,
        },
    )
    if not duplicate:
        # Only the post that JetStream took first counts against the limits.
        await limiter.count_submission(fresh.tenant_id, fresh.personnel_number)
        if not looked_up:
            # An older form's earlier post may not be stored yet, so this
            # publish may not be the first, and its repeats are looked up again.
            forms: AcceptedForms = state.accepted_forms
            forms.remember(fresh.submission_id, event.data.reference, values)
    return _confirmation_redirect(
        settings, event.data.reference, fresh.language, fresh.tenant_id
    )


PUBLIC_REDIRECT_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}


def _too_large(pages: Pages, language: str, limit: int) -> Page:
    message = i18n.texts(language)["request_too_large_message"].format(
        limit=human_size(limit)
    )
    return pages.error(language, 413, "request_too_large_title", message)


@get("/public/tickets/{reference:str}", include_in_schema=False)
async def confirmation(
    request: AnyRequest,
    reference: str,
    state: State,
    lang: str | None = None,
    tenant: str | None = None,
) -> ASGIApp:
    """Show the reference of an accepted submission; reveals nothing else.

    `tenant` is the signed tenant id from the redirect, so that the page
    may be framed by the origins that tenant allows, like its form.
    """
    pages: Pages = state.pages
    if not _REFERENCE.fullmatch(reference):
        return pages.not_found()
    language = lang if lang in i18n.LANGUAGES else i18n.DEFAULT_LANGUAGE
    settings: GatewaySettings = state.settings
    tenant_id = form_token.verify_tenant(settings.form_key, tenant or "")
    frame_ancestors: list[str] = []
    if tenant_id is not None:
        directory: Directory = state.directory
        frame_ancestors = await directory.frame_ancestors(
            tenant_id, _request_id(request.scope)
        )
    return pages.confirmation(language, reference, frame_ancestors)


@get("/public/static/app.css", sync_to_thread=False, include_in_schema=False)
def stylesheet() -> Response[bytes]:
    return Response(
        content=_STYLESHEET,
        media_type="text/css",
        headers={"Cache-Control": "public, max-age=3600"},
    )


def request_too_large(request: AnyRequest, _: Exception) -> Response[bytes]:
    """Exception handler for bodies over `GATEWAY_MAX_BODY_BYTES` or too many
    fields: an HTML page that states the limit."""
    state = request.app.state
    language = _language(request.headers)
    return _too_large(
        state.pages, language, state.settings.max_body_bytes
    ).to_response()
