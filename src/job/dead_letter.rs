//! Dead letters (SPEC §8): every row selected for publishing that is not published gets one record on the
//! dead-letter topic, with the stage that stopped it, a reason code, a message for a person and the whole raw
//! row (schema `schemas/avro/dead_letter.avsc`). [`Disposition::of`] says what a transformation outcome means
//! for a row; the daemon and the tests both use it.

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::command::format_ms;
use crate::source::{RawRow, text};
use crate::transform::{DropReason, ErrorStage, Outcome, TransformError};

/// Stage of a dead letter (SPEC §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeadLetterStage {
    /// The payload failed validation (counted in `total_events_dropped`).
    Validation,
    /// The payload could not be transformed (`total_transformation_errors`).
    Transformation,
    /// The event could not be published (`total_events_failed`).
    Publish,
}

impl DeadLetterStage {
    /// Every stage (for metrics initialised to 0).
    pub const ALL: [DeadLetterStage; 3] = [
        DeadLetterStage::Validation,
        DeadLetterStage::Transformation,
        DeadLetterStage::Publish,
    ];

    /// Lowercase name, as in the record and its `stage` header.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterStage::Validation => "validation",
            DeadLetterStage::Transformation => "transformation",
            DeadLetterStage::Publish => "publish",
        }
    }
}

/// What one row's transformation outcome means (SPEC §7, §8): publish the event, or dead-letter the row with a
/// stage and reason. Reasons of the publish stage found later (`too_large`, the broker's refusal) are not
/// outcomes of the transformation and are not decided here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Disposition {
    Publish,
    DeadLetter {
        stage: DeadLetterStage,
        reason: &'static str,
    },
}

impl Disposition {
    /// `Event` → publish; `Dropped` → validation / the drop reason; `Error` → transformation / `decode` or
    /// `timestamp`, except Go's encoder refusal, which the reference counts as a failed publish:
    /// publish / `encode`.
    pub fn of(outcome: &Outcome) -> Disposition {
        match outcome {
            Outcome::Event(_) => Disposition::Publish,
            Outcome::Dropped(reason) => Disposition::DeadLetter {
                stage: DeadLetterStage::Validation,
                reason: reason.code(),
            },
            Outcome::Error(e) if e.stage == ErrorStage::Encode => Disposition::DeadLetter {
                stage: DeadLetterStage::Publish,
                reason: e.stage.code(),
            },
            Outcome::Error(e) => Disposition::DeadLetter {
                stage: DeadLetterStage::Transformation,
                reason: e.stage.code(),
            },
        }
    }
}

/// Where a row was in its job: the job, the 0-based batch number, the 1-based position in the batch, and the
/// time (RFC 3339) the batch was built.
#[derive(Debug, Clone, Copy)]
pub struct RowPlace<'a> {
    pub job_id: &'a str,
    pub batch: i64,
    pub batch_position: i64,
    pub at: &'a str,
}

/// A selected row that was not published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub job_id: String,
    /// 0-based batch number within the job.
    pub batch: i64,
    /// 1-based position of the row in its batch.
    pub batch_position: i64,
    pub stage: DeadLetterStage,
    pub reason: String,
    pub message: String,
    pub raw_event: RawEventJson,
    pub at: String,
}

impl DeadLetter {
    fn new(
        place: &RowPlace<'_>,
        stage: DeadLetterStage,
        reason: &str,
        message: String,
        raw: RawEventJson,
    ) -> DeadLetter {
        DeadLetter {
            job_id: place.job_id.to_string(),
            batch: place.batch,
            batch_position: place.batch_position,
            stage,
            reason: reason.to_string(),
            message,
            raw_event: raw,
            at: place.at.to_string(),
        }
    }

    /// A key column of the row (`id`, `external_customer_id` or `event_name`, named by `column`) is not valid
    /// UTF-8 (SPEC §4): reason `invalid_utf8`, validation stage (the row is counted as dropped).
    pub fn invalid_utf8(place: &RowPlace<'_>, column: &str, raw: RawEventJson) -> DeadLetter {
        let message = format!("column `{column}` is not valid UTF-8");
        Self::new(
            place,
            DeadLetterStage::Validation,
            "invalid_utf8",
            message,
            raw,
        )
    }

