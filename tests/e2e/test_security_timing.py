"""Invalid links take about the same time whatever the reason.

Without padding a malformed link is answered without any service round
trip, an unknown secret after one and an unknown person after two. The
gateway answers every invalid link no sooner than
`GATEWAY_INVALID_LINK_MIN_SECONDS` (0.05 s, the default, in the test
stack) after it arrived.

The measurement is built to be stable on a busy CI machine: the reasons
are interleaved in a shuffled order each round, so a slow phase of the
machine hits all of them alike; the median of each reason is compared, so
a few outliers (garbage collection, a scheduler hiccup) do not count; and
the bound is several milliseconds, about a tenth of the padding. The
number of requests is fixed.
"""

from __future__ import annotations

import random
import statistics
import time
from urllib.parse import quote

import httpx

from linkdesk.processes import Stack
from shared import signed_link
from tests.helpers import LINK_PATH, Admin

ROUNDS = 15
MIN_SECONDS = 0.05
"""The gateway's default `GATEWAY_INVALID_LINK_MIN_SECONDS`."""
MAX_MEDIAN_SPREAD_SECONDS = 0.006


def target(secret: str, number: str) -> str:
    return f"{LINK_PATH}?{quote(secret, safe='')}&{quote(number, safe='')}"


def test_invalid_link_reasons_take_same_time(stack: Stack, admin: Admin) -> None:
    main = admin.create_tenant_with_person("004711", "Jörg Bäcker")
    admin.add_person(main.id, "000815", "Ex Mitarbeiter")
    admin.update_person(main.id, "000815", active=False)
    revoked = admin.create_tenant_with_person("004711", "Rita Widerruf")
    admin.revoke_secret(revoked.id, revoked.secret_id)
    forged = signed_link.sign(
        "0000000000000000",
        "not-a-key",
        signed_link.Claims(main.id, "004711", int(time.time()) + 300),
    )
    targets = {
        "malformed": f"{LINK_PATH}?{quote(main.secret, safe='')}",
        "unknown_secret": target("k7Q2xLm9Rt4vZp1W", "004711"),
        "revoked_secret": target(revoked.secret, "004711"),
        "unknown_person": target(main.secret, "999999"),
        "inactive_person": target(main.secret, "000815"),
        "unknown_key": f"{LINK_PATH}?sig={forged}",
    }
    durations: dict[str, list[float]] = {reason: [] for reason in targets}
    rng = random.Random(20_260_101)  # noqa: S311 - ordering only

    with httpx.Client(base_url=stack.url("gateway"), timeout=10) as gateway:
        # Warm up the connection and the services' first-request paths.
        for path in targets.values():
            assert gateway.get(path).status_code == 404
        for _ in range(ROUNDS):
            order = list(targets)
            rng.shuffle(order)
            for reason in order:
                started = time.perf_counter()
                answer = gateway.get(targets[reason])
                durations[reason].append(time.perf_counter() - started)
                assert answer.status_code == 404, reason

    medians = {reason: statistics.median(times) for reason, times in durations.items()}
    report = ", ".join(f"{r}={m * 1000:.1f} ms" for r, m in sorted(medians.items()))
    for reason, median in medians.items():
        assert median >= MIN_SECONDS, f"{reason} was not padded: {report}"
    spread = max(medians.values()) - min(medians.values())
    assert spread <= MAX_MEDIAN_SPREAD_SECONDS, f"medians differ: {report}"
