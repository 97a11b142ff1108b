"""The `linkdesk tenant`, `secret` and `person` commands against the running
stack, through `linkdesk.cli.main` with the environment an operator sets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from linkdesk import cli
from linkdesk.processes import Stack
from tests.conftest import ADMIN_TOKEN
from tests.helpers import TenantFixture, open_link


@pytest.fixture
def linkdesk_env(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINKDESK_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("LINKDESK_TENANT_URL", stack.url("tenant"))
    monkeypatch.setenv("LINKDESK_PERSONNEL_URL", stack.url("personnel"))
    monkeypatch.setenv("LINKDESK_GATEWAY_URL", stack.url("gateway"))


class Run:
    """Runs `linkdesk` commands and keeps their exit code and output."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys
        self.out = ""
        self.err = ""

    def __call__(self, *argv: str) -> int:
        self.capsys.readouterr()
        code = cli.main(list(argv))
        captured = self.capsys.readouterr()
        self.out, self.err = captured.out, captured.err
        return code

    def json(self, *argv: str) -> Any:
        code = self(*argv, "--json")
        assert code == 0, self.err
        return json.loads(self.out)


@pytest.fixture
def run(linkdesk_env: None, capsys: pytest.CaptureFixture[str]) -> Run:
    return Run(capsys)


def test_cli_tenant_to_working_link(run: Run, gateway: httpx.Client) -> None:
    tenant = run.json("tenant", "create", "CLI Heim", "--intake", "on")
    tenant_id = tenant["id"]
    assert tenant["intake_enabled"] is True

    assert run("secret", "issue", tenant_id) == 0
    lines = dict(line.split(":", 1) for line in run.out.splitlines()[:3])
    secret = lines["secret"].strip()
    assert (
        "/public/TicketAllgmein/Ticket.aspx?<secret>&<personnel number>"
        in (lines["link format"])
    )

    assert run("person", "add", tenant_id, "004711", "Jörg Bäcker") == 0
    assert "004711" in run.out
    assert "Jörg Bäcker" in run.out

    fixture = TenantFixture(
        id=tenant_id, secret=secret, secret_id="", personnel_number="004711"
    )
    page = open_link(gateway, fixture.link_query())
    assert page.status_code == 200
    assert "Jörg Bäcker" in page.text


def test_cli_tenant_commands(run: Run) -> None:
    tenant_id = run.json(
        "tenant", "create", "Tabelle", "--language", "it", "--category", "IT"
    )["id"]

    assert run("tenant", "list") == 0
    header, *rows = run.out.splitlines()
    assert header.split() == ["ID", "NAME", "LANGUAGE", "CATEGORIES", "INTAKE_ENABLED"]
    assert any(row.startswith(tenant_id) for row in rows)

    shown = run.json("tenant", "show", tenant_id)
    assert (shown["language"], shown["categories"]) == ("it", ["IT"])

    updated = run.json(
        "tenant",
        "update",
        tenant_id,
        "--name",
        "Neu",
        "--category",
        "A",
        "--category",
        "B",
    )
    assert (updated["name"], updated["categories"]) == ("Neu", ["A", "B"])

    assert run("tenant", "intake", tenant_id, "on") == 0
    assert "True" in run.out
    assert run("tenant", "intake", tenant_id, "off") == 0
    assert "False" in run.out

    assert run("tenant", "audit", tenant_id) == 0
    header, *rows = run.out.splitlines()
    assert header.split() == ["ID", "CREATED_AT", "ADMIN", "ACTION", "DETAILS"]
    actions = [row.split()[3] for row in rows]
    assert actions == [
        "intake_disabled",
        "intake_enabled",
        "tenant_updated",
        "tenant_created",
    ]
    assert {row.split()[2] for row in rows} == {"tests"}


def test_cli_secret_rotate_list_revoke(run: Run) -> None:
    tenant_id = run.json("tenant", "create", "Geheim")["id"]
    first = run.json("secret", "issue", tenant_id)

    assert run("secret", "rotate", tenant_id, "--grace", "600") == 0
    assert f"secret {first['info']['id']} expires at" in run.out
    assert first["secret"] not in run.out

    assert run("secret", "list", tenant_id) == 0
    statuses = {line.split()[0]: line.split()[1] for line in run.out.splitlines()[1:]}
    assert statuses[first["info"]["id"]] == "expiring"
    assert list(statuses.values()).count("active") == 1

    assert run("secret", "revoke", tenant_id, first["info"]["id"]) == 0
    assert "revoked" in run.out
    assert run("secret", "list", tenant_id) == 0
    assert first["secret"] not in run.out


