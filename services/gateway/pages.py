"""Render the public pages and attach the headers every public page sends."""

from __future__ import annotations

import functools
import re
import secrets
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
import msgspec

from services.gateway import i18n, submission
from services.gateway.form_token import FormContext
from services.gateway.page import HTML, Page, encode_headers

TEMPLATES = Path(__file__).parent / "templates"
STATIC_URL = "/public/static"
SUBMIT_URL = "/public/tickets"

CSP_WITHOUT_FRAME_ANCESTORS = (
    "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; base-uri 'none'"
)
"""The pages load nothing but the stylesheet and run no script at all."""

PUBLIC_HEADERS: Mapping[str, str] = {
    # The secret travels in the link, so no page of the flow may pass its URL
    # on as a Referer or leave it in a shared cache.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": f"{CSP_WITHOUT_FRAME_ANCESTORS}; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
}


def frame_headers(frame_ancestors: Sequence[str]) -> dict[str, str]:
    """Return the CSP and X-Frame-Options that allow framing by these origins.

    With origins, X-Frame-Options is left out: it has no value that allows
    a list of origins, and browsers that know CSP follow frame-ancestors.
    The origins were checked by the tenant service, so none can add a
    directive to the header.
    """
    if not frame_ancestors:
        return {
            "Content-Security-Policy": PUBLIC_HEADERS["Content-Security-Policy"],
            "X-Frame-Options": "DENY",
        }
    sources = " ".join(frame_ancestors)
    return {
        "Content-Security-Policy": (
            f"{CSP_WITHOUT_FRAME_ANCESTORS}; frame-ancestors {sources}"
        )
    }


_FRAMELESS_HEADERS = {
    name: value
    for name, value in PUBLIC_HEADERS.items()
    if name not in ("Content-Security-Policy", "X-Frame-Options")
}


@functools.lru_cache(maxsize=256)
def _page_headers(
    frame_ancestors: tuple[str, ...],
) -> tuple[dict[str, str], tuple[tuple[bytes, bytes], ...]]:
    """Return the headers of a page without extra headers, and their encoded
    form, built once per frame policy instead of on every opened link."""
    headers = {**_FRAMELESS_HEADERS, **frame_headers(frame_ancestors)}
    return headers, encode_headers(headers, HTML)


RETRY_AFTER_SECONDS = 10

FRESH_FORM_BYTES = 16 * 1024 * 1024
"""Bytes of empty form pages kept rendered, one page per tenant, language
and link presets, the least recently used dropped first. A page is about
3 KB (about 35 KB with the longest names, categories and preset location
allowed), so this keeps the pages of a few thousand tenants. A benchmark
with 1,000 tenants served about twice the links a second once their pages
all fitted."""


@dataclass(frozen=True)
class _FormSlots:
    """An empty form page split where the reporter and the token go: between
    `parts[i]` and `parts[i + 1]` goes the value named `names[i]`."""

    parts: list[bytes]
    names: list[str]


def _size(slots: _FormSlots | None) -> int:
    """Return the bytes of a kept page; one without slots keeps none."""
    return 0 if slots is None else sum(map(len, slots.parts))


def _escaped(value: str) -> bytes:
    """Return `value` escaped as the templates' autoescape escapes it."""
    return str(markupsafe.escape(value)).encode("utf-8")


def human_size(size: int) -> str:
    """Format a byte count the way the error page states a limit."""
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):g} MB"
    return f"{size / 1024:g} KB"