    /// The payload failed validation: reason = the drop reason's code.
    pub fn validation(place: &RowPlace<'_>, reason: DropReason, raw: RawEventJson) -> DeadLetter {
        let message = format!("validation failed: {}", reason.code());
        Self::new(
            place,
            DeadLetterStage::Validation,
            reason.code(),
            message,
            raw,
        )
    }

    /// The payload could not be transformed: reason = `decode` or `timestamp`, message = the error's text.
    pub fn transformation(
        place: &RowPlace<'_>,
        error: &TransformError,
        raw: RawEventJson,
    ) -> DeadLetter {
        let stage = DeadLetterStage::Transformation;
        Self::new(place, stage, error.stage.code(), error.message.clone(), raw)
    }

    /// The event could not be published: reason = `encode`, `too_large` or the broker's error name as
    /// librdkafka spells it (e.g. `MSG_SIZE_TOO_LARGE`).
    pub fn publish(
        place: &RowPlace<'_>,
        reason: &str,
        message: String,
        raw: RawEventJson,
    ) -> DeadLetter {
        Self::new(place, DeadLetterStage::Publish, reason, message, raw)
    }

    /// The dead letter of a transformation outcome ([`Disposition::of`]), `None` for an event.
    pub fn of_outcome(
        place: &RowPlace<'_>,
        outcome: &Outcome,
        raw: impl FnOnce() -> RawEventJson,
    ) -> Option<DeadLetter> {
        match outcome {
            Outcome::Event(_) => None,
            Outcome::Dropped(reason) => Some(Self::validation(place, *reason, raw())),
            Outcome::Error(e) if e.stage == ErrorStage::Encode => Some(Self::publish(
                place,
                e.stage.code(),
                e.message.clone(),
                raw(),
            )),
            Outcome::Error(e) => Some(Self::transformation(place, e, raw())),
        }
    }

    /// The JSON value of the record.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a dead letter serializes")
    }
}

/// Every column of a raw row, as SPEC §8 writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawEventJson {
    pub id: String,
    pub tenant_id: String,
    pub environment_id: String,
    pub external_customer_id: String,
    pub event_name: String,
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_truncated: Option<bool>,
    pub field1: Option<String>,
    pub field2: Option<String>,
    pub field3: Option<String>,
    pub field4: Option<String>,
    pub field5: Option<String>,
    pub field6: Option<String>,
    pub field7: Option<String>,
    pub field8: Option<String>,
    pub field9: Option<String>,
    pub field10: Option<String>,
    pub timestamp: String,
    pub ingested_at: String,
    pub version: String,
    pub sign: i32,
}

