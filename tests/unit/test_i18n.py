"""Unit tests for the gateway texts, language negotiation and page templates.

No server runs here: the templates are rendered with a plain Jinja2 environment.
"""

from __future__ import annotations

import re
import string
from collections.abc import MutableMapping
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, cast

import pytest
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from services.gateway import i18n
from services.gateway.i18n import DEFAULT_LANGUAGE, LANGUAGES, negotiate, texts

GATEWAY_DIR = Path(__file__).resolve().parents[2] / "services" / "gateway"
TEMPLATES_DIR = GATEWAY_DIR / "templates"
STYLESHEET = GATEWAY_DIR / "static" / "app.css"
TEMPLATE_FILES = sorted(TEMPLATES_DIR.glob("*.html"))
STATIC_URL = "/static"


def placeholder_names(text: str) -> set[str]:
    """Return the str.format field names in text. A stray brace raises ValueError."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


# Texts


def test_languages_have_german_keys() -> None:
    german_keys = set(texts("de"))
    for language in LANGUAGES:
        language_keys = set(texts(language))
        assert language_keys - german_keys == set(), language
        assert german_keys - language_keys == set(), language


def test_each_language_has_own_table() -> None:
    # texts() falls back to German, which would hide a language without a table.
    for language in LANGUAGES:
        if language != "de":
            assert texts(language)["form_title"] != texts("de")["form_title"]


def test_default_language_is_german() -> None:
    assert DEFAULT_LANGUAGE == "de"
    assert LANGUAGES == ("de", "en", "fr", "it")


def test_required_placeholders_in_every_language() -> None:
    for language in LANGUAGES:
        assert "{max}" in texts(language)["error_too_long"], language
        assert "{limit}" in texts(language)["request_too_large_message"], language


def test_placeholders_match_german() -> None:
    german = texts("de")
    for language in LANGUAGES:
        for key, text in texts(language).items():
            assert placeholder_names(text) == placeholder_names(german[key]), (
                language,
                key,
            )


def test_placeholders_format_without_error() -> None:
    for language in LANGUAGES:
        table = texts(language)
        too_long = table["error_too_long"].format(max=200)
        too_large = table["request_too_large_message"].format(limit="64 KB")
        assert "200" in too_long
        assert "64 KB" in too_large


def test_texts_not_blank_or_padded() -> None:
    for language in LANGUAGES:
        for key, text in texts(language).items():
            assert text, (language, key)
            assert text == text.strip(), (language, key)
            assert "  " not in text, (language, key)


def test_texts_use_sharp_s_not_ss() -> None:
    german = " ".join(texts("de").values())
    for swiss_spelling in ("gross", "Grösse", "schliess", "Strasse"):
        assert swiss_spelling not in german


def test_french_punctuation_has_no_break_space() -> None:
    for key, text in texts("fr").items():
        for match in re.finditer(r"[?!:;]", text):
            before = text[match.start() - 1] if match.start() else ""
            assert before == "\u00a0", (key, text)


def test_unknown_language_falls_back_to_german() -> None:
    assert texts("es") == texts("de")
    assert texts("") == texts("de")
    assert texts("fr-CH") == texts("de")


def test_texts_are_read_only() -> None:
    table = cast("MutableMapping[str, str]", texts("de"))
    with pytest.raises(TypeError):
        table["form_title"] = "changed"


# Language negotiation


@pytest.mark.parametrize(
    ("accept_language", "tenant_default", "expected"),
    [
        ("fr-CH;q=0.9, en;q=0.8", None, "fr"),
        ("en;q=0.8, fr-CH;q=0.9", None, "fr"),
        ("it-CH", None, "it"),
        ("EN-gb", None, "en"),
        ("de-CH, de;q=0.9, en;q=0.5", "fr", "de"),
        ("es, en;q=0.5", None, "en"),
        ("de;q=0.5, fr;q=0.5", None, "de"),
        ("fr;q=0.5, de;q=0.5", None, "fr"),
        ("   fr  ;  q=0.7 , en;q=0.6", None, "fr"),
        ("fr;Q=0.9, it;q=0.8", None, "fr"),
        ("fr;q=1.000, it", None, "fr"),
    ],
)
def test_negotiate_header_order(
    accept_language: str, tenant_default: str | None, expected: str
) -> None:
    assert negotiate(accept_language, tenant_default) == expected


@pytest.mark.parametrize(
    ("accept_language", "tenant_default", "expected"),
    [
        ("es, pt", "fr", "fr"),
        ("es", "es", "de"),
        ("es", None, "de"),
        (None, "it", "it"),
        (None, None, "de"),
        ("", "en", "en"),
        ("*", "fr", "fr"),
        ("*;q=0.5, it;q=0.4", None, "it"),
        ("deutsch, fr", None, "fr"),
    ],
)
def test_negotiate_unsupported_uses_tenant(
    accept_language: str | None, tenant_default: str | None, expected: str
) -> None:
    assert negotiate(accept_language, tenant_default) == expected


@pytest.mark.parametrize(
    ("accept_language", "tenant_default", "expected"),
    [
        ("fr;q=0, en;q=0.1", None, "en"),
        ("fr;q=0.000, it;q=0.001", None, "it"),
        ("fr;q=0", None, "de"),
        ("fr;q=0", "it", "it"),
    ],
)
def test_negotiate_ignores_zero_weight(
    accept_language: str, tenant_default: str | None, expected: str
) -> None:
    assert negotiate(accept_language, tenant_default) == expected


@pytest.mark.parametrize(
    ("accept_language", "tenant_default", "expected"),
    [
        ("%%%;;;==,,", "en", "en"),
        ("fr;q=abc, it", None, "it"),
        ("fr;q=, it", None, "it"),
        ("fr;q=1.5, it;q=0.5", None, "it"),
        ("fr;q=-1, it;q=0.5", None, "it"),
        ("fr;q=0.9999, it;q=0.5", None, "it"),
        ("fr;q=0.8;q=0.9, it;q=0.5", None, "it"),
        ("fr;level=1, it", None, "it"),
        ("fr_CH, it", None, "it"),
        ("fr-, it", None, "it"),
        ("ää, it", None, "it"),
        ("fr-CH-toolongsubtag, it", None, "it"),
        (",,, ,en,,", None, "en"),
        ("x" * 10_000, "fr", "fr"),
        (";q=0.9", None, "de"),
        ("\x00\r\n", None, "de"),
    ],
)
def test_negotiate_skips_malformed_parts(
    accept_language: str, tenant_default: str | None, expected: str
) -> None:
    assert negotiate(accept_language, tenant_default) == expected


# Templates


class ElementCollector(HTMLParser):
    """Start tags of a page, each as its tag name and attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def by_id(self, element_id: str) -> dict[str, str | None]:
        matches = [attrs for _, attrs in self.elements if attrs.get("id") == element_id]
        assert len(matches) == 1, f"expected one element with id {element_id!r}"
        return matches[0]

    def by_tag(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.elements if name == tag]


