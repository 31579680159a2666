-- flexprice.raw_events, as created by Flexprice's current migration (SPEC §4).
CREATE TABLE IF NOT EXISTS flexprice.raw_events
(
    id String,
    tenant_id String,
    environment_id String,
    external_customer_id String,
    event_name String DEFAULT '',
    source Nullable(String),
    payload String,
    field1 Nullable(String),
    field2 Nullable(String),
    field3 Nullable(String),
    field4 Nullable(String),
    field5 Nullable(String),
    field6 Nullable(String),
    field7 Nullable(String),
    field8 Nullable(String),
    field9 Nullable(String),
    field10 Nullable(String),
    timestamp DateTime64(3),
    ingested_at DateTime64(3) DEFAULT now64(3),
    version UInt64,
    sign Int8 DEFAULT 1
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMMDD(timestamp)
PRIMARY KEY (tenant_id, environment_id, external_customer_id, timestamp)
ORDER BY (tenant_id, environment_id, external_customer_id, timestamp, id)
SETTINGS index_granularity = 16384;
