//! Avro single-object encoding of the state topic's values (SPEC §5): `C3 01`, the CRC-64-AVRO (Rabin)
//! fingerprint of the writer's schema (8 bytes, little-endian), then the binary datum. The fingerprint tells
//! which schema wrote a value, so older checkpoints stay readable when the schema evolves: each known schema is
//! listed in [`decode_state`] with the conversion of its records into the current types.
//!
//! Writing and reading go through apache-avro's `GenericSingleObjectWriter` / `GenericSingleObjectReader`.

use std::sync::{LazyLock, Mutex};

use apache_avro::rabin::Rabin;
use apache_avro::{GenericSingleObjectReader, GenericSingleObjectWriter, Schema};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Checkpoint, ControlRequest};

/// A decoded state-topic value.
#[derive(Debug, Clone, PartialEq)]
pub enum StateRecord {
    Checkpoint(Box<Checkpoint>),
    Control(ControlRequest),
}

/// Why a state-topic value could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StateDecodeError {
    #[error("not Avro single-object encoding (missing C3 01 marker)")]
    NotSingleObject,
    #[error("written with an unknown schema (fingerprint {0:016x}); upgrade the reprocessor")]
    UnknownSchema(u64),
    #[error("Avro decoding failed: {0}")]
    Avro(String),
}

/// One schema of the state topic, with its writer and reader.
struct KnownSchema {
    schema: Schema,
    fingerprint: [u8; 8],
    writer: Mutex<GenericSingleObjectWriter>,
    reader: GenericSingleObjectReader,
}

impl KnownSchema {
    fn parse(text: &str) -> KnownSchema {
        let schema = Schema::parse_str(text).expect("schemas/avro/*.avsc are valid Avro schemas");
        let fp = schema.fingerprint::<Rabin>();
        let mut fingerprint = [0u8; 8];
        fingerprint.copy_from_slice(&fp.bytes[..8]);
        let writer = GenericSingleObjectWriter::new_with_capacity(&schema, 1024)
            .expect("a parsed schema resolves");
        let reader = GenericSingleObjectReader::builder()
            .schema(schema.clone())
            .build()
            .expect("a parsed schema resolves");
        KnownSchema {
            schema,
            fingerprint,
            writer: Mutex::new(writer),
            reader,
        }
    }

    fn encode<T: Serialize>(&self, value: &T) -> Vec<u8> {
        let avro = apache_avro::to_value(value)
            .and_then(|v| v.resolve(&self.schema))
            .expect("records match their schema (checked by tests)");
        let mut out = Vec::with_capacity(256);
        self.writer
            .lock()
            .expect("Avro writer lock")
            .write_value(avro, &mut out)
            .expect("resolved values encode (checked by tests)");
        out
    }

    /// Decodes a value written with this schema; `current` resolves it to the current schema first (Avro
    /// schema resolution: new fields take their defaults, `string` is promoted to `bytes`).
    fn decode<T: DeserializeOwned>(
        &self,
        bytes: &[u8],
        current: Option<&KnownSchema>,
    ) -> Result<T, StateDecodeError> {
        let avro = |e: apache_avro::Error| StateDecodeError::Avro(e.to_string());
        let mut value = self.reader.read_value(&mut &bytes[..]).map_err(avro)?;
        if let Some(current) = current {
            value = value.resolve(&current.schema).map_err(avro)?;
        }
        apache_avro::from_value(&value).map_err(avro)
    }
}

/// The current checkpoint schema (`schemas/avro/checkpoint.avsc`, version 2, embedded at build time).
static CHECKPOINT: LazyLock<KnownSchema> =
    LazyLock::new(|| KnownSchema::parse(include_str!("../../schemas/avro/checkpoint.avsc")));
/// Checkpoint schema version 1 (`schemas/avro/checkpoint.v1.avsc`): read, resolved to the current one.
static CHECKPOINT_V1: LazyLock<KnownSchema> =
    LazyLock::new(|| KnownSchema::parse(include_str!("../../schemas/avro/checkpoint.v1.avsc")));
/// Control request schema v1 (`schemas/avro/control_request.avsc`).
static CONTROL_V1: LazyLock<KnownSchema> =
    LazyLock::new(|| KnownSchema::parse(include_str!("../../schemas/avro/control_request.avsc")));

impl Checkpoint {
    /// Avro single-object encoding with the current checkpoint schema.
    pub fn encode(&self) -> Vec<u8> {
        CHECKPOINT.encode(self)
    }
}

impl ControlRequest {
    /// Avro single-object encoding with the current control request schema.
    pub fn encode(&self) -> Vec<u8> {
        CONTROL_V1.encode(self)
    }
}

