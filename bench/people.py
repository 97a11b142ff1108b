"""Many people in the benchmark's tenant, and many tenants, so that links
and forms miss the gateway's caches as they would in a large deployment."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench import forms
from bench.system import System
from linkdesk import links
from services.gateway import form_token

GET_KIND = "linkdesk GET link, many people"
POST_KIND = "linkdesk POST form, many people"
TENANTS_GET_KIND = "linkdesk GET link, many tenants"
TENANTS_POST_KIND = "linkdesk POST form, many tenants"


@dataclass(frozen=True)
class Person:
    number: str
    name: str


def add_people(system: System, count: int) -> list[Person]:
    """Import `count` people into the tenant of the benchmark's link with the
    personnel service's CSV import, and return them."""
    people = [Person(f"B{index:06d}", f"Person {index}") for index in range(count)]
    body = "Personalnummer;Name\n" + "".join(
        f"{person.number};{person.name}\n" for person in people
    )
    with system.admin_client("personnel", timeout=120) as personnel:
        response = personnel.post(
            f"/admin/tenants/{system.demo_data.tenant_id}/people/import",
            content=body.encode(),
            headers={"Content-Type": "text/csv"},
        )
    response.raise_for_status()
    return people


def write_link_paths(system: System, people: list[Person], path: Path) -> None:
    """Write the link of each person, path and query only, one per line."""
    path.write_text(
        "".join(
            links.build_link("", system.demo_data.secret, person.number) + "\n"
            for person in people
        )
    )


def write_form_bodies(system: System, people: list[Person], path: Path) -> None:
    """Write one form body per person, each signed as the gateway signs the
    form it renders for that person, one per line."""
    context = form_token.verify(system.form_key, system.fetch_form_token())
    path.write_text(
        "".join(
            forms.form_body(
                system.form_key,
                context,
                personnel_number=person.number,
                person_name=person.name,
            )
            + "\n"
            for person in people
        )
    )


def write_tenant_form_bodies(
    system: System, paths: list[str], per_tenant: int, path: Path
) -> None:
    """Write `per_tenant` form bodies for each tenant's link, one per line,
    with the tenants in rotation.

    Each link is opened once, and its bodies are signed from the form that
    the gateway rendered for it, so every post carries its own tenant, person
    and secret id, and the gateway checks them again when it is posted.
    """
    contexts = [
        form_token.verify(
            system.form_key,
            system.fetch_form_token(system.url("gateway") + link_path),
        )
        for link_path in paths
    ]
    path.write_text(
        "".join(
            forms.form_body(system.form_key, context) + "\n"
            for _ in range(per_tenant)
            for context in contexts
        )
    )


def add_tenants(system: System, count: int) -> list[str]:
    """Create `count` tenants, each with intake on, a secret and one person,
    and return the link of each, path and query only."""
    paths = []
    with (
        system.admin_client("tenant") as tenants,
        system.admin_client("personnel") as personnel,
    ):
        for index in range(count):
            created = tenants.post(
                "/admin/tenants",
                json={"name": f"Heim {index}", "intake_enabled": True},
            )
            created.raise_for_status()
            tenant_id = created.json()["id"]
            issued = tenants.post(f"/admin/tenants/{tenant_id}/secrets")
            issued.raise_for_status()
            person = personnel.post(
                f"/admin/tenants/{tenant_id}/people",
                json={"personnel_number": "004711", "name": f"Person {index}"},
            )
            person.raise_for_status()
            paths.append(links.build_link("", issued.json()["secret"], "004711"))
    return paths
