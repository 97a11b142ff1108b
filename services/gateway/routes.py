"""Public HTTP routes: open a link, submit the form, show the confirmation."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import State

from services.gateway import form_body, form_token, i18n, link, submission
from services.gateway.directory import Directory, Rejected, Reporter
from services.gateway.pages import TEMPLATES, Pages, human_size
from services.gateway.publisher import (
    PayloadTooLarge,
    PublishFailed,
    publish_submission,
)
from services.gateway.settings import GatewaySettings
from shared.messaging import DependencyUnavailable

logger = logging.getLogger(__name__)

LINK_PATHS = [
    # Spelled as the product documentation prints it, which intranets copied.
    "/public/TicketAllgmein/Ticket.aspx",
    "/public/TicketAllgemein/Ticket.aspx",
]
_REFERENCE = re.compile(r"T-[0-9A-Z]{5}-[0-9A-Z]{5}")
_STYLESHEET = (TEMPLATES.parent / "static" / "app.css").read_bytes()

AnyRequest = Request[Any, Any, Any]


def _request_id(request: AnyRequest) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


def _reject(pages: Pages, reason: str, request_id: str) -> Response[bytes]:
    logger.info(
        "link rejected",
        extra={"event": "link_rejected", "reason": reason, "request_id": request_id},
    )
    return pages.not_found()


def _unavailable(exc: Exception, request_id: str) -> None:
    logger.warning(
        "dependency unavailable: %s",
        exc,
        extra={"event": "dependency_unavailable", "request_id": request_id},
    )


@get(LINK_PATHS, include_in_schema=False)
async def open_form(request: AnyRequest, state: State) -> Response[bytes]:
    """Resolve the link in the query string and render the ticket form."""
    pages: Pages = state.pages
    request_id = _request_id(request)
    parsed = link.parse(request.scope["query_string"])
    if isinstance(parsed, link.MalformedLink):
        return _reject(pages, parsed.reason, request_id)

    directory: Directory = state.directory
    try:
        found = await directory.resolve_link(
            parsed.secret, parsed.personnel_number, request_id
        )
    except DependencyUnavailable as exc:
        _unavailable(exc, request_id)
        return pages.unavailable()
    if isinstance(found, Rejected):
        return _reject(pages, found.reason, request_id)

    settings: GatewaySettings = state.settings
    language = i18n.negotiate(
        request.headers.get("accept-language"), found.tenant.language
    )
    context = _context(found, language, str(uuid.uuid4()), settings)
    logger.info(
        "form opened",
        extra={
            "event": "form_opened",
            "tenant_id": found.tenant.tenant_id,
            "submission_id": context.submission_id,
            "request_id": request_id,
        },
    )
    return pages.form(context, form_token.sign(settings.form_key, context))


def _context(
    found: Reporter, language: str, submission_id: str, settings: GatewaySettings
) -> form_token.FormContext:
    return form_token.FormContext(
        tenant_id=found.tenant.tenant_id,
        tenant_name=found.tenant.name,
        personnel_number=found.person.personnel_number,
        person_name=found.person.display_name,
        language=language,
        categories=found.tenant.categories,
        submission_id=submission_id,
        expires_at=int(time.time()) + settings.form_ttl_seconds,
    )


def _language(request: AnyRequest) -> str:
    return i18n.negotiate(request.headers.get("accept-language"), None)


@post("/public/tickets", include_in_schema=False, status_code=303)
async def submit(request: AnyRequest, state: State) -> Response[bytes]:
    """Validate a posted form, publish it, and redirect to the confirmation."""
    pages: Pages = state.pages
    settings: GatewaySettings = state.settings
    request_id = _request_id(request)

    # Step 1: read and split the body; only a urlencoded form is accepted.
    # Reading first enforces the size limit (413) whatever the content type.
    body = await request.body()
    language = _language(request)
    texts = i18n.texts(language)
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type.lower() != "application/x-www-form-urlencoded":
        return pages.error(
            language,
            415,
            "unsupported_media_type_title",
            texts["unsupported_media_type_message"],
        )
    try:
        fields = form_body.parse(body)
    except form_body.TooManyFields:
        message = texts["too_many_fields_message"].format(max=form_body.MAX_FIELDS)
        return pages.error(language, 413, "request_too_large_title", message)

    # Step 2: the token says which form this is; a forged one gets nowhere.
    try:
        context = form_token.verify(
            settings.form_key, fields.values.get("form_token", "")
        )
        expired = False
    except form_token.ExpiredToken as exc:
        context, expired = exc.context, True
    except form_token.InvalidToken as exc:
        logger.info(
            "form rejected: %s",
            exc,
            extra={"event": "form_rejected", "request_id": request_id},
        )
        language = _language(request)
        return pages.error(
            language,
            400,
            "bad_request_title",
            i18n.texts(language)["bad_request_message"],
        )
    values = {name: fields.values.get(name, "") for name in submission.FIELDS}

    # Step 3: check again that intake is on and the person active.
    directory: Directory = state.directory
    try:
        found = await directory.recheck(
            context.tenant_id, context.personnel_number, request_id
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
        return _reject(pages, found.reason, request_id)
    fresh = _context(found, context.language, context.submission_id, settings)
    if expired:
        return pages.form(
            fresh,
            form_token.sign(settings.form_key, fresh),
            values=values,
            banner_key="banner_expired",
            status=400,
        )

    # Step 4: validate every field and show all errors at once.
    errors = submission.validate(values, fields.invalid_encoding, fresh.categories)
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
        )

    # Step 5: publish and answer only once JetStream has stored the event.
    event = submission.build_event(fresh, values)
    try:
        duplicate = await publish_submission(
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
        )
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
    return Response(
        content=b"",
        status_code=303,
        media_type="text/plain; charset=utf-8",
        headers={
            "Location": f"/public/tickets/{event.data.reference}?lang={fresh.language}",
            **PUBLIC_REDIRECT_HEADERS,
        },
    )


PUBLIC_REDIRECT_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}


def _too_large(pages: Pages, language: str, limit: int) -> Response[bytes]:
    message = i18n.texts(language)["request_too_large_message"].format(
        limit=human_size(limit)
    )
    return pages.error(language, 413, "request_too_large_title", message)


@get("/public/tickets/{reference:str}", sync_to_thread=False, include_in_schema=False)
def confirmation(
    reference: str, state: State, lang: str | None = None
) -> Response[bytes]:
    """Show the reference of an accepted submission; reveals nothing else."""
    pages: Pages = state.pages
    if not _REFERENCE.fullmatch(reference):
        return pages.not_found()
    language = lang if lang in i18n.LANGUAGES else i18n.DEFAULT_LANGUAGE
    return pages.confirmation(language, reference)


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
    language = _language(request)
    return _too_large(state.pages, language, state.settings.max_body_bytes)
