//! Raw payload → Flexprice event transformation.
//!
//! An exact port of Flexprice's `TransformBentoToEvent` (Go,
//! `internal/domain/events/transform/transformer.go` at
//! `e4b5303fde24581003faf0b05c08feb605c2ef93`) together with the Go standard
//! library behaviour it depends on (`encoding/json`, `strconv`, `fmt`, `time`,
//! `strings`), plus one deliberate fix (see [`transform`]). Pure: no I/O.
//!
//! Submodules: [`go_json`] (decoder/encoder), [`go_strconv`] (number parsing
//! and formatting), [`go_time`] (RFC 3339), [`go_strings`] (ToLower,
//! TrimSpace, key folding) and `mapping` (the rules themselves).

pub mod go_json;
pub mod go_strconv;
pub mod go_strings;
mod go_tables;
pub mod go_time;
mod mapping;

use std::fmt;

/// Transforms one raw payload (bytes, may be invalid UTF-8) for `tenant_id`
/// and `environment_id`, in the reference's order:
///
/// 1. decode like `json.Unmarshal` into `BentoInput` → [`ErrorStage::Decode`] on
///    any syntax error, type mismatch (`"id": 5`), number beyond float64
///    (`1e309`), nesting deeper than 10000, BOM or empty input. A JSON `null`
///    or `{}` decodes to empty fields (and is then dropped);
/// 2. validate → [`Outcome::Dropped`] with the first failing [`DropReason`];
/// 3. build the properties (all string values, `%v` for top-level numbers,
///    `json.Marshal` for nested values, the `{"value": …}` unwrapping,
///    resolved names, `billablePromptTokens`, `billable_value`/`billable_unit`);
/// 4. parse `createdAt` like `time.Parse(time.RFC3339, …)` →
///    [`ErrorStage::Timestamp`];
/// 5. encode like `json.Marshal(events.Event)` → [`ErrorStage::Encode`] when
///    the offset hour is ≥ 24 (`+24:00`, `+23:60`).
///
/// Product fix (SPEC §7): when `promptTokens`/`cachedPromptTokens` is not an
/// integer literal but its exact decimal value is an integer within `i64`
/// (`1.5e+06`), `billablePromptTokens` uses that value; the reference used 0.
pub fn transform(payload: &[u8], tenant_id: &str, environment_id: &str) -> Outcome {
    mapping::transform(payload, tenant_id, environment_id)
}

/// Result of [`transform`].
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Publish this event.
    Event(Event),
    /// The payload failed validation (the reference returned `nil, nil`).
    Dropped(DropReason),
    /// The reference returned an error, or Go's encoder refused the event.
    Error(TransformError),
}

/// A transformed event, ready for Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `id` of the payload.
    pub id: String,
    /// `orgId` of the payload (`external_customer_id`); never empty.
    pub external_customer_id: String,
    /// `event_name` as written in the JSON.
    pub event_name: String,
    /// `timestamp` as written in the JSON (RFC 3339, e.g. `2026-03-21T00:00:37.092Z`).
    pub timestamp: String,
    /// The exact bytes of the event JSON, as Go's `json.Marshal(events.Event)`
    /// writes them (struct field order, sorted string-valued properties, Go
    /// escaping), with the `billablePromptTokens` fix.
    pub json: String,
}

impl Event {
    /// Kafka message key: `tenant_id:external_customer_id`.
    pub fn key(&self, tenant_id: &str) -> String {
        let mut k = String::with_capacity(tenant_id.len() + 1 + self.external_customer_id.len());
        k.push_str(tenant_id);
        k.push(':');
        k.push_str(&self.external_customer_id);
        k
    }

    /// The `partition_key` header as Flexprice builds it: `tenant:customer`,
    /// or `tenant` alone when the customer is empty.
    pub fn partition_key(&self, tenant_id: &str) -> String {
        if self.external_customer_id.is_empty() {
            tenant_id.to_string()
        } else {
            self.key(tenant_id)
        }
    }

    /// Kafka headers, in this order: `tenant_id`, `environment_id`,
    /// `partition_key`, `_watermill_message_uuid` (= the event id).
    pub fn headers(&self, tenant_id: &str, environment_id: &str) -> [(&'static str, String); 4] {
        [
            ("tenant_id", tenant_id.to_string()),
            ("environment_id", environment_id.to_string()),
            ("partition_key", self.partition_key(tenant_id)),
            ("_watermill_message_uuid", self.id.clone()),
        ]
    }
}

/// Why a payload was dropped: the first failing rule, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// `orgId` empty or absent.
    MissingOrgId,
    /// `methodName` empty or absent.
    MissingMethodName,
    /// Both `providerName` and `serviceName` empty or absent.
    MissingProviderName,
    /// `id` empty or absent.
    MissingId,
    /// `createdAt` empty or absent (checked before parsing it).
    MissingCreatedAt,
}

impl DropReason {
    /// `missing_org_id`, `missing_method_name`, `missing_provider_name`,
    /// `missing_id` or `missing_created_at`.
    pub fn code(&self) -> &'static str {
        match self {
            DropReason::MissingOrgId => "missing_org_id",
            DropReason::MissingMethodName => "missing_method_name",
            DropReason::MissingProviderName => "missing_provider_name",
            DropReason::MissingId => "missing_id",
            DropReason::MissingCreatedAt => "missing_created_at",
        }
    }
}

/// A transformation failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformError {
    /// Which step failed.
    pub stage: ErrorStage,
    /// Human-readable detail (Go-like wording, informational only).
    pub message: String,
}

impl fmt::Display for TransformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.stage.code(), self.message)
    }
}

impl std::error::Error for TransformError {}

/// The step of a [`TransformError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorStage {
    /// The payload is not the expected JSON ("Failed to parse Bento payload").
    Decode,
    /// `createdAt` does not parse ("Failed to parse createdAt timestamp").
    Timestamp,
    /// Go's encoder refuses the event (offset hour ≥ 24); the reference's
    /// `marshal_error`.
    Encode,
}

impl ErrorStage {
    /// `decode`, `timestamp` or `encode`.
    pub fn code(&self) -> &'static str {
        match self {
            ErrorStage::Decode => "decode",
            ErrorStage::Timestamp => "timestamp",
            ErrorStage::Encode => "encode",
        }
    }
}