def parse_elements(html: str) -> ElementCollector:
    collector = ElementCollector()
    collector.feed(html)
    collector.close()
    return collector


@pytest.fixture
def environment() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=True)


@pytest.fixture
def strict_environment() -> Environment:
    """An environment that raises on any variable or text key a template lacks."""
    return Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=StrictUndefined,
    )


def form_context(language: str = "de", **overrides: Any) -> dict[str, Any]:
    context: dict[str, Any] = {
        "lang": language,
        "t": texts(language),
        "static_url": STATIC_URL,
        "action_url": "/t/acme/submit?sig=abc&n=1",
        "tenant_name": "Stadtverwaltung Musterstadt",
        "person_name": "Erika Muster",
        "personnel_number": "100234",
        "categories": ["Drucker", "Netzwerk", "Gebäude"],
        "urgencies": ["low", "normal", "high"],
        "values": {},
        "errors": {},
        "form_token": "token-123",
        "banner": None,
        "limits": {"subject": 120, "description": 4000, "location": 120},
    }
    context.update(overrides)
    return context


def test_form_renders_every_language(strict_environment: Environment) -> None:
    template = strict_environment.get_template("form.html")
    for language in LANGUAGES:
        html = template.render(form_context(language))
        assert f'<html lang="{language}">' in html
        assert texts(language)["form_title"] in html


