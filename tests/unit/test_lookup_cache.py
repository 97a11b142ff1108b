"""Unit tests for `services.gateway.lookup_cache`, the gateway's cache of
successful link lookups, and the drops that change events cause. Time comes
from a settable clock. The tests that run the cache inside the gateway, with
real events, are in `tests/e2e/test_admin_cache.py`.
"""

from __future__ import annotations

import datetime as dt

from services.gateway.lookup_cache import LookupCache, ResolvedSecret, drop_for_event
from shared import directory_events, messages, subjects

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


def test_other_tenant_drop_allows_store() -> None:
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


# Drops of one person or of a tenant's people


def fill(cache: LookupCache, tenant_id: str, *numbers: str) -> None:
    """Store a tenant by secret, a tenant check, and people of `tenant_id`."""
    snapshot = cache.snapshot()
    cache.store_tenant(
        cache.secret_key(f"secret-{tenant_id}"), resolved(tenant_id), snapshot
    )
    cache.store_tenant_form(
        (tenant_id, "0b8f5a52-2f4e-4d62-9a43-5b1c7e9d0a11", None),
        resolved(tenant_id).tenant,
        snapshot,
    )
    for number in numbers:
        cache.store_person(tenant_id, number, person(number), snapshot)


def test_drop_person_keeps_other_entries() -> None:
    cache = LookupCache(30)
    fill(cache, TENANT_A, "004711", "004712")
    fill(cache, TENANT_B, "004711")

    assert cache.drop_person(TENANT_A, "004711") == 1

    assert cache.person(TENANT_A, "004711") is None
    assert cache.person(TENANT_A, "004712") == person("004712")
    assert cache.person(TENANT_B, "004711") == person("004711")
    assert cache.tenant(cache.secret_key(f"secret-{TENANT_A}")) is not None
    assert len(cache) == 6


def test_drop_person_not_cached() -> None:
    cache = LookupCache(30)
    fill(cache, TENANT_A, "004711")
    assert cache.drop_person(TENANT_A, "4711") == 0
    assert len(cache) == 3


def test_drop_people_keeps_tenant_entries() -> None:
    cache = LookupCache(30)
    fill(cache, TENANT_A, "004711", "004712")
    fill(cache, TENANT_B, "004711")

    assert cache.drop_people(TENANT_A) == 2

    assert cache.person(TENANT_A, "004711") is None
    assert cache.person(TENANT_A, "004712") is None
    assert cache.person(TENANT_B, "004711") == person("004711")
    assert cache.tenant(cache.secret_key(f"secret-{TENANT_A}")) == resolved(TENANT_A)
    form_key = (TENANT_A, "0b8f5a52-2f4e-4d62-9a43-5b1c7e9d0a11", None)
    assert cache.tenant_form(form_key) == resolved(TENANT_A).tenant


def test_drop_tenant_counts_every_kind() -> None:
    cache = LookupCache(30)
    fill(cache, TENANT_A, "004711", "004712")
    fill(cache, TENANT_B, "004711")
    assert cache.drop_tenant(TENANT_A) == 4
    assert len(cache) == 3


# Lookups in flight during a drop


def test_person_drop_blocks_inflight_lookup() -> None:
    cache = LookupCache(30)
    in_flight = cache.snapshot()
    cache.drop_person(TENANT_A, "004711")

    cache.store_person(TENANT_A, "004711", person("004711"), in_flight)
    cache.store_person(TENANT_A, "004712", person("004712"), in_flight)
    cache.store_person(TENANT_B, "004711", person("004711"), in_flight)

    assert cache.person(TENANT_A, "004711") is None
    assert cache.person(TENANT_A, "004712") == person("004712")
    assert cache.person(TENANT_B, "004711") == person("004711")


def test_person_lookup_after_drop_stored() -> None:
    cache = LookupCache(30)
    cache.drop_person(TENANT_A, "004711")
    cache.store_person(TENANT_A, "004711", person("004711"), cache.snapshot())
    assert cache.person(TENANT_A, "004711") == person("004711")


