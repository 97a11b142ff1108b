"""Signed-link tokens: the documented vectors, the examples and the parser."""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from linkdesk.links import LINK_PATH
from services.gateway import link
from shared import signed_link

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "signed-links.md"
VECTOR_BLOCK = re.compile(
    r"<!-- vectors:start -->\n(.*)<!-- vectors:end -->", re.DOTALL
)


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / name)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


vectors = load_example("signed_link_vectors.py")


def documented_queries() -> list[str]:
    match = VECTOR_BLOCK.search(DOC.read_text(encoding="utf-8"))
    assert match, "docs/signed-links.md has no vectors block"
    return re.findall(r"^(sig=v1\.\S+)$", match.group(1), re.MULTILINE)


def test_doc_vectors_match_generator() -> None:
    match = VECTOR_BLOCK.search(DOC.read_text(encoding="utf-8"))
    assert match, "docs/signed-links.md has no vectors block"
    assert match.group(1) == vectors.render(), (
        "regenerate with `python examples/signed_link_vectors.py`"
    )


def test_doc_vectors_recomputed_with_hmac_alone() -> None:
    queries = documented_queries()
    assert len(queries) == len(vectors.VECTORS)
    for query, (_, claims) in zip(queries, vectors.VECTORS, strict=True):
        token = query.removeprefix("sig=")
        signing_input, _, mac = token.rpartition(".")
        version, key_id, payload = signing_input.split(".")
        assert version == "v1"
        assert key_id == vectors.KEY_ID
        text = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        expected_text = "\n".join(
            [
                claims.tenant_id,
                claims.personnel_number,
                str(claims.expires_at),
                claims.location,
                claims.category,
            ]
        ).encode("utf-8")
        assert text == expected_text
        expected_mac = hmac.new(
            vectors.KEY.encode("ascii"), signing_input.encode("ascii"), hashlib.sha256
        ).digest()
        assert base64.urlsafe_b64encode(expected_mac).rstrip(b"=").decode() == mac
        assert "=" not in payload


def test_python_example_matches_vectors() -> None:
    example = load_example("sign_link.py")
    for query, (_, claims) in zip(documented_queries(), vectors.VECTORS, strict=True):
        url = example.sign_link(
            "https://help.example.org",
            vectors.KEY_ID,
            vectors.KEY,
            claims.tenant_id,
            claims.personnel_number,
            claims.expires_at,
            claims.location,
            claims.category,
        )
        assert url == f"https://help.example.org{LINK_PATH}?{query}"


def test_node_example_matches_vectors() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed, so examples/sign_link.js cannot run")
    for query, (_, claims) in zip(documented_queries(), vectors.VECTORS, strict=True):
        presets = [claims.location, claims.category] if claims.location else []
        result = subprocess.run(
            [
                node,
                str(ROOT / "examples" / "sign_link.js"),
                "https://help.example.org",
                vectors.KEY_ID,
                claims.tenant_id,
                claims.personnel_number,
                *presets,
            ],
            env={
                **os.environ,
                "SIGNING_KEY": vectors.KEY,
                "LINK_EXPIRES_AT": str(claims.expires_at),
            },
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        expected = f"https://help.example.org{LINK_PATH}?{query}"
        assert result.stdout.strip() == expected


def test_python_example_runs_as_script() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "sign_link.py"),
            "https://help.example.org",
            vectors.KEY_ID,
            vectors.TENANT_ID,
            "004711",
        ],
        env={
            **os.environ,
            "SIGNING_KEY": vectors.KEY,
            "LINK_EXPIRES_AT": str(vectors.EXPIRES_AT),
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(documented_queries()[0])


def test_token_round_trips() -> None:
    claims = signed_link.Claims("tenant", "00/47", 1_900_000_000, "Zürich", "IT")
    token = signed_link.sign("kid", "key", claims)
    parsed = link.parse(f"sig={token}".encode())
    assert isinstance(parsed, link.SignedLink)
    assert parsed.token.key_id == "kid"
    assert signed_link.signature_matches("key", parsed.token)
    assert not signed_link.signature_matches("other key", parsed.token)
    assert signed_link.decode_payload(parsed.token.payload) == claims


def test_altered_payload_fails_signature() -> None:
    claims = signed_link.Claims("tenant", "004711", 1_900_000_000)
    token = signed_link.sign("kid", "key", claims)
    other = signed_link.encode_payload(
        signed_link.Claims("tenant", "004712", 1_900_000_000)
    )
    version, key_id, _, mac = token.split(".")
    altered = signed_link.split(f"{version}.{key_id}.{other}.{mac}")
    assert altered is not None
    assert not signed_link.signature_matches("key", altered)


@pytest.mark.parametrize(
    "query",
    [
        b"sig=",
        b"sig=v1",
        b"sig=v2.kid.cGF5bG9hZA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        b"sig=v1.kid.cGF5bG9hZA.short",
        b"sig=v1.k+d.cGF5bG9hZA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        b"sig=v1.kid.cGF5bG9hZA=.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        b"sig=v1.kid.cGF5bG9hZA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.x",
        b"sig=v1.kid.\xc3\xa4.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        b"sig=v1.kid." + b"A" * 3000 + b".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ],
)
def test_malformed_signed_query_rejected(query: bytes) -> None:
    parsed = link.parse(query)
    assert isinstance(parsed, link.MalformedLink)
    assert parsed.reason in ("malformed_signed_link", "query_too_long")


@pytest.mark.parametrize(
    "claims",
    [
        signed_link.Claims("tenant", "", 1_900_000_000),
        signed_link.Claims("tenant", " 004711", 1_900_000_000),
        signed_link.Claims("tenant", "0047\n11", 1_900_000_000),
        signed_link.Claims("tenant", "004711", 0),
        signed_link.Claims("tenant", "004711", -5),
        signed_link.Claims("tenant", "004711", 1_900_000_000, "x" * 201),
        signed_link.Claims("tenant", "004711", 1_900_000_000, "", "\t"),
    ],
)
def test_invalid_claims_not_signed(claims: signed_link.Claims) -> None:
    with pytest.raises(signed_link.InvalidClaims):
        signed_link.sign("kid", "key", claims)


@pytest.mark.parametrize(
    "text",
    [
        b"tenant\n004711\n1900000000\n",
        b"tenant\n004711\n1900000000\n\n\n",
        b"tenant\n004711\n01900000000\n\n",
        b"tenant\n004711\nsoon\n\n",
        b"tenant\n\xff\n1900000000\n\n",
    ],
)
def test_invalid_payload_rejected(text: bytes) -> None:
    payload = base64.urlsafe_b64encode(text).rstrip(b"=").decode()
    with pytest.raises(signed_link.InvalidClaims):
        signed_link.decode_payload(payload)