class Pages:
    """The gateway's templates, with the two fixed pages rendered once."""

    def __init__(self) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            # The templates ship with the code, so checking their files for
            # changes on every render only costs time.
            auto_reload=False,
        )
        self._fresh_forms: OrderedDict[tuple[object, ...], _FormSlots | None] = (
            OrderedDict()
        )
        self._fresh_bytes = 0
        # Letters only, so that escaping leaves them as they are; random, so
        # that no tenant or person name can contain them.
        mark = secrets.token_hex(16)
        self._marks = {
            "form_token": f"FormToken{mark}",
            "person_name": f"PersonName{mark}",
            "personnel_number": f"PersonnelNumber{mark}",
        }
        # Rendered once so that every invalid link gets the same bytes,
        # whatever the reason and whatever the request's language.
        self.not_found_body = self._render("not_found.html", static_url=STATIC_URL)
        self.unavailable_body = self._render("unavailable.html", static_url=STATIC_URL)

    def _render(self, template: str, **context: Any) -> bytes:
        return self.env.get_template(template).render(**context).encode("utf-8")

    @staticmethod
    def _html(
        body: bytes,
        status: int,
        headers: Mapping[str, str] | None = None,
        frame_ancestors: Sequence[str] = (),
    ) -> Page:
        if headers:
            fixed = {**_FRAMELESS_HEADERS, **frame_headers(frame_ancestors), **headers}
            return Page(body, status, fixed)
        shared, encoded = _page_headers(tuple(frame_ancestors))
        return Page(body, status, shared, encoded=encoded)

    def not_found(self) -> Page:
        """The one neutral answer to every invalid link."""
        return self._html(self.not_found_body, 404)

    def too_many_requests(self, retry_after: int) -> Page:
        """Return the neutral page with status 429, for a link over a rate limit."""
        return self._html(self.not_found_body, 429, {"Retry-After": str(retry_after)})

    def unavailable(self) -> Page:
        return self._html(
            self.unavailable_body, 503, {"Retry-After": str(RETRY_AFTER_SECONDS)}
        )

    def form(
        self,
        context: FormContext,
        form_token: str,
        *,
        values: Mapping[str, str] | None = None,
        errors: Mapping[str, submission.FieldError] | None = None,
        banner_key: str | None = None,
        status: int = 200,
        frame_ancestors: Sequence[str] = (),
        retry_after: int = RETRY_AFTER_SECONDS,
    ) -> Page:
        if values or errors or banner_key:
            body = self._form_body(context, form_token, values, errors, banner_key)
        else:
            body = self._fresh_form_body(context, form_token)
        headers = {"Retry-After": str(retry_after)} if status in (429, 503) else {}
        return self._html(body, status, headers, frame_ancestors)

    def _form_body(
        self,
        context: FormContext,
        form_token: str,
        values: Mapping[str, str] | None = None,
        errors: Mapping[str, submission.FieldError] | None = None,
        banner_key: str | None = None,
    ) -> bytes:
        texts = i18n.texts(context.language)
        messages = {
            name: texts[error.key].format(max=error.max)
            for name, error in (errors or {}).items()
        }
        return self._render(
            "form.html",
            lang=context.language,
            t=texts,
            static_url=STATIC_URL,
            action_url=SUBMIT_URL,
            tenant_name=context.tenant_name,
            person_name=context.person_name,
            personnel_number=context.personnel_number,
            categories=context.categories,
            urgencies=list(submission.URGENCIES),
            values=dict(values or {}),
            errors=messages,
            form_token=form_token,
            banner=texts[banner_key] if banner_key else None,
            limits=dict(submission.LIMITS),
            preset_location=context.preset_location,
            preset_category=context.preset_category,
        )

    def _fresh_form_body(self, context: FormContext, form_token: str) -> bytes:
        """Return an empty form from the page rendered once per tenant,
        language and link presets, with the reporter and the token put in.

        Rendering took most of the time of opening a link, and a large tenant
        has many more reporters than the cache could hold pages for.
        """
        key = (
            context.language,
            context.tenant_name,
            tuple(context.categories),
            context.preset_location,
            context.preset_category,
        )
        if key in self._fresh_forms:
            self._fresh_forms.move_to_end(key)
            slots = self._fresh_forms[key]
        else:
            slots = self._form_slots(context)
            self._fresh_forms[key] = slots
            self._fresh_bytes += _size(slots)
            while self._fresh_bytes > FRESH_FORM_BYTES and len(self._fresh_forms) > 1:
                _, dropped = self._fresh_forms.popitem(last=False)
                self._fresh_bytes -= _size(dropped)
        if slots is None:
            return self._form_body(context, form_token)
        values = {
            "form_token": _escaped(form_token),
            "person_name": _escaped(context.person_name),
            "personnel_number": _escaped(context.personnel_number),
        }
        parts = [slots.parts[0]]
        for name, part in zip(slots.names, slots.parts[1:], strict=True):
            parts += (values[name], part)
        return b"".join(parts)

    def _form_slots(self, context: FormContext) -> _FormSlots | None:
        """Render the empty form with marks for the reporter and the token and
        split it there; None when a mark is not in the page exactly once,
        because the template then does more with the value than print it."""
        marked = msgspec.structs.replace(
            context,
            person_name=self._marks["person_name"],
            personnel_number=self._marks["personnel_number"],
        )
        page = self._form_body(marked, self._marks["form_token"])
        by_mark = {mark.encode(): name for name, mark in self._marks.items()}
        pieces = re.split(b"(" + b"|".join(map(re.escape, by_mark)) + b")", page)
        names = [by_mark[mark] for mark in pieces[1::2]]
        if sorted(names) != sorted(self._marks):
            return None
        return _FormSlots(parts=pieces[0::2], names=names)

    def confirmation(
        self, language: str, reference: str, frame_ancestors: Sequence[str] = ()
    ) -> Page:
        body = self._render(
            "confirmation.html",
            lang=language,
            t=i18n.texts(language),
            static_url=STATIC_URL,
            reference=reference,
        )
        return self._html(body, 200, frame_ancestors=frame_ancestors)

    def error(
        self,
        language: str,
        status: int,
        title_key: str,
        message: str,
        frame_ancestors: Sequence[str] = (),
    ) -> Page:
        texts = i18n.texts(language)
        body = self._render(
            "error.html",
            lang=language,
            t=texts,
            static_url=STATIC_URL,
            title=texts[title_key],
            message=message,
        )
        return self._html(body, status, frame_ancestors=frame_ancestors)