impl RawEventJson {
    /// Renders a row; the payload is cut to `max_payload_bytes` (at a character boundary when it is text)
    /// with `payload_truncated: true` when longer. A payload that is not valid UTF-8 is written as
    /// `payload_base64` instead of `payload`; other columns that are not valid UTF-8 show U+FFFD where their
    /// bytes are invalid.
    pub fn of(row: &RawRow, max_payload_bytes: usize) -> RawEventJson {
        let truncated = row.payload.len() > max_payload_bytes;
        let (payload, payload_base64) = match std::str::from_utf8(&row.payload) {
            Ok(text) => {
                let mut end = text.len().min(max_payload_bytes);
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                (Some(text[..end].to_string()), None)
            }
            Err(_) => {
                let end = row.payload.len().min(max_payload_bytes);
                (
                    None,
                    Some(base64::engine::general_purpose::STANDARD.encode(&row.payload[..end])),
                )
            }
        };
        let t = |b: &[u8]| text(b).into_owned();
        let opt = |b: &Option<Vec<u8>>| b.as_deref().map(t);
        RawEventJson {
            id: t(&row.id),
            tenant_id: t(&row.tenant_id),
            environment_id: t(&row.environment_id),
            external_customer_id: t(&row.external_customer_id),
            event_name: t(&row.event_name),
            source: opt(&row.source),
            payload,
            payload_base64,
            payload_truncated: truncated.then_some(true),
            field1: opt(&row.field1),
            field2: opt(&row.field2),
            field3: opt(&row.field3),
            field4: opt(&row.field4),
            field5: opt(&row.field5),
            field6: opt(&row.field6),
            field7: opt(&row.field7),
            field8: opt(&row.field8),
            field9: opt(&row.field9),
            field10: opt(&row.field10),
            timestamp: format_ms(row.timestamp_ms),
            ingested_at: format_ms(row.ingested_at_ms),
            version: row.version.to_string(),
            sign: i32::from(row.sign),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::result::tests::assert_matches_schema;
    use crate::transform::transform;

    const SCHEMA: &str = include_str!("../../schemas/avro/dead_letter.avsc");

    fn place() -> RowPlace<'static> {
        RowPlace {
            job_id: "j",
            batch: 0,
            batch_position: 1,
            at: "1970-01-01T00:00:00.000Z",
        }
    }

    #[test]
    fn dead_letters_match_their_schema_and_keep_bad_payloads() {
        let mut row = RawRow {
            id: b"r1".to_vec(),
            payload: b"{\"a\":1}".to_vec(),
            timestamp_ms: 1_704_067_200_123,
            version: u64::MAX,
            field3: Some(b"f".to_vec()),
            field4: Some(vec![b'g', 0xc3]),
            ..Default::default()
        };
        let d = DeadLetter::validation(
            &place(),
            DropReason::MissingOrgId,
            RawEventJson::of(&row, 1000),
        );
        assert_matches_schema(&d.to_json(), SCHEMA);
        assert_eq!(
            (d.stage, d.reason.as_str()),
            (DeadLetterStage::Validation, "missing_org_id")
        );
        assert_eq!(d.raw_event.payload.as_deref(), Some("{\"a\":1}"));
        assert_eq!(d.raw_event.version, "18446744073709551615");
        assert_eq!(d.raw_event.timestamp, "2024-01-01T00:00:00.123Z");
        assert_eq!(d.raw_event.field4.as_deref(), Some("g\u{fffd}"));

        row.payload = vec![b'{', 0xff, 0xfe, b'}'];
        let d = DeadLetter::publish(
            &place(),
            "too_large",
            "m".into(),
            RawEventJson::of(&row, 1000),
        );
        assert_matches_schema(&d.to_json(), SCHEMA);
        assert_eq!(d.raw_event.payload, None);
        assert_eq!(d.raw_event.payload_base64.as_deref(), Some("e//+fQ=="));

        row.payload = "ééé".as_bytes().to_vec();
        let raw = RawEventJson::of(&row, 3);
        assert_eq!(raw.payload.as_deref(), Some("é"));
        assert_eq!(raw.payload_truncated, Some(true));
    }

    #[test]
    fn dispositions_follow_the_outcome() {
        let ok = br#"{"id":"e1","orgId":"o","methodName":"m","providerName":"p","createdAt":"2024-01-01T00:00:00Z"}"#;
        let cases: [(&[u8], Disposition); 5] = [
            (ok, Disposition::Publish),
            (
                br#"{"id":"e1","methodName":"m","providerName":"p","createdAt":"2024-01-01T00:00:00Z"}"#,
                Disposition::DeadLetter {
                    stage: DeadLetterStage::Validation,
                    reason: "missing_org_id",
                },
            ),
            (
                b"{not json",
                Disposition::DeadLetter {
                    stage: DeadLetterStage::Transformation,
                    reason: "decode",
                },
            ),
            (
                br#"{"id":"e1","orgId":"o","methodName":"m","providerName":"p","createdAt":"yesterday"}"#,
                Disposition::DeadLetter {
                    stage: DeadLetterStage::Transformation,
                    reason: "timestamp",
                },
            ),
            (
                br#"{"id":"e1","orgId":"o","methodName":"m","providerName":"p","createdAt":"2024-01-01T00:00:00+24:00"}"#,
                Disposition::DeadLetter {
                    stage: DeadLetterStage::Publish,
                    reason: "encode",
                },
            ),
        ];
        for (payload, want) in cases {
            let outcome = transform(payload, "t", "e");
            assert_eq!(
                Disposition::of(&outcome),
                want,
                "{}",
                String::from_utf8_lossy(payload)
            );
            let dl = DeadLetter::of_outcome(&place(), &outcome, || {
                RawEventJson::of(&RawRow::default(), 10)
            });
            match want {
                Disposition::Publish => assert!(dl.is_none()),
                Disposition::DeadLetter { stage, reason } => {
                    let dl = dl.unwrap();
                    assert_eq!((dl.stage, dl.reason.as_str()), (stage, reason));
                    assert!(!dl.message.is_empty());
                }
            }
        }
    }
}
