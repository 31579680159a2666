-- flexprice.events, the table Flexprice's consumer fills from prod_events_v4; read by `pending` mode (SPEC §4).
CREATE TABLE IF NOT EXISTS flexprice.events
(
    id String,
    tenant_id String,
    external_customer_id String,
    environment_id String,
    event_name String,
    customer_id Nullable(String),
    source Nullable(String),
    timestamp DateTime64(3),
    ingested_at DateTime64(3),
    properties String
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMMDD(timestamp)
PRIMARY KEY (tenant_id, environment_id)
ORDER BY (tenant_id, environment_id, timestamp, id);