def test_people_drop_blocks_inflight_lookups() -> None:
    cache = LookupCache(30)
    key = cache.secret_key("k7Q2xLm9Rt4vZp1W")
    in_flight = cache.snapshot()
    cache.drop_people(TENANT_A)

    cache.store_person(TENANT_A, "004711", person("004711"), in_flight)
    cache.store_tenant(key, resolved(TENANT_A), in_flight)
    cache.store_person(TENANT_B, "004711", person("004711"), in_flight)

    assert cache.person(TENANT_A, "004711") is None
    assert cache.tenant(key) == resolved(TENANT_A)
    assert cache.person(TENANT_B, "004711") == person("004711")


def test_tenant_drop_blocks_inflight_check() -> None:
    cache = LookupCache(30)
    form_key = (TENANT_A, None, "key-2026")
    in_flight = cache.snapshot()
    cache.drop_tenant(TENANT_A)
    cache.store_tenant_form(form_key, resolved(TENANT_A).tenant, in_flight)
    assert cache.tenant_form(form_key) is None


def test_forgotten_drop_blocks_older_lookups() -> None:
    cache = LookupCache(30, max_drop_records=2)
    in_flight = cache.snapshot()
    for number in ("1", "2", "3"):
        cache.drop_person(TENANT_A, number)
    assert cache.drop_records() == 2

    # The drop of "1" is forgotten, so no lookup older than it is stored.
    cache.store_person(TENANT_A, "1", person("1"), in_flight)
    cache.store_person(TENANT_A, "4", person("4"), in_flight)
    assert cache.person(TENANT_A, "1") is None
    assert cache.person(TENANT_A, "4") is None

    cache.store_person(TENANT_A, "1", person("1"), cache.snapshot())
    assert cache.person(TENANT_A, "1") == person("1")


# The per-tenant index and memory bounds


def test_eviction_keeps_index_consistent() -> None:
    cache = LookupCache(30, max_entries=2)
    snapshot = cache.snapshot()
    cache.store_person(TENANT_A, "1", person("1"), snapshot)
    cache.store_person(TENANT_B, "1", person("1"), snapshot)
    cache.store_person(TENANT_A, "2", person("2"), snapshot)

    # The oldest entry, TENANT_A's "1", was evicted.
    assert cache.person(TENANT_A, "1") is None
    assert cache.drop_tenant(TENANT_A) == 1
    assert cache.drop_tenant(TENANT_B) == 1
    assert cache.indexed_tenants() == 0


def test_expired_entry_leaves_index() -> None:
    clock = Clock()
    cache = LookupCache(30, clock=clock)
    cache.store_person(TENANT_A, "004711", person("004711"), cache.snapshot())
    clock.now += 30
    assert cache.person(TENANT_A, "004711") is None
    assert cache.indexed_tenants() == 0
    assert cache.drop_tenant(TENANT_A) == 0


def test_restored_key_indexed_once() -> None:
    cache = LookupCache(30)
    cache.store_person(TENANT_A, "004711", person("004711"), cache.snapshot())
    cache.store_person(TENANT_A, "004711", person("004711"), cache.snapshot())
    assert len(cache) == 1
    assert cache.drop_people(TENANT_A) == 1


def test_passing_tenants_leave_bounded_state() -> None:
    cache = LookupCache(30, max_entries=5, max_drop_records=5)
    for index in range(200):
        tenant_id = f"6f1c0e0a-0000-4000-8000-{index:012d}"
        fill(cache, tenant_id, "004711")
        if index % 2:
            cache.drop_tenant(tenant_id)
        else:
            cache.drop_person(tenant_id, "004711")

    assert len(cache) <= 3 * 5
    assert cache.indexed_tenants() <= 3 * 5
    assert cache.drop_records() == 5


