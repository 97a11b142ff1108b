"""Form bodies for the benchmark's POST steps, signed as the gateway signs
the forms it renders."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import msgspec

from services.gateway import form_token

if TYPE_CHECKING:
    from bench.system import System

FORM_VALUES = {
    "subject": "Drucker im 2. Stock druckt nicht",
    "description": "Seit heute Morgen kommt nur leeres Papier heraus. " * 4,
    "location": "Raum 204",
    "urgency": "normal",
}


def form_body(key: bytes, context: form_token.FormContext, **changes: str) -> str:
    """Return a urlencoded form body of `context` with a new submission id.

    `changes` replaces fields of the context, such as the person's. The new
    submission id makes each body a first post, because the gateway treats
    a post with a known submission id as a repeat and adds no ticket.
    """
    fresh = msgspec.structs.replace(context, submission_id=str(uuid.uuid4()), **changes)
    fields = {
        "form_token": form_token.sign(key, fresh),
        "category": context.categories[0],
        **FORM_VALUES,
    }
    return urlencode(fields)


def form_bodies(system: System, count: int) -> list[str]:
    """Return `count` valid form bodies, each with its own form token.

    One form is opened through the gateway. The others are signed here with
    the gateway's key, from that form's context with a new submission id,
    as the gateway itself signs every form it renders.
    """
    context = form_token.verify(system.form_key, system.fetch_form_token())
    return [form_body(system.form_key, context) for _ in range(count)]
