"""Security headers on every public page, and framing by a tenant's origins."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from linkdesk import cli
from linkdesk.processes import Stack
from tests.conftest import ADMIN_TOKEN
from tests.helpers import (
    LINK_PATH,
    VALID_FIELDS,
    Admin,
    TenantFixture,
    form_token,
    open_link,
    post_form,
)

INTRANET = "https://intranet.example.org"
WILDCARD = "https://*.example.net:8443"


def assert_public_headers(response: httpx.Response, name: str) -> None:
    headers = response.headers
    assert headers.get("referrer-policy") == "no-referrer", name
    assert headers.get("cache-control") == "no-store", name
    assert headers.get("x-content-type-options") == "nosniff", name
    policy = headers.get("content-security-policy", "")
    assert policy.startswith("default-src 'none'; "), name
    assert "frame-ancestors " in policy, name
    assert "script-src" not in policy, name
    assert "unsafe" not in policy, name


def frame_ancestors(response: httpx.Response) -> str:
    policy = response.headers["content-security-policy"]
    directives = dict(
        directive.strip().split(" ", 1) for directive in policy.split(";")
    )
    return directives["frame-ancestors"]


def test_every_public_answer_has_headers(
    gateway: httpx.Client, tenant: TenantFixture
) -> None:
    page = open_link(gateway, tenant.link_query())
    redirect = post_form(gateway, form_token(page))
    answers = {
        "form": page,
        "redirect": redirect,
        "confirmation": gateway.get(redirect.headers["location"]),
        "invalid link": open_link(gateway, f"{tenant.secret}&999999"),
        "unknown path": gateway.get("/public/nothing/here"),
        "bad reference": gateway.get("/public/tickets/not-a-reference"),
        "forged token": post_form(gateway, "forged.token"),
        "wrong type": gateway.post(
            "/public/tickets", content=b"{}", headers={"Content-Type": "text/json"}
        ),
        "too large": gateway.post(
            "/public/tickets",
            content=b"x" * 300_000,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ),
        "cross site": gateway.post(
            "/public/tickets",
            content=urlencode(VALID_FIELDS).encode(),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Sec-Fetch-Site": "cross-site",
            },
        ),
    }
    statuses = {name: answer.status_code for name, answer in answers.items()}
    assert statuses == {
        "form": 200,
        "redirect": 303,
        "confirmation": 200,
        "invalid link": 404,
        "unknown path": 404,
        "bad reference": 404,
        "forged token": 400,
        "wrong type": 415,
        "too large": 413,
        "cross site": 403,
    }
    for name, answer in answers.items():
        assert_public_headers(answer, name)
        assert frame_ancestors(answer) == "'none'", name
        assert answer.headers.get("x-frame-options") == "DENY", name
        assert answer.headers["content-type"].count("charset") == 1, name

    stylesheet = gateway.get("/public/static/app.css")
    assert stylesheet.headers.get("x-content-type-options") == "nosniff"


def test_tenant_origins_may_frame_form(gateway: httpx.Client, admin: Admin) -> None:
    tenant = admin.create_tenant_with_person("004711", "Jörg Bäcker")
    admin.update_tenant(tenant.id, frame_ancestors=[INTRANET, WILDCARD])

    page = open_link(gateway, tenant.link_query())
    assert page.status_code == 200
    assert_public_headers(page, "form")
    assert frame_ancestors(page) == f"{INTRANET} {WILDCARD}"
    assert "x-frame-options" not in page.headers

    # The pages after the post stay inside the intranet's frame.
    invalid = post_form(gateway, form_token(page), {**VALID_FIELDS, "subject": ""})
    assert invalid.status_code == 400
    assert frame_ancestors(invalid) == f"{INTRANET} {WILDCARD}"
    redirect = post_form(gateway, form_token(invalid))
    assert redirect.status_code == 303
    confirmation = gateway.get(redirect.headers["location"])
    assert confirmation.status_code == 200
    assert frame_ancestors(confirmation) == f"{INTRANET} {WILDCARD}"
    assert "x-frame-options" not in confirmation.headers

    # The neutral page stays the same for every reason, this tenant's too.
    not_found = open_link(gateway, tenant.link_query("999999"))
    assert frame_ancestors(not_found) == "'none'"
    assert not_found.headers["x-frame-options"] == "DENY"


def test_confirmation_ignores_forged_tenant(
    gateway: httpx.Client, admin: Admin, tenant: TenantFixture
) -> None:
    framed = admin.create_tenant_with_person("004711", "Jörg Bäcker")
    admin.update_tenant(framed.id, frame_ancestors=[INTRANET])
    page = open_link(gateway, tenant.link_query())
    redirect = post_form(gateway, form_token(page))
    location = redirect.headers["location"]
    base, _, signed = location.partition("&tenant=")
    assert signed.startswith(f"{tenant.id}.")

    mac = signed.split(".", 1)[1]
    forged = gateway.get(f"{base}&tenant={framed.id}.{mac}")
    assert forged.status_code == 200
    assert frame_ancestors(forged) == "'none'"


@pytest.mark.parametrize(
    "origin",
    [
        "'self'",
        "*",
        "https://intranet.example.org/path",
        "https://intranet.example.org; script-src *",
        "javascript:alert(1)",
        "ftp://intranet.example.org",
        "https://*",
        "https://intra net.example.org",
    ],
)
def test_invalid_frame_ancestor_rejected(admin: Admin, origin: str) -> None:
    tenant = admin.create_tenant()
    response = admin.tenants.patch(
        f"/admin/tenants/{tenant['id']}", json={"frame_ancestors": [origin]}
    )
    assert response.status_code == 400
    body = response.json()
    assert "frame_ancestors" in body["detail"]
    assert repr(origin) in body["detail"] or origin in body["detail"]


def test_frame_ancestors_set_by_cli(
    stack: Stack,
    admin: Admin,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("LINKDESK_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("LINKDESK_TENANT_URL", stack.url("tenant"))
    tenant = admin.create_tenant()

    def run(*argv: str) -> dict[str, Any]:
        capsys.readouterr()
        assert cli.main([*argv, "--json"]) == 0, capsys.readouterr().err
        shown: dict[str, Any] = json.loads(capsys.readouterr().out)
        return shown

    updated = run(
        "tenant",
        "update",
        tenant["id"],
        "--frame-ancestor",
        "HTTPS://Intranet.Example.org/",
        "--signed-links",
        "required",
    )
    assert updated["frame_ancestors"] == [INTRANET]
    assert updated["signed_links_required"] is True
    cleared = run("tenant", "update", tenant["id"], "--no-frame-ancestors")
    assert cleared["frame_ancestors"] == []

    audit = admin.tenants.get(f"/admin/tenants/{tenant['id']}/audit").json()
    changes = [
        entry["details"] for entry in audit if entry["action"] == "tenant_updated"
    ]
    assert {"old": [], "new": [INTRANET]} in [c.get("frame_ancestors") for c in changes]


def test_link_path_without_query_has_headers(gateway: httpx.Client) -> None:
    answer = gateway.get(LINK_PATH)
    assert answer.status_code == 404
    assert_public_headers(answer, "link without query")
