"""Unit tests for the gateway's form pages: an empty form comes from the
page rendered once per tenant and language, with the reporter and the token
put in, and equals a full render byte for byte."""

from __future__ import annotations

import jinja2
import msgspec
import pytest

from services.gateway import pages as pages_module
from services.gateway import submission
from services.gateway.form_token import FormContext
from services.gateway.pages import Pages

CONTEXT = FormContext(
    tenant_id="6f1c0e0a-0000-4000-8000-00000000000a",
    tenant_name="Heim <Am See> & Co",
    personnel_number="004711",
    person_name="Jörg Bäcker",
    language="de",
    categories=["IT", "Haustechnik"],
    submission_id="0b8f5a52-2f4e-4d62-9a43-5b1c7e9d0a11",
    expires_at=2_000_000_000,
)


def test_empty_form_equals_full_render() -> None:
    pages = Pages()
    for token in ("first.token", "second.token"):
        assert pages.form(CONTEXT, token).content == pages._form_body(CONTEXT, token)


def test_each_reporter_gets_own_page() -> None:
    pages = Pages()
    other = msgspec.structs.replace(CONTEXT, person_name="Anna Muster")
    french = msgspec.structs.replace(CONTEXT, language="fr")

    for context in (CONTEXT, other, french, CONTEXT):
        body = pages.form(context, "abc.def").content
        assert body == pages._form_body(context, "abc.def")

    assert b"Anna Muster" not in pages.form(CONTEXT, "abc.def").content


def test_filled_form_not_taken_from_cache() -> None:
    pages = Pages()
    pages.form(CONTEXT, "abc.def")
    values = {"subject": "Drucker defekt"}
    errors = {"description": submission.FieldError("error_required")}

    filled = pages.form(CONTEXT, "abc.def", values=values, errors=errors)

    assert b"Drucker defekt" in filled.content
    assert filled.content == pages._form_body(CONTEXT, "abc.def", values, errors)


def test_page_cache_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages are dropped, oldest first, once their bytes pass the budget."""
    page_bytes = len(Pages().form(CONTEXT, "abc.def").content) - len("abc.def")
    monkeypatch.setattr(pages_module, "FRESH_FORM_BYTES", 10 * page_bytes)
    pages = Pages()
    for index in range(30):
        context = msgspec.structs.replace(CONTEXT, tenant_name=f"Heim {index:02d}")
        pages.form(context, "abc.def")

    kept_tenants = [key[1] for key in pages._fresh_forms]
    assert 8 <= len(kept_tenants) <= 10
    assert kept_tenants == [
        f"Heim {index:02d}" for index in range(30 - len(kept_tenants), 30)
    ]
    assert pages._fresh_bytes <= pages_module.FRESH_FORM_BYTES


def test_reporters_share_tenant_page() -> None:
    pages = Pages()
    for index in range(1000):
        context = msgspec.structs.replace(
            CONTEXT, personnel_number=f"{index:06d}", person_name=f"Person {index}"
        )
        pages.form(context, "abc.def")

    assert len(pages._fresh_forms) == 1


@pytest.mark.parametrize(
    ("name", "number"),
    [
        ("<script>alert(1)</script>", "0&1"),
        ('Anne "Nan" O\'Neil', "<b>"),
        ("Zoë Ærø — 山田", "ÄÖÜ-42"),
        ("{{ 7*7 }} %s {}", "\\x00"),
    ],
)
def test_reporter_escaped_as_full_render(name: str, number: str) -> None:
    pages = Pages()
    pages.form(CONTEXT, "abc.def")
    context = msgspec.structs.replace(
        CONTEXT, person_name=name, personnel_number=number
    )

    body = pages.form(context, "abc.def").content

    assert body == pages._form_body(context, "abc.def")


def test_token_escaped_as_full_render() -> None:
    """Tokens from the signer need no escaping, but the page must not depend
    on that."""
    pages = Pages()

    body = pages.form(CONTEXT, 'a"b<c>&d.é').content

    assert body == pages._form_body(CONTEXT, 'a"b<c>&d.é')


def test_template_printing_twice_rendered_fully() -> None:
    """A template that prints the reporter twice cannot be filled by slots, so
    every form is rendered in full and still comes out right."""
    pages = Pages()
    pages.env.loader = jinja2.DictLoader(
        {"form.html": "<p>{{ person_name }} {{ person_name }} {{ form_token }}</p>"}
    )
    pages.env.cache = None

    body = pages.form(CONTEXT, "abc.def").content

    assert body == "<p>Jörg Bäcker Jörg Bäcker abc.def</p>".encode()
    assert list(pages._fresh_forms.values()) == [None]
