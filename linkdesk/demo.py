"""Create, or find again, the demo tenant and person of `linkdesk dev`."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

DEMO_TENANT = "Demo Pflegeheim Sonnenhalde"
DEMO_NUMBER = "004711"
DEMO_PERSON = "Jörg Bäcker"


@dataclass
class DemoData:
    tenant_id: str
    secret: str
    personnel_number: str


def _client(base_url: str, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def ensure_demo(
    state_file: Path,
    tenant_url: str,
    personnel_url: str,
    token: str,
    tenant_name: str = DEMO_TENANT,
) -> DemoData:
    """Return the demo data, creating the tenant, secret and person once.

    The secret is stored only as a hash by the tenant service, so the
    development launcher keeps its own copy in `state_file` (mode 0600) to
    print the same link on every start.
    """
    if state_file.exists():
        saved = DemoData(**json.loads(state_file.read_text()))
        with _client(tenant_url, token) as tenants:
            if tenants.get(f"/admin/tenants/{saved.tenant_id}").status_code == 200:
                return saved

    with _client(tenant_url, token) as tenants:
        created = tenants.post(
            "/admin/tenants",
            json={
                "name": tenant_name,
                "language": "de",
                "categories": ["IT", "Gebäude", "Reinigung", "Sonstiges"],
                "intake_enabled": True,
            },
        )
        created.raise_for_status()
        tenant_id = created.json()["id"]
        issued = tenants.post(f"/admin/tenants/{tenant_id}/secrets")
        issued.raise_for_status()
        secret = issued.json()["secret"]
    with _client(personnel_url, token) as personnel:
        person = personnel.post(
            f"/admin/tenants/{tenant_id}/people",
            json={"personnel_number": DEMO_NUMBER, "name": DEMO_PERSON},
        )
        person.raise_for_status()

    demo = DemoData(tenant_id=tenant_id, secret=secret, personnel_number=DEMO_NUMBER)
    state_file.write_text(json.dumps(asdict(demo), indent=2))
    os.chmod(state_file, 0o600)
    return demo