def test_form_escapes_script_in_values(environment: Environment) -> None:
    attack = "<script>alert(1)</script>"
    html = environment.get_template("form.html").render(
        form_context(
            values={"subject": attack, "description": attack, "location": attack},
            errors={"subject": attack},
            tenant_name=attack,
            person_name=attack,
            categories=[attack],
            banner=attack,
        )
    )
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_form_marks_error_fields(environment: Environment) -> None:
    message = texts("de")["error_required"]
    html = environment.get_template("form.html").render(
        form_context(errors={"subject": message, "description": message})
    )
    elements = parse_elements(html)

    subject = elements.by_id("subject")
    assert subject.get("aria-invalid") == "true"
    assert subject.get("aria-describedby") == "subject-error"
    assert elements.by_id("subject-error") is not None
    assert f'<p class="field-error" id="subject-error">{message}</p>' in html

    description = elements.by_id("description")
    assert description.get("aria-invalid") == "true"
    assert description.get("aria-describedby") == "description-hint description-error"

    location = elements.by_id("location")
    assert "aria-invalid" not in location
    assert location.get("aria-describedby") == "location-hint"
    assert "location-error" not in html


def test_form_without_errors_has_no_summary(environment: Environment) -> None:
    html = environment.get_template("form.html").render(form_context())
    assert "aria-invalid" not in html
    assert "error-summary" not in html
    assert 'role="alert"' not in html


def test_form_shows_banner_as_alert(environment: Environment) -> None:
    banner = texts("de")["banner_unavailable"]
    html = environment.get_template("form.html").render(form_context(banner=banner))
    assert f'<div class="banner" role="alert">{banner}</div>' in html


def test_form_keeps_values_and_selection(environment: Environment) -> None:
    html = environment.get_template("form.html").render(
        form_context(
            values={
                "category": "Gebäude",
                "subject": "Drucker im 2. Stock",
                "description": "Papierstau",
                "location": "Raum 204",
                "urgency": "high",
            }
        )
    )
    elements = parse_elements(html)

    assert elements.by_id("subject").get("value") == "Drucker im 2. Stock"
    assert elements.by_id("location").get("value") == "Raum 204"
    assert ">\nPapierstau</textarea>" in html
    selected = [
        attrs.get("value") for attrs in elements.by_tag("option") if "selected" in attrs
    ]
    assert selected == ["Gebäude", "high"]


def test_form_defaults_to_placeholder_and_normal(environment: Environment) -> None:
    html = environment.get_template("form.html").render(
        form_context(values={"category": "Unbekannt"})
    )
    elements = parse_elements(html)
    selected = [
        attrs.get("value") for attrs in elements.by_tag("option") if "selected" in attrs
    ]
    assert selected == ["", "normal"]


def test_form_attributes_and_limits(environment: Environment) -> None:
    html = environment.get_template("form.html").render(form_context())
    elements = parse_elements(html)

    forms = elements.by_tag("form")
    assert len(forms) == 1
    assert forms[0].get("method") == "post"
    assert forms[0].get("action") == "/t/acme/submit?sig=abc&n=1"
    assert forms[0].get("accept-charset") == "UTF-8"
    assert forms[0].get("enctype") == "application/x-www-form-urlencoded"

    tokens = [
        attrs for attrs in elements.by_tag("input") if attrs.get("type") == "hidden"
    ]
    assert tokens == [{"type": "hidden", "name": "form_token", "value": "token-123"}]

    assert elements.by_id("subject").get("maxlength") == "120"
    assert elements.by_id("description").get("maxlength") == "4000"
    assert elements.by_id("location").get("maxlength") == "120"
    assert "required" in elements.by_id("category")
    assert "required" in elements.by_id("subject")
    assert "required" in elements.by_id("description")
    assert "required" not in elements.by_id("location")


def test_form_reporter_details_shown(environment: Environment) -> None:
    html = environment.get_template("form.html").render(form_context("fr"))
    assert "Stadtverwaltung Musterstadt" in html
    assert "Erika Muster" in html
    assert "100234" in html
    assert texts("fr")["label_organisation"] in html


def test_confirmation_shows_reference(strict_environment: Environment) -> None:
    html = strict_environment.get_template("confirmation.html").render(
        lang="it", t=texts("it"), static_url=STATIC_URL, reference="T-7KQ2-XM9R"
    )
    assert '<p class="reference" translate="no">T-7KQ2-XM9R</p>' in html
    assert texts("it")["confirmation_heading"] in html


