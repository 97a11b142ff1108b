"""Print the test vectors of docs/signed-links.md.

Run from the repository root: `python examples/signed_link_vectors.py`. The
output replaces the block between the `vectors` markers in that page;
tests/unit/test_signed_link.py fails when the two differ.
"""

from __future__ import annotations

from shared import signed_link

KEY_ID = "3f9a1c2b7d4e5f60"
KEY = "Zl6tq2Vb0m4Yd8rXc1WnP5sH3gJk7uAe9oQiTfLyBvM"
TENANT_ID = "9b2f6c1e-3d4a-4f5b-8c7d-0e1f2a3b4c5d"
EXPIRES_AT = 1767225600
"""2026-01-01T00:00:00Z."""

VECTORS = (
    ("number only", signed_link.Claims(TENANT_ID, "004711", EXPIRES_AT)),
    (
        "preset location and category",
        signed_link.Claims(TENANT_ID, "004711", EXPIRES_AT, "Haus B, Raum 204", "IT"),
    ),
    (
        "slash and non-ASCII text",
        signed_link.Claims(TENANT_ID, "00/47", EXPIRES_AT, "Zürich", "Gebäude"),
    ),
)


def render() -> str:
    """Return the vectors as the Markdown that the page contains."""
    lines = [
        f"Key id: `{KEY_ID}`",
        "",
        f"Key: `{KEY}`",
        "",
    ]
    for title, claims in VECTORS:
        payload = "\n".join(
            [
                claims.tenant_id,
                claims.personnel_number,
                str(claims.expires_at),
                claims.location,
                claims.category,
            ]
        )
        token = signed_link.sign(KEY_ID, KEY, claims)
        signing_input, _, mac = token.rpartition(".")
        lines += [
            f"#### {title}",
            "",
            "Payload text, lines joined by `\\n` (shown as `⏎`):",
            "",
            "```",
            payload.replace("\n", "⏎"),
            "```",
            "",
            "Signing input:",
            "",
            "```",
            signing_input,
            "```",
            "",
            f"Signature: `{mac}`",
            "",
            "Query:",
            "",
            "```",
            f"{signed_link.QUERY_PREFIX}{token}",
            "```",
            "",
        ]
    return "\n".join(lines).rstrip("\n") + "\n"


if __name__ == "__main__":
    print(render(), end="")
