"""Every service serves Prometheus metrics with bounded label values.

The session's services are shared with other tests, so most checks compare
a scrape before and after the test's own requests.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import httpx
import nats
import pytest
from nats.aio.client import Client
from prometheus_client.parser import text_string_to_metric_families

from linkdesk.processes import SERVICES, Stack
from shared import subjects
from tests.helpers import LINK_PATH, TenantFixture, form_token, open_link, post_form

Labels = frozenset[tuple[str, str]]

HTTP_DURATION_COUNT = "linkdesk_http_request_duration_seconds_count"


class Scrape:
    """One scrape of a service's `/metrics`, parsed."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[tuple[str, Labels], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = (sample.name, frozenset(sample.labels.items()))
                self.samples[key] = sample.value

    def value(self, name: str, **labels: str) -> float:
        """Return a sample's value, 0 when the series does not exist yet."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def label_values(self) -> set[str]:
        return {value for _, labels in self.samples for _, value in labels}


def scrape(stack: Stack, service: str) -> Scrape:
    response = httpx.get(f"{stack.url(service)}/metrics", timeout=10.0)
    assert response.status_code == 200, response.text[:500]
    return Scrape(response.text)


def wait_for_value(
    stack: Stack,
    service: str,
    name: str,
    minimum: float,
    timeout: float = 15.0,
    **labels: str,
) -> Scrape:
    """Scrape until the sample reaches `minimum`; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    current = scrape(stack, service)
    while current.value(name, **labels) < minimum and time.monotonic() < deadline:
        time.sleep(0.1)
        current = scrape(stack, service)
    value = current.value(name, **labels)
    assert value >= minimum, f"{service} {name}{labels} is {value}, not {minimum}"
    return current


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


@pytest.mark.parametrize("service", SERVICES)
def test_metrics_endpoint_text_format(stack: Stack, service: str) -> None:
    response = httpx.get(f"{stack.url(service)}/metrics", timeout=10.0)

    assert response.status_code == 200, response.text[:500]
    content_type = response.headers["content-type"]
    assert content_type.startswith("text/plain; version=0.0.4")
    parsed = Scrape(response.text)
    assert "# TYPE linkdesk_http_request_duration_seconds histogram" in parsed.text
    assert "# TYPE process_cpu_seconds_total counter" in parsed.text
    # A scrape is an HTTP request too, counted under its route template.
    again = scrape(stack, service)
    assert again.value(
        HTTP_DURATION_COUNT, method="GET", route="/metrics", status="200"
    )


def test_submission_counted_by_route_template(
    stack: Stack, gateway: httpx.Client, tenant: TenantFixture
) -> None:
    before = {name: scrape(stack, name) for name in SERVICES}

    page = open_link(gateway, tenant.link_query())
    assert page.status_code == 200
    answer = post_form(gateway, form_token(page))
    assert answer.status_code == 303, answer.text[:500]
    confirmation = gateway.get(answer.headers["location"])
    assert confirmation.status_code == 200
    reference = answer.headers["location"].split("/")[-1].split("?")[0]

    after = scrape(stack, "gateway")
    routes = [
        ("GET", LINK_PATH, "200"),
        ("POST", "/public/tickets", "303"),
        ("GET", "/public/tickets/{reference}", "200"),
    ]
    for method, route, status in routes:
        labels = {"method": method, "route": route, "status": status}
        old = before["gateway"].value(HTTP_DURATION_COUNT, **labels)
        assert after.value(HTTP_DURATION_COUNT, **labels) == old + 1, labels

    published = {"event_type": "submitted", "outcome": "ok"}
    old = before["gateway"].value("linkdesk_events_published_total", **published)
    assert after.value("linkdesk_events_published_total", **published) == old + 1
    for subject in (subjects.TENANT_GET, subjects.PERSONNEL_RESOLVE):
        requests = {"subject": subject, "outcome": "ok"}
        old = before["gateway"].value("linkdesk_nats_requests_total", **requests)
        assert after.value("linkdesk_nats_requests_total", **requests) > old, subject

    # Opening the link and posting the form each ask tenant and personnel.
    handled = "linkdesk_nats_requests_handled_total"
    for service, subject in (
        ("tenant", subjects.TENANT_GET),
        ("personnel", subjects.PERSONNEL_RESOLVE),
    ):
        labels = {"subject": subject, "outcome": "ok"}
        old = before[service].value(handled, **labels)
        now = scrape(stack, service).value(handled, **labels)
        assert now > old, service

    stored = {"outcome": "stored"}
    consumed = "linkdesk_submissions_consumed_total"
    old_stored = before["ticket"].value(consumed, **stored)
    ticket = wait_for_value(stack, "ticket", consumed, old_stored + 1, **stored)
    created = {"event_type": "created", "outcome": "ok"}
    old_created = before["ticket"].value("linkdesk_events_published_total", **created)
    ticket = wait_for_value(
        stack, "ticket", "linkdesk_events_published_total", old_created + 1, **created
    )

    for service, parsed in (("gateway", after), ("ticket", ticket)):
        labels = parsed.label_values()
        for private in (reference, tenant.id, tenant.secret, tenant.personnel_number):
            assert not any(private in value for value in labels), (service, private)


