-- Ticket numbers per tenant and year, the status history, the transactional
-- outbox of emitted events, and operator actions on parked messages.

ALTER TABLE tickets ADD COLUMN number text;
ALTER TABLE tickets ADD COLUMN updated_at timestamptz;

-- One row per tenant and year; `last_value` is the last number handed out.
-- Incrementing it with INSERT ... ON CONFLICT DO UPDATE locks the row until
-- the ticket's transaction ends, so concurrent inserts never share a number.
CREATE TABLE ticket_counters (
    tenant_id uuid NOT NULL,
    year integer NOT NULL,
    last_value integer NOT NULL,
    PRIMARY KEY (tenant_id, year)
);

-- Tickets stored before this migration get numbers in the order of their id,
-- counted per tenant and year of submission (UTC).
WITH numbered AS (
    SELECT
        id,
        tenant_id,
        extract(year FROM submitted_at AT TIME ZONE 'UTC')::integer AS year,
        row_number() OVER (
            PARTITION BY tenant_id, extract(year FROM submitted_at AT TIME ZONE 'UTC')
            ORDER BY id
        ) AS counter
    FROM tickets
)
UPDATE tickets
SET number = numbered.year || '-' || lpad(numbered.counter::text, 6, '0')
FROM numbered
WHERE tickets.id = numbered.id;

INSERT INTO ticket_counters (tenant_id, year, last_value)
SELECT tenant_id, split_part(number, '-', 1)::integer, count(*)
FROM tickets
GROUP BY tenant_id, split_part(number, '-', 1);

-- The column stays nullable so that a replica of the previous release, which
-- does not set it, can still insert during a rolling upgrade.
CREATE UNIQUE INDEX tickets_tenant_number ON tickets (tenant_id, number);
CREATE INDEX tickets_tenant_status ON tickets (tenant_id, status, id DESC);

CREATE TABLE ticket_history (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket_id bigint NOT NULL REFERENCES tickets (id),
    from_status text,
    to_status text NOT NULL,
    comment text NOT NULL DEFAULT '',
    changed_by text NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX ticket_history_ticket ON ticket_history (ticket_id, id);

INSERT INTO ticket_history (ticket_id, from_status, to_status, changed_by, changed_at)
SELECT id, NULL, status, 'submission', stored_at FROM tickets ORDER BY id;

-- Events written in the same transaction as the change they report. The
-- relay publishes unsent rows in id order with `event_id` as Nats-Msg-Id and
-- sets `sent_at` after JetStream acknowledged them.
CREATE TABLE outbox (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id uuid NOT NULL UNIQUE,
    subject text NOT NULL,
    payload bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    sent_at timestamptz,
    stream_sequence bigint
);

CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;

ALTER TABLE parked_messages ADD COLUMN replayed_at timestamptz;
ALTER TABLE parked_messages ADD COLUMN replayed_by text;
ALTER TABLE parked_messages ADD COLUMN replay_sequence bigint;
