-- Origins that may show the tenant's form in a frame (CSP frame-ancestors),
-- and whether only signed links open it.
ALTER TABLE tenants
    ADD COLUMN frame_ancestors text[] NOT NULL DEFAULT '{}',
    ADD COLUMN signed_links_required boolean NOT NULL DEFAULT false;

-- Keys with which a tenant's intranet signs links. HMAC needs the key itself
-- to check a signature, so it is stored as issued, not hashed: whoever can
-- read this table can sign links for the tenant. `id` is the key id that
-- every signed link names.
CREATE TABLE signing_keys (
    id text PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    key text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    revoked_at timestamptz,
    last_used_at timestamptz
);

CREATE INDEX signing_keys_tenant ON signing_keys (tenant_id);
