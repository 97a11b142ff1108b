"""Build a signed linkdesk link with the standard library (docs/signed-links.md).

Usage: SIGNING_KEY=<key> python sign_link.py BASE_URL KEY_ID TENANT_ID NUMBER
[LOCATION [CATEGORY]]. The link expires in 5 minutes, or at the Unix time in
LINK_EXPIRES_AT when that is set.
"""

import base64
import hashlib
import hmac
import os
import sys
import time

LINK_PATH = "/public/TicketAllgmein/Ticket.aspx"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign_link(
    base_url, key_id, key, tenant_id, number, expires, location="", category=""
):
    payload = "\n".join([tenant_id, number, str(expires), location, category])
    signing_input = f"v1.{key_id}.{b64(payload.encode('utf-8'))}"
    mac = hmac.new(key.encode("ascii"), signing_input.encode("ascii"), hashlib.sha256)
    return f"{base_url}{LINK_PATH}?sig={signing_input}.{b64(mac.digest())}"


if __name__ == "__main__":
    base_url, key_id, tenant_id, number, *presets = sys.argv[1:]
    expires = int(os.environ.get("LINK_EXPIRES_AT") or time.time() + 300)
    key = os.environ["SIGNING_KEY"]
    print(sign_link(base_url, key_id, key, tenant_id, number, expires, *presets))
