"""The personnel service's admin API: people, search, pagination and the CSV
import with the spreadsheet exports that HR departments send."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.helpers import Admin, TenantFixture, open_link


def people_path(tenant_id: str) -> str:
    return f"/admin/tenants/{tenant_id}/people"


def list_people(admin: Admin, tenant_id: str, **params: Any) -> list[dict[str, Any]]:
    response = admin.personnel.get(people_path(tenant_id), params=params)
    assert response.status_code == 200, response.text
    return list(response.json())


def people_by_number(admin: Admin, tenant_id: str) -> dict[str, dict[str, Any]]:
    return {
        person["personnel_number"]: person
        for person in list_people(admin, tenant_id, limit=1000)
    }


def import_file(
    admin: Admin, tenant_id: str, data: bytes, **params: str
) -> httpx.Response:
    return admin.personnel.post(
        f"{people_path(tenant_id)}/import",
        params=params,
        content=data,
        headers={"Content-Type": "text/csv"},
    )


def imported(
    admin: Admin, tenant_id: str, data: bytes, **params: str
) -> dict[str, Any]:
    response = import_file(admin, tenant_id, data, **params)
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.fixture
def tenant_id(admin: Admin) -> str:
    """A new tenant without people."""
    return str(admin.create_tenant()["id"])


# One person at a time


def test_person_add_show_update(admin: Admin, tenant_id: str) -> None:
    created = admin.add_person(tenant_id, "004711", "  Jörg Bäcker ")
    assert created["personnel_number"] == "004711"
    assert created["name"] == "Jörg Bäcker"
    assert created["active"] is True

    by_path = admin.personnel.get(f"{people_path(tenant_id)}/004711")
    by_query = admin.personnel.get(
        f"/admin/tenants/{tenant_id}/person", params={"number": "004711"}
    )
    assert by_path.json() == created
    assert by_query.json() == created

    updated = admin.personnel.patch(
        f"{people_path(tenant_id)}/004711", json={"name": "Jörg Bäcker-Huber"}
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["name"] == "Jörg Bäcker-Huber"
    assert updated.json()["active"] is True


def test_person_name_stored_nfc(admin: Admin, tenant_id: str) -> None:
    created = admin.add_person(tenant_id, "1", "Jo\u0308rg")
    assert created["name"] == "J\u00f6rg"


def test_person_deactivate_reactivate(admin: Admin, tenant_id: str) -> None:
    admin.add_person(tenant_id, "004711", "Jörg Bäcker")
    off = admin.personnel.post(f"{people_path(tenant_id)}/004711/deactivate")
    assert off.status_code == 200, off.text
    assert off.json()["active"] is False
    on = admin.personnel.post(
        f"/admin/tenants/{tenant_id}/person/reactivate", params={"number": "004711"}
    )
    assert on.status_code == 200, on.text
    assert on.json()["active"] is True


def test_number_with_slash_by_query(admin: Admin, tenant_id: str) -> None:
    admin.add_person(tenant_id, "00/47", "Anna Muster")
    person_path = f"/admin/tenants/{tenant_id}/person"

    shown = admin.personnel.get(person_path, params={"number": "00/47"})
    assert shown.status_code == 200, shown.text
    assert shown.json()["personnel_number"] == "00/47"

    updated = admin.personnel.patch(
        person_path, params={"number": "00/47"}, json={"name": "Anna Beispiel"}
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["name"] == "Anna Beispiel"

    off = admin.personnel.post(f"{person_path}/deactivate", params={"number": "00/47"})
    assert off.status_code == 200, off.text
    assert off.json()["active"] is False
    assert people_by_number(admin, tenant_id)["00/47"]["active"] is False


def test_duplicate_person_conflict(admin: Admin, tenant_id: str) -> None:
    admin.add_person(tenant_id, "004711", "Jörg Bäcker")
    response = admin.personnel.post(
        people_path(tenant_id), json={"personnel_number": "004711", "name": "Other"}
    )
    assert response.status_code == 409
    assert "'004711'" in response.json()["detail"]


def test_leading_zeros_are_different_people(admin: Admin, tenant_id: str) -> None:
    admin.add_person(tenant_id, "004711", "Jörg Bäcker")
    admin.add_person(tenant_id, "4711", "Anna Muster")
    people = people_by_number(admin, tenant_id)
    assert people["004711"]["name"] == "Jörg Bäcker"
    assert people["4711"]["name"] == "Anna Muster"


def test_blank_number_rejected(admin: Admin, tenant_id: str) -> None:
    response = admin.personnel.post(
        people_path(tenant_id), json={"personnel_number": "  ", "name": "Anna"}
    )
    assert response.status_code == 400
    assert "personnel_number" in response.json()["detail"]
    assert "'  '" in response.json()["detail"]


def test_person_for_unknown_tenant_404(admin: Admin) -> None:
    missing = uuid.uuid4()
    response = admin.personnel.post(
        people_path(str(missing)), json={"personnel_number": "1", "name": "Anna"}
    )
    assert response.status_code == 404
    assert str(missing) in response.json()["detail"]


def test_unknown_person_404(admin: Admin, tenant_id: str) -> None:
    for response in (
        admin.personnel.get(f"{people_path(tenant_id)}/999"),
        admin.personnel.patch(f"{people_path(tenant_id)}/999", json={"name": "x"}),
        admin.personnel.post(
            f"/admin/tenants/{tenant_id}/person/deactivate", params={"number": "999"}
        ),
    ):
        assert response.status_code == 404
        assert "'999'" in response.json()["detail"]


# Listing


def test_list_pages_by_number(admin: Admin, tenant_id: str) -> None:
    numbers = ["001", "002", "010", "100", "A-7"]
    for number in reversed(numbers):
        admin.add_person(tenant_id, number, f"Person {number}")
    first = list_people(admin, tenant_id, limit=2)
    second = list_people(admin, tenant_id, limit=2, after=first[-1]["personnel_number"])
    third = list_people(admin, tenant_id, limit=2, after=second[-1]["personnel_number"])
    pages = [first, second, third]
    assert [[p["personnel_number"] for p in page] for page in pages] == [
        ["001", "002"],
        ["010", "100"],
        ["A-7"],
    ]


def test_list_search_ignores_case(admin: Admin, tenant_id: str) -> None:
    admin.add_person(tenant_id, "AB-100", "Jörg Bäcker")
    admin.add_person(tenant_id, "AB-200", "Anna Muster")
    admin.add_person(tenant_id, "CD-300", "Ömer Ünal")
    admin.add_person(tenant_id, "XY-400", "Bea Abendroth")

    def found(q: str) -> list[str]:
        return [p["personnel_number"] for p in list_people(admin, tenant_id, q=q)]

    assert found("ab-") == ["AB-100", "AB-200"]
    assert found("BÄCKER") == ["AB-100"]
    assert found("ömer") == ["CD-300"]
    # A number matches by prefix only; "ab" inside a name still matches.
    assert found("100") == []
    assert found("ab") == ["AB-100", "AB-200", "XY-400"]
    assert found("%") == []


def test_list_search_pages(admin: Admin, tenant_id: str) -> None:
    for number in ("1", "2", "3", "4"):
        admin.add_person(tenant_id, number, "Muster" if number != "3" else "Other")
    first = list_people(admin, tenant_id, q="muster", limit=2)
    rest = list_people(
        admin, tenant_id, q="muster", after=first[-1]["personnel_number"]
    )
    assert [p["personnel_number"] for p in first + rest] == ["1", "2", "4"]


# CSV import: the spreadsheet cases


def test_import_bom_and_semicolons(admin: Admin, tenant_id: str) -> None:
    data = b"\xef\xbb\xbfPersonalnummer;Name\r\n004711;J\xc3\xb6rg B\xc3\xa4cker\r\n"
    report = imported(admin, tenant_id, data)
    assert report["added"] == ["004711"]
    assert report["delimiter"] == ";"
    assert people_by_number(admin, tenant_id)["004711"]["name"] == "Jörg Bäcker"


def test_import_quoted_semicolon(admin: Admin, tenant_id: str) -> None:
    data = 'Personalnummer;Name\n004711;Jörg Bäcker\n004712;"Muster; Anna"\n'
    report = imported(admin, tenant_id, data.encode())
    assert report["counts"]["added"] == 2
    assert people_by_number(admin, tenant_id)["004712"]["name"] == "Muster; Anna"


def test_import_comma_file(admin: Admin, tenant_id: str) -> None:
    data = 'personnel_number,name,active\n004711,"Bäcker, Jörg",yes\n004712,Anna,no\n'
    report = imported(admin, tenant_id, data.encode())
    assert report["delimiter"] == ","
    people = people_by_number(admin, tenant_id)
    assert people["004711"]["name"] == "Bäcker, Jörg"
    assert people["004711"]["active"] is True
    assert people["004712"]["active"] is False


def test_import_windows_1252_with_option(admin: Admin, tenant_id: str) -> None:
    data = b"Personalnummer;Name\r\n004711;J\xf6rg B\xe4cker\r\n"
    report = imported(admin, tenant_id, data, encoding="windows-1252")
    assert report["encoding"] == "windows-1252"
    assert people_by_number(admin, tenant_id)["004711"]["name"] == "Jörg Bäcker"


def test_import_windows_1252_without_option(admin: Admin, tenant_id: str) -> None:
    data = b"Personalnummer;Name\r\n004711;J\xf6rg B\xe4cker\r\n"
    response = import_file(admin, tenant_id, data)
    assert response.status_code == 422
    body = response.json()
    assert body["error_count"] == 1
    assert body["errors"][0]["line"] == 2
    assert "encoding=windows-1252" in body["errors"][0]["message"]
    assert people_by_number(admin, tenant_id) == {}


def test_import_utf8_sent_as_windows_1252(admin: Admin, tenant_id: str) -> None:
    data = "Personalnummer;Name\r\n004711;Jörg Bäcker\r\n".encode()
    response = import_file(admin, tenant_id, data, encoding="windows-1252")
    assert response.status_code == 422, response.text
    body = response.json()
    assert [error["line"] for error in body["errors"]] == [None, 2]
    assert "UTF-8 text" in body["errors"][0]["message"]
    assert people_by_number(admin, tenant_id) == {}


def test_import_duplicates_and_blank(admin: Admin, tenant_id: str) -> None:
    admin.add_person(tenant_id, "000001", "Bestand")
    before = people_by_number(admin, tenant_id)
    data = b"Personalnummer;Name\n004711;Anna\n004712;Bea\n004711;Carl\n;Dora\n"

    for dry_run in ("true", "false"):
        response = import_file(admin, tenant_id, data, dry_run=dry_run)
        assert response.status_code == 422, response.text
        errors = response.json()["errors"]
        assert [(e["line"], e["column"]) for e in errors] == [
            (2, "Personalnummer"),
            (4, "Personalnummer"),
            (5, "Personalnummer"),
        ]
        assert "line 4" in errors[0]["message"]
        assert "line 2" in errors[1]["message"]
        assert "line 2" in response.json()["detail"]
    assert people_by_number(admin, tenant_id) == before


def test_import_missing_column(admin: Admin, tenant_id: str) -> None:
    response = import_file(admin, tenant_id, b"Nummer;Name\n1;Anna\n")
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error == {
        "line": 1,
        "column": "Personalnummer",
        "message": error["message"],
    }
    assert "missing column" in error["message"]


def test_import_dry_run_writes_nothing(admin: Admin, tenant_id: str) -> None:
    admin.add_person(tenant_id, "1", "Anna")
    admin.add_person(tenant_id, "2", "Bea")
    admin.add_person(tenant_id, "3", "Carl")
    before = people_by_number(admin, tenant_id)
    data = b"Personalnummer;Name\n1;Anna\n2;Bea Neu\n4;Dora\n"

    dry = imported(admin, tenant_id, data, dry_run="true", deactivate_missing="true")
    assert dry["dry_run"] is True
    assert people_by_number(admin, tenant_id) == before

    applied = imported(admin, tenant_id, data, deactivate_missing="true")
    assert applied["dry_run"] is False
    for key in ("counts", "added", "updated", "deactivated", "unchanged"):
        assert dry[key] == applied[key], key
    assert applied["added"] == ["4"]
    assert applied["updated"] == ["2"]
    assert applied["deactivated"] == ["3"]
    assert applied["unchanged"] == ["1"]


def test_import_updates_and_reactivates(admin: Admin, tenant_id: str) -> None:
    admin.add_person(tenant_id, "1", "Anna")
    admin.add_person(tenant_id, "2", "Bea")
    admin.add_person(tenant_id, "3", "Carl")
    admin.update_person(tenant_id, "2", active=False)

    report = imported(
        admin, tenant_id, b"Personalnummer;Name;Aktiv\n1;Anna;nein\n2;Bea;ja\n"
    )
    assert report["deactivated"] == ["1"]
    assert report["updated"] == ["2"]
    assert report["unchanged"] == []
    people = people_by_number(admin, tenant_id)
    assert people["1"]["active"] is False
    assert people["2"]["active"] is True
    # Without deactivate_missing, people missing from the file stay as they are.
    assert people["3"]["active"] is True


def test_import_again_changes_nothing(admin: Admin, tenant_id: str) -> None:
    data = b"Personalnummer;Name\n1;Anna\n2;Bea\n"
    imported(admin, tenant_id, data)
    again = imported(admin, tenant_id, data, deactivate_missing="true")
    assert again["counts"] == {
        "added": 0,
        "updated": 0,
        "deactivated": 0,
        "unchanged": 2,
    }


def test_import_invalid_option_names_parameter(admin: Admin, tenant_id: str) -> None:
    response = import_file(
        admin, tenant_id, b"Personalnummer;Name\n1;A\n", encoding="latin-1"
    )
    assert response.status_code == 400
    assert "encoding" in response.text


def test_import_unknown_tenant_404(admin: Admin) -> None:
    missing = str(uuid.uuid4())
    response = import_file(admin, missing, b"Personalnummer;Name\n1;Anna\n")
    assert response.status_code == 404
    assert missing in response.json()["detail"]


def test_imported_person_opens_form(
    admin: Admin, tenant: TenantFixture, gateway: httpx.Client
) -> None:
    imported(admin, tenant.id, "Personalnummer;Name\n00/47;Ömer Ünal\n".encode())
    page = open_link(gateway, tenant.link_query("00/47"))
    assert page.status_code == 200
    assert "Ömer Ünal" in page.text
