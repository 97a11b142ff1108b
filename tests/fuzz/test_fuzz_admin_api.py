"""Fuzz the tenant and personnel admin APIs from their OpenAPI documents.

schemathesis generates requests for every operation of `/schema/openapi.json`
(valid and invalid bodies, parameters and path ids) and sends them with the
admin token; no answer may be a 500. The budget is fixed per operation and
the examples are reproducible (`derandomize`). Generated requests create
tenants and people with random names in the session's database, which no
other test counts.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from linkdesk.processes import Stack
from tests.conftest import ADMIN_TOKEN

EXAMPLES_PER_OPERATION = 25
ADMIN_FUZZ = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
AUTHORIZATION = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def operations(stack: Stack, service: str) -> list[schemathesis.APIOperation]:
    url = f"{stack.url(service)}/schema/openapi.json"
    schema = schemathesis.openapi.from_url(url, wait_for_schema=10)
    found = [result.ok() for result in schema.get_all_operations()]
    assert len(found) >= 5, f"{service} documents only {len(found)} operations"
    return found


def fuzz(stack: Stack, service: str) -> None:
    """Send each operation's generated requests; fail on the first 500."""
    base_url = stack.url(service)
    for operation in operations(stack, service):

        @ADMIN_FUZZ
        @given(case=operation.as_strategy())
        def call(case: schemathesis.Case) -> None:
            case.call_and_validate(
                base_url=base_url,
                headers=AUTHORIZATION,
                checks=[not_a_server_error],
                timeout=10,
            )

        call()


# schemathesis's own pytest integration (`schemathesis.pytest`) fails on
# pytest 9 (`'Function' object has no attribute '_nodeid'`, schemathesis
# 4.32), so each operation's strategy is run through hypothesis directly.


def test_tenant_admin_api_never_500(stack: Stack) -> None:
    fuzz(stack, "tenant")


def test_personnel_admin_api_never_500(stack: Stack) -> None:
    fuzz(stack, "personnel")
