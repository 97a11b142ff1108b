"""Unit tests for `services.gateway.directory.LookupCache`, the gateway's cache
of successful link lookups. Time comes from a settable clock; the tests that
run the cache inside the gateway, with real events, are in
`tests/e2e/test_admin_cache.py`.
"""

from __future__ import annotations

import datetime as dt

from services.gateway.directory import LookupCache, ResolvedSecret
from shared import messages

TENANT_A = "6f1c0e0a-0000-4000-8000-00000000000a"
TENANT_B = "6f1c0e0a-0000-4000-8000-00000000000b"


class Clock:
    """A monotonic clock that moves only when a test sets `now`."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def resolved(tenant_id: str) -> ResolvedSecret:
    form = messages.TenantForm(
        tenant_id=tenant_id, name="Heim", language="de", categories=["IT"]
    )
    return ResolvedSecret(form, secret_id="0b8f5a52-2f4e-4d62-9a43-5b1c7e9d0a11")


def person(number: str) -> messages.Person:
    return messages.Person(personnel_number=number, display_name="Jörg Bäcker")


def test_entry_kept_until_ttl() -> None:
    clock = Clock()
    cache = LookupCache(30, clock=clock)
    key = cache.secret_key("k7Q2xLm9Rt4vZp1W")
    cache.store_tenant(key, resolved(TENANT_A), cache.snapshot())
    cache.store_person(TENANT_A, "004711", person("004711"), cache.snapshot())

    clock.now += 29.9
    assert cache.tenant(key) == resolved(TENANT_A)
    assert cache.person(TENANT_A, "004711") == person("004711")

    clock.now += 0.1
    assert cache.tenant(key) is None
    assert cache.person(TENANT_A, "004711") is None
    assert len(cache) == 0


def test_zero_ttl_stores_nothing() -> None:
    cache = LookupCache(0)
    key = cache.secret_key("k7Q2xLm9Rt4vZp1W")
    cache.store_tenant(key, resolved(TENANT_A), cache.snapshot())
    cache.store_person(TENANT_A, "004711", person("004711"), cache.snapshot())
    assert not cache.enabled
    assert cache.tenant(key) is None
    assert cache.person(TENANT_A, "004711") is None


def test_secret_key_is_keyed_hash() -> None:
    cache = LookupCache(30)
    secret = "k7Q2xLm9Rt4vZp1W"
    key = cache.secret_key(secret)
    assert secret.encode() not in key
    assert key == cache.secret_key(secret)
    assert key != cache.secret_key(secret + "x")
    assert key != LookupCache(30).secret_key(secret)


def test_drop_tenant_keeps_other_tenants() -> None:
    cache = LookupCache(30)
    key_a = cache.secret_key("secret-a")
    key_b = cache.secret_key("secret-b")
    snapshot = cache.snapshot()
    cache.store_tenant(key_a, resolved(TENANT_A), snapshot)
    cache.store_tenant(key_b, resolved(TENANT_B), snapshot)
    cache.store_person(TENANT_A, "004711", person("004711"), snapshot)
    cache.store_person(TENANT_B, "004711", person("004711"), snapshot)

    assert cache.drop_tenant(TENANT_A) == 2

    assert cache.tenant(key_a) is None
    assert cache.person(TENANT_A, "004711") is None
    assert cache.tenant(key_b) == resolved(TENANT_B)
    assert cache.person(TENANT_B, "004711") == person("004711")


def test_answer_older_than_drop_not_stored() -> None:
    cache = LookupCache(30)
    key = cache.secret_key("k7Q2xLm9Rt4vZp1W")
    before_event = cache.snapshot()
    # The event arrives while the lookup waits for its reply.
    cache.drop_tenant(TENANT_A)
    cache.store_tenant(key, resolved(TENANT_A), before_event)
    cache.store_person(TENANT_A, "004711", person("004711"), before_event)
    assert cache.tenant(key) is None
    assert cache.person(TENANT_A, "004711") is None


def test_drop_of_other_tenant_does_not_block_store() -> None:
    cache = LookupCache(30)
    key = cache.secret_key("k7Q2xLm9Rt4vZp1W")
    snapshot = cache.snapshot()
    cache.drop_tenant(TENANT_B)
    cache.store_tenant(key, resolved(TENANT_A), snapshot)
    assert cache.tenant(key) == resolved(TENANT_A)


def test_answer_older_than_clear_not_stored() -> None:
    cache = LookupCache(30)
    key = cache.secret_key("k7Q2xLm9Rt4vZp1W")
    cache.store_tenant(key, resolved(TENANT_A), cache.snapshot())
    in_flight = cache.snapshot()
    cache.clear()
    cache.store_person(TENANT_A, "004711", person("004711"), in_flight)
    assert cache.tenant(key) is None
    assert cache.person(TENANT_A, "004711") is None


def test_secret_expiry_shortens_ttl() -> None:
    clock = Clock()
    cache = LookupCache(30, clock=clock)
    key = cache.secret_key("k7Q2xLm9Rt4vZp1W")
    expires_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    cache.store_tenant(key, resolved(TENANT_A), cache.snapshot(), expires_at)

    clock.now += 4
    assert cache.tenant(key) == resolved(TENANT_A)
    clock.now += 1.5
    assert cache.tenant(key) is None


def test_expired_secret_not_stored() -> None:
    cache = LookupCache(30)
    key = cache.secret_key("k7Q2xLm9Rt4vZp1W")
    expired = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    cache.store_tenant(key, resolved(TENANT_A), cache.snapshot(), expired)
    assert cache.tenant(key) is None


def test_oldest_entries_evicted_at_limit() -> None:
    cache = LookupCache(30, max_entries=3)
    snapshot = cache.snapshot()
    for number in ("1", "2", "3", "4"):
        cache.store_person(TENANT_A, number, person(number), snapshot)
    assert cache.person(TENANT_A, "1") is None
    assert [cache.person(TENANT_A, n) for n in ("2", "3", "4")] == [
        person("2"),
        person("3"),
        person("4"),
    ]


def test_tenant_check_kept_per_credential() -> None:
    clock = Clock()
    cache = LookupCache(30, clock=clock)
    form = resolved(TENANT_A).tenant
    by_secret = (TENANT_A, "0b8f5a52-2f4e-4d62-9a43-5b1c7e9d0a11", None)
    by_key = (TENANT_A, None, "key-2026")
    cache.store_tenant_form(by_secret, form, cache.snapshot())

    assert cache.tenant_form(by_secret) == form
    assert cache.tenant_form(by_key) is None
    assert cache.tenant_form((TENANT_A, None, None)) is None


def test_tenant_check_dropped_with_tenant() -> None:
    cache = LookupCache(30)
    key = (TENANT_A, None, "key-2026")
    other = (TENANT_B, None, "key-2026")
    cache.store_tenant_form(key, resolved(TENANT_A).tenant, cache.snapshot())
    cache.store_tenant_form(other, resolved(TENANT_B).tenant, cache.snapshot())

    assert cache.drop_tenant(TENANT_A) == 1

    assert cache.tenant_form(key) is None
    assert cache.tenant_form(other) == resolved(TENANT_B).tenant


def test_credential_expiry_shortens_tenant_check() -> None:
    clock = Clock()
    cache = LookupCache(30, clock=clock)
    key = (TENANT_A, None, "key-2026")
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    cache.store_tenant_form(key, resolved(TENANT_A).tenant, cache.snapshot(), expires)

    clock.now += 4
    assert cache.tenant_form(key) is not None

    clock.now += 1.5
    assert cache.tenant_form(key) is None
