"""Setting readers name the variable and the rejected value."""

from __future__ import annotations

import pytest

from shared.settings import (
    SettingsError,
    database_url,
    env_float,
    env_trusted_proxies,
    nats_servers,
    server_address,
)


@pytest.mark.parametrize("raw", ["nan", "NaN", "inf", "-inf", "Infinity"])
def test_float_not_finite_rejected(raw: str) -> None:
    with pytest.raises(
        SettingsError, match=rf"^WAIT must be a finite number, got '{raw}'$"
    ):
        env_float("WAIT", 1.0, environ={"WAIT": raw})


def test_float_bounds_named() -> None:
    with pytest.raises(SettingsError, match=r"^WAIT must be at least 0.5, got 0.1$"):
        env_float("WAIT", 1.0, minimum=0.5, environ={"WAIT": "0.1"})
    with pytest.raises(
        SettingsError, match=r"^WAIT must be at most 10.0, got 10000000000.0$"
    ):
        env_float("WAIT", 1.0, maximum=10.0, environ={"WAIT": "1e10"})


def test_float_text_rejected() -> None:
    with pytest.raises(SettingsError, match=r"^WAIT must be a number, got 'soon'$"):
        env_float("WAIT", 1.0, environ={"WAIT": "soon"})


def test_float_default_and_value() -> None:
    assert env_float("WAIT", 1.5, environ={}) == 1.5
    assert env_float("WAIT", 1.5, environ={"WAIT": " 2.25 "}) == 2.25


@pytest.mark.parametrize(
    "raw", ["127.0.0.1,::1", "172.30.99.1", "10.0.0.0/8, 192.0.2.7", "*"]
)
def test_trusted_proxies_accepted(raw: str) -> None:
    assert env_trusted_proxies("PROXIES", "127.0.0.1", {"PROXIES": raw}) == raw


def test_trusted_proxies_default() -> None:
    assert env_trusted_proxies("PROXIES", "127.0.0.1", {}) == "127.0.0.1"


@pytest.mark.parametrize("entry", ["foo", "172.17.0.1/33", "10.0.0.1 ;"])
def test_trusted_proxies_typo_named(entry: str) -> None:
    with pytest.raises(SettingsError, match=r"^PROXIES must list IP addresses"):
        env_trusted_proxies("PROXIES", "127.0.0.1", {"PROXIES": f"127.0.0.1,{entry}"})


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("nats://linkdesk:TopSecret@nats.internal:4222", "nats.internal:4222"),
        ("postgresql://app:pw@127.0.0.1:5432/linkdesk", "127.0.0.1:5432"),
        ("postgresql://app@[::1]:5432/linkdesk", "[::1]:5432"),
        ("nats://nats.internal", "nats.internal"),
        ("nats://user:pw@:4222", "no host"),
        ("nats://host:notaport", "an invalid URL"),
    ],
)
def test_server_address_keeps_no_password(url: str, shown: str) -> None:
    assert server_address(url) == shown


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:Ab3d/Secret@db:5432/linkdesk",
        "postgresql://app:Ab3d#Secret@db:5432/linkdesk",
        "127.0.0.1:5432",
    ],
)
def test_database_url_error_hides_the_value(url: str) -> None:
    with pytest.raises(SettingsError) as raised:
        database_url({"DATABASE_URL": url})
    assert str(raised.value).startswith("DATABASE_URL is not a valid URL")
    assert "Secret" not in str(raised.value)
    assert "5432" not in str(raised.value)


def test_nats_url_error_hides_the_value() -> None:
    servers = "nats://127.0.0.1:4222,nats://u:pa/Secret@127.0.0.1:4223"
    with pytest.raises(SettingsError, match=r"^NATS_URL is not a valid URL") as raised:
        nats_servers({"NATS_URL": servers})
    assert "Secret" not in str(raised.value)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql:///linkdesk",
        "postgresql://app:p%2Fw@127.0.0.1:5432/linkdesk",
        "postgresql://app@127.0.0.1:5432,127.0.0.1:5433/linkdesk",
    ],
)
def test_database_url_accepts_libpq_forms(url: str) -> None:
    assert database_url({"DATABASE_URL": url}) == url
