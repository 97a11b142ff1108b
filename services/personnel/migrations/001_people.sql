-- The personnel number is text: 004711 and 4711 are two different people.
CREATE TABLE people (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL,
    personnel_number text NOT NULL CHECK (length(personnel_number) BETWEEN 1 AND 64),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, personnel_number)
);