def test_clear_forgets_drops() -> None:
    cache = LookupCache(30)
    cache.drop_person(TENANT_A, "004711")
    cache.drop_tenant(TENANT_B)
    cache.clear()
    assert cache.drop_records() == 0
    assert cache.indexed_tenants() == 0


# Change events


def person_event(
    tenant_id: str, number: str | None, count: int = 1, change: str = "updated"
) -> bytes:
    event = directory_events.PersonChanged(
        tenant_id=tenant_id,
        change="updated",
        personnel_number=number,
        count=count,
        changed_at=directory_events.now(),
    )
    encoded = messages.ENCODER.encode(event)
    return encoded.replace(b'"updated"', f'"{change}"'.encode())


def test_person_event_drops_that_person() -> None:
    cache = LookupCache(30)
    fill(cache, TENANT_A, "004711", "004712")
    subject = subjects.person_changed(TENANT_A)

    dropped = drop_for_event(cache, subject, person_event(TENANT_A, "004711"))

    assert dropped == ("person", 1)
    assert cache.person(TENANT_A, "004711") is None
    assert cache.person(TENANT_A, "004712") == person("004712")
    assert len(cache) == 3


def test_import_event_drops_people_only() -> None:
    cache = LookupCache(30)
    fill(cache, TENANT_A, "004711", "004712")
    subject = subjects.person_changed(TENANT_A)
    payload = person_event(TENANT_A, None, count=40, change="imported")

    assert drop_for_event(cache, subject, payload) == ("people", 2)
    assert len(cache) == 2


def test_event_for_several_numbers_drops_people() -> None:
    cache = LookupCache(30)
    fill(cache, TENANT_A, "004711", "004712")
    subject = subjects.person_changed(TENANT_A)
    payload = person_event(TENANT_A, "004711", count=2)

    assert drop_for_event(cache, subject, payload) == ("people", 2)


def test_tenant_event_drops_everything() -> None:
    cache = LookupCache(30)
    fill(cache, TENANT_A, "004711")
    fill(cache, TENANT_B, "004711")
    event = directory_events.TenantChanged(
        tenant_id=TENANT_A,
        change="updated",
        fields=["categories"],
        changed_at=directory_events.now(),
    )
    payload = messages.ENCODER.encode(event)

    dropped = drop_for_event(cache, subjects.tenant_changed(TENANT_A), payload)

    assert dropped == ("tenant", 3)
    assert len(cache) == 3


def test_undecodable_person_event_drops_tenant() -> None:
    cache = LookupCache(30)
    fill(cache, TENANT_A, "004711")
    subject = subjects.person_changed(TENANT_A)
    assert drop_for_event(cache, subject, b"\xff not json") == ("tenant", 3)


def test_deeply_nested_person_event_drops_tenant() -> None:
    # msgspec raises RecursionError, not DecodeError, for deep nesting even
    # in a field that it skips.
    cache = LookupCache(30)
    fill(cache, TENANT_A, "004711")
    subject = subjects.person_changed(TENANT_A)
    payload = person_event(TENANT_A, "004711").replace(
        b"{", b'{"added_later":' + b"[" * 5000 + b"]" * 5000 + b",", 1
    )
    assert drop_for_event(cache, subject, payload) == ("tenant", 3)


def test_unknown_person_change_drops_tenant() -> None:
    cache = LookupCache(30)
    fill(cache, TENANT_A, "004711", "004712")
    subject = subjects.person_changed(TENANT_A)
    payload = person_event(TENANT_A, "004711", change="renumbered")
    assert drop_for_event(cache, subject, payload) == ("tenant", 4)


def test_person_event_with_extra_field_decoded() -> None:
    cache = LookupCache(30)
    fill(cache, TENANT_A, "004711", "004712")
    subject = subjects.person_changed(TENANT_A)
    payload = person_event(TENANT_A, "004711").replace(
        b"{", b'{"added_later":[1,2],', 1
    )
    assert drop_for_event(cache, subject, payload) == ("person", 1)
