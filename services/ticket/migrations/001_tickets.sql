CREATE TABLE tickets (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- One row per rendered form: a redelivered or re-posted submission
    -- hits this key and is stored once.
    submission_id uuid NOT NULL UNIQUE,
    reference text NOT NULL,
    tenant_id uuid NOT NULL,
    personnel_number text NOT NULL,
    reporter_name text NOT NULL,
    category text NOT NULL,
    subject text NOT NULL,
    description text NOT NULL,
    location text NOT NULL DEFAULT '',
    urgency text NOT NULL,
    language text NOT NULL,
    status text NOT NULL DEFAULT 'new',
    submitted_at timestamptz NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now(),
    stream_sequence bigint NOT NULL
);

CREATE INDEX tickets_tenant ON tickets (tenant_id, id DESC);
CREATE INDEX tickets_reference ON tickets (reference);

-- Messages that could not be stored after repeated deliveries. They are kept
-- byte for byte so that an operator can inspect and replay them.
CREATE TABLE parked_messages (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_sequence bigint NOT NULL UNIQUE,
    subject text NOT NULL,
    headers jsonb NOT NULL DEFAULT '{}',
    data bytea NOT NULL,
    error text NOT NULL,
    deliveries integer NOT NULL,
    parked_at timestamptz NOT NULL DEFAULT now()
);