def test_link_rejections_counted_by_reason(
    stack: Stack, gateway: httpx.Client, tenant: TenantFixture
) -> None:
    rejections = "linkdesk_link_rejections_total"
    before = scrape(stack, "gateway")
    tenant_before = scrape(stack, "tenant")
    unknown_secret = f"{uuid.uuid4().hex}&{tenant.personnel_number}"

    assert open_link(gateway, "not-a-link").status_code == 404
    assert open_link(gateway, unknown_secret).status_code == 404

    after = scrape(stack, "gateway")
    for reason in ("wrong_part_count", "unknown_secret"):
        old = before.value(rejections, reason=reason)
        assert after.value(rejections, reason=reason) == old + 1, reason
    assert after.value(rejections, reason="other") == before.value(
        rejections, reason="other"
    )
    rejected = {"subject": subjects.TENANT_RESOLVE_SECRET, "outcome": "rejected"}
    handled = "linkdesk_nats_requests_handled_total"
    old = tenant_before.value(handled, **rejected)
    assert scrape(stack, "tenant").value(handled, **rejected) == old + 1
    assert not any("not-a-link" in value for value in after.label_values())
    assert not any(tenant.secret in value for value in after.label_values())


def test_unrouted_requests_share_one_label(stack: Stack, gateway: httpx.Client) -> None:
    count = HTTP_DURATION_COUNT
    path = f"/public/no-such-page/{uuid.uuid4().hex}"
    before = scrape(stack, "gateway")

    assert gateway.get(path).status_code == 404
    assert gateway.put("/public/tickets").status_code == 405
    # A method that the HTTP parser accepts and no route uses. The parser
    # rejects unknown methods before the app sees them.
    assert gateway.request("PURGE", path).status_code == 404

    after = scrape(stack, "gateway")
    not_found = {"method": "GET", "route": "unmatched", "status": "404"}
    assert after.value(count, **not_found) == before.value(count, **not_found) + 1
    not_allowed = {"method": "PUT", "route": "unmatched", "status": "405"}
    assert after.value(count, **not_allowed) == before.value(count, **not_allowed) + 1
    other_method = sum(
        value
        for (name, labels), value in after.samples.items()
        if name == count and ("method", "other") in labels
    ) - sum(
        value
        for (name, labels), value in before.samples.items()
        if name == count and ("method", "other") in labels
    )
    assert other_method == 1
    assert not any(path in value for value in after.label_values())
    assert "PURGE" not in after.label_values()


async def test_parked_message_counted(
    stack: Stack, nc: Client, tenant: TenantFixture
) -> None:
    parked = "linkdesk_messages_parked_total"
    before = scrape(stack, "ticket").value(parked, reason="invalid_message")

    await nc.jetstream().publish(
        subjects.ticket_submitted(tenant.id),
        b"\xff not a submission",
        stream=subjects.TICKET_STREAM,
        headers={"Nats-Msg-Id": str(uuid.uuid4())},
    )

    wait_for_value(stack, "ticket", parked, before + 1, reason="invalid_message")


def test_consumer_fetch_time_advances(stack: Stack) -> None:
    gauge = "linkdesk_consumer_last_fetch_timestamp_seconds"
    first = scrape(stack, "ticket").value(gauge)
    assert first > 0

    # An idle consumer's fetch returns empty after one second.
    wait_for_value(stack, "ticket", gauge, first + 0.001)
