CREATE TABLE tenants (
    id uuid PRIMARY KEY,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    language text NOT NULL DEFAULT 'de' CHECK (language IN ('de', 'en', 'fr', 'it')),
    categories text[] NOT NULL DEFAULT ARRAY['IT', 'Gebäude', 'Sonstiges'],
    intake_enabled boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Only the SHA-256 of a secret is stored. A secret has at least 128 bits of
-- entropy, so a fast hash is enough and a lookup is one index probe.
CREATE TABLE link_secrets (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    secret_hash bytea NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    revoked_at timestamptz,
    last_used_at timestamptz
);

CREATE INDEX link_secrets_tenant ON link_secrets (tenant_id);