def test_cli_signing_key_rotate_list_revoke(run: Run) -> None:
    tenant_id = run.json("tenant", "create", "Signiert")["id"]
    first = run.json("signing-key", "issue", tenant_id)

    assert run("signing-key", "rotate", tenant_id, "--grace", "600") == 0
    assert f"key {first['key_id']} expires at" in run.out
    assert first["key"] not in run.out

    assert run("signing-key", "list", tenant_id) == 0
    statuses = {line.split()[0]: line.split()[1] for line in run.out.splitlines()[1:]}
    assert statuses[first["key_id"]] == "expiring"
    assert list(statuses.values()).count("active") == 1

    assert run("signing-key", "revoke", tenant_id, first["key_id"]) == 0
    assert "revoked" in run.out
    assert run("signing-key", "list", tenant_id) == 0
    assert first["key"] not in run.out


def test_cli_person_commands(run: Run) -> None:
    tenant_id = run.json("tenant", "create", "Personal")["id"]
    assert run("person", "add", tenant_id, "00/47", "Anna Muster") == 0
    assert run("person", "add", tenant_id, "004711", "Jörg Bäcker") == 0

    assert run.json("person", "show", tenant_id, "00/47")["name"] == "Anna Muster"
    renamed = run.json("person", "update", tenant_id, "00/47", "--name", "Anna Neu")
    assert renamed["name"] == "Anna Neu"
    assert run.json("person", "deactivate", tenant_id, "00/47")["active"] is False
    assert run.json("person", "reactivate", tenant_id, "00/47")["active"] is True

    assert run("person", "list", tenant_id, "--search", "BÄCK") == 0
    header, *rows = run.out.splitlines()
    assert header.split()[:3] == ["PERSONNEL_NUMBER", "NAME", "ACTIVE"]
    assert [row.split()[0] for row in rows] == ["004711"]

    assert run("person", "list", tenant_id, "--limit", "1") == 0
    assert "--after '00/47'" in run.out
    page = run.json("person", "list", tenant_id, "--limit", "1", "--after", "00/47")
    assert [p["personnel_number"] for p in page] == ["004711"]


def test_cli_import_dry_run_then_apply(run: Run, tmp_path: Path) -> None:
    tenant_id = run.json("tenant", "create", "Import")["id"]
    path = tmp_path / "personal.csv"
    path.write_bytes(b"Personalnummer;Name\r\n004711;J\xf6rg B\xe4cker\r\n")

    code = run(
        "person",
        "import",
        tenant_id,
        str(path),
        "--encoding",
        "windows-1252",
        "--dry-run",
    )
    assert code == 0, run.err
    assert "1 added, 0 updated, 0 deactivated, 0 unchanged" in run.out
    assert "Dry run: nothing was written." in run.out
    assert run.json("person", "list", tenant_id) == []

    report = run.json(
        "person", "import", tenant_id, str(path), "--encoding", "windows-1252"
    )
    assert report["added"] == ["004711"]
    assert run.json("person", "show", tenant_id, "004711")["name"] == "Jörg Bäcker"


def test_cli_import_rejection_lists_lines(run: Run, tmp_path: Path) -> None:
    tenant_id = run.json("tenant", "create", "Fehler")["id"]
    path = tmp_path / "personal.csv"
    path.write_bytes(b"Personalnummer;Name\n004711;Anna\n004711;Bea\n;Carl\n")

    assert run("person", "import", tenant_id, str(path)) == 1
    assert "nothing was applied" in run.err
    assert "line 2, column Personalnummer: personnel number '004711'" in run.err
    assert "line 3, column Personalnummer" in run.err
    assert "line 4, column Personalnummer: personnel number is empty" in run.err
    assert run.out == ""
    assert run.json("person", "list", tenant_id) == []


def test_cli_errors_exit_1(run: Run, tmp_path: Path) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    assert run("tenant", "show", missing) == 1
    assert "linkdesk: error:" in run.err
    assert f"tenant {missing} not found" in run.err

    assert run("person", "show", missing, "004711") == 1
    assert "'004711' not found" in run.err

    assert run("person", "import", missing, str(tmp_path / "none.csv")) == 1
    assert "cannot read" in run.err

    tenant_id = run.json("tenant", "create", "Leer")["id"]
    assert run("tenant", "update", tenant_id) == 1
    assert "nothing to update" in run.err


def test_cli_without_token_exit_1(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LINKDESK_ADMIN_TOKEN")
    assert run("tenant", "list") == 1
    assert "LINKDESK_ADMIN_TOKEN" in run.err


def test_cli_wrong_token_exit_1(run: Run) -> None:
    assert run("tenant", "list", "--token", "wrong-token-0123456789") == 1
    assert "401" in run.err


@pytest.mark.parametrize(
    "command",
    [
        ["tenant"],
        ["tenant", "create"],
        ["tenant", "intake"],
        ["tenant", "audit"],
        ["secret", "rotate"],
        ["secret", "revoke"],
        ["person", "add"],
        ["person", "list"],
        ["person", "import"],
    ],
)
def test_cli_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main([*command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: linkdesk {' '.join(command)}")
