-- Who changed what of a tenant, written in the same transaction as the
-- change. `details` never contains a link secret, only secret ids.
CREATE TABLE audit_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    admin_name text NOT NULL,
    action text NOT NULL,
    details jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id);