def test_error_page_shows_message(strict_environment: Environment) -> None:
    table = texts("de")
    message = table["request_too_large_message"].format(limit="64 KB")
    html = strict_environment.get_template("error.html").render(
        lang="de",
        t=table,
        static_url=STATIC_URL,
        title=table["request_too_large_title"],
        message=message,
    )
    assert f"<h1>{table['request_too_large_title']}</h1>" in html
    assert "64 KB" in html


@pytest.mark.parametrize("name", ["not_found.html", "unavailable.html"])
def test_neutral_page_renders_identically(
    name: str, environment: Environment, strict_environment: Environment
) -> None:
    first = strict_environment.get_template(name).render(static_url=STATIC_URL)
    second = strict_environment.get_template(name).render(static_url=STATIC_URL)
    lenient = environment.get_template(name).render(static_url=STATIC_URL)

    assert first == second
    assert first == lenient
    assert "{{" not in first
    assert "{%" not in first
    assert '<html lang="de">' in first
    for language in LANGUAGES:
        assert f'<section lang="{language}">' in first
    assert first.index('lang="de"') < first.index('<section lang="fr">')


def test_not_found_names_no_reason(environment: Environment) -> None:
    html = environment.get_template("not_found.html").render(static_url=STATIC_URL)
    page = html.lower()
    for hint in ("signatur", "tenant", "expired", "abgelaufen", "personal"):
        assert hint not in page


def test_every_page_has_head_elements(strict_environment: Environment) -> None:
    contexts = {
        "form.html": form_context("en"),
        "confirmation.html": {
            "lang": "en",
            "t": texts("en"),
            "static_url": STATIC_URL,
            "reference": "T-AAAA-BBBB",
        },
        "error.html": {
            "lang": "en",
            "t": texts("en"),
            "static_url": STATIC_URL,
            "title": "Invalid request",
            "message": "The form could not be read.",
        },
        "not_found.html": {"static_url": STATIC_URL},
        "unavailable.html": {"static_url": STATIC_URL},
    }
    for name, context in contexts.items():
        html = strict_environment.get_template(name).render(context)
        assert re.search(r'<html lang="[a-z]{2}">', html), name
        assert (
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            in html
        ), name
        assert f'<link rel="stylesheet" href="{STATIC_URL}/app.css">' in html, name


def test_templates_exist() -> None:
    names = {path.name for path in TEMPLATE_FILES}
    expected = {
        "base.html",
        "form.html",
        "confirmation.html",
        "not_found.html",
        "unavailable.html",
        "error.html",
    }
    assert expected <= names


@pytest.mark.parametrize("path", TEMPLATE_FILES, ids=lambda path: path.name)
def test_template_meets_content_security_policy(path: Path) -> None:
    source = path.read_text(encoding="utf-8").lower()
    assert "<script" not in source
    assert "<style" not in source
    assert "style=" not in source
    assert not re.search(r"https?://", source)
    assert not re.search(r"\|\s*safe\b", source)


def test_stylesheet_loads_nothing_external() -> None:
    css = STYLESHEET.read_text(encoding="utf-8").lower()
    assert "@import" not in css
    assert "url(" not in css
    assert not re.search(r"https?://", css)


def test_long_header_not_remembered() -> None:
    remembered = i18n._remembered_negotiate
    before = remembered.cache_info().currsize
    long_header = "fr-CH, " + "x-" * i18n.MAX_REMEMBERED_HEADER
    assert i18n.negotiate(long_header, None) == "fr"
    assert remembered.cache_info().currsize == before
    assert i18n.negotiate("it-CH,it;q=0.9", None) == "it"
    assert remembered.cache_info().currsize <= before + 1


def test_ranges_after_the_limit_ignored() -> None:
    filler = ", ".join(["xx"] * i18n.MAX_LANGUAGE_RANGES)
    assert negotiate(f"{filler}, fr", "it") == "it"
    assert negotiate(f"fr, {filler}", "it") == "fr"


def test_huge_header_still_negotiated() -> None:
    header = "it-CH;q=0.9, " + ", ".join(["xx-YY;q=0.1"] * 20_000)
    assert negotiate(header, None) == "it"