/// Decodes a state-topic value by its schema fingerprint.
pub fn decode_state(bytes: &[u8]) -> Result<StateRecord, StateDecodeError> {
    if bytes.len() < 10 || bytes[0] != 0xC3 || bytes[1] != 0x01 {
        return Err(StateDecodeError::NotSingleObject);
    }
    let fp: [u8; 8] = bytes[2..10].try_into().expect("8 bytes");
    if fp == CHECKPOINT.fingerprint {
        Ok(StateRecord::Checkpoint(Box::new(
            CHECKPOINT.decode(bytes, None)?,
        )))
    } else if fp == CHECKPOINT_V1.fingerprint {
        let cp = CHECKPOINT_V1.decode(bytes, Some(&CHECKPOINT))?;
        Ok(StateRecord::Checkpoint(Box::new(cp)))
    } else if fp == CONTROL_V1.fingerprint {
        Ok(StateRecord::Control(CONTROL_V1.decode(bytes, None)?))
    } else {
        Err(StateDecodeError::UnknownSchema(u64::from_le_bytes(fp)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::ControlAction;
    use crate::job::JobStatus;
    use crate::job::tests::checkpoint;

    #[test]
    fn checkpoint_round_trips_through_single_object_encoding() {
        let cp = checkpoint();
        let bytes = cp.encode();
        assert_eq!(&bytes[..2], &[0xC3, 0x01]);
        assert_eq!(&bytes[2..10], &CHECKPOINT.fingerprint);
        assert_eq!(
            decode_state(&bytes).unwrap(),
            StateRecord::Checkpoint(Box::new(cp.clone()))
        );
        let mut other = cp;
        other.cursor = None;
        other.status = JobStatus::Cancelled;
        other.spec.max_events_per_second = None;
        assert_eq!(
            decode_state(&other.encode()).unwrap(),
            StateRecord::Checkpoint(Box::new(other))
        );
    }

    #[test]
    fn control_request_round_trips_and_differs_from_checkpoint() {
        let r = ControlRequest {
            request_id: "c-0-1".into(),
            job_id: "j".into(),
            action: ControlAction::Resume,
            at_ms: 9,
        };
        assert_eq!(decode_state(&r.encode()).unwrap(), StateRecord::Control(r));
        assert_ne!(CONTROL_V1.fingerprint, CHECKPOINT.fingerprint);
    }

    #[test]
    fn version_1_checkpoints_are_read_and_cursor_bytes_survive() {
        // A checkpoint as version 1 wrote it (string cursor columns).
        let cp = checkpoint();
        let v1 = apache_avro::to_value(&cp).unwrap();
        let v1 = match v1 {
            apache_avro::types::Value::Record(fields) => apache_avro::types::Value::Record(
                fields
                    .into_iter()
                    .map(|(k, v)| (k, stringify_bytes(v)))
                    .collect(),
            ),
            other => other,
        };
        let v1 = v1.resolve(&CHECKPOINT_V1.schema).unwrap();
        let mut bytes = Vec::new();
        CHECKPOINT_V1
            .writer
            .lock()
            .unwrap()
            .write_value(v1, &mut bytes)
            .unwrap();
        assert_eq!(&bytes[2..10], &CHECKPOINT_V1.fingerprint);
        // What version 1 did not hold takes the current schema's defaults.
        let as_v1 = crate::job::Checkpoint {
            instance: None,
            ..cp.clone()
        };
        assert_eq!(
            decode_state(&bytes).unwrap(),
            StateRecord::Checkpoint(Box::new(as_v1))
        );
        // Version 2 keeps bytes that are not UTF-8.
        let mut odd = cp;
        odd.cursor.as_mut().unwrap().id = vec![0xff, 0x00, b'a'];
        assert_eq!(
            decode_state(&odd.encode()).unwrap(),
            StateRecord::Checkpoint(Box::new(odd))
        );
    }

    /// Bytes values (nested anywhere) as strings, the way version 1 held the cursor's columns.
    fn stringify_bytes(v: apache_avro::types::Value) -> apache_avro::types::Value {
        use apache_avro::types::Value as V;
        match v {
            V::Bytes(b) => V::String(String::from_utf8(b).unwrap()),
            V::Record(f) => V::Record(
                f.into_iter()
                    .map(|(k, v)| (k, stringify_bytes(v)))
                    .collect(),
            ),
            V::Union(i, b) => V::Union(i, Box::new(stringify_bytes(*b))),
            other => other,
        }
    }

    #[test]
    fn unknown_fingerprint_and_garbage_are_errors() {
        let mut bytes = checkpoint().encode();
        bytes[3] ^= 0xff;
        assert!(matches!(
            decode_state(&bytes),
            Err(StateDecodeError::UnknownSchema(_))
        ));
        assert!(matches!(
            decode_state(b"{\"json\":1}"),
            Err(StateDecodeError::NotSingleObject)
        ));
        let good = checkpoint().encode();
        let cut = decode_state(&good[..20]);
        assert!(matches!(cut, Err(StateDecodeError::Avro(_))), "{cut:?}");
    }
}
