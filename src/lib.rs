//! raw-events-reprocessor: replays usage events from ClickHouse into Kafka, on command.
//!
//! Data flows one way: command → job → source → transform → sink/checkpoint (see `README.md`).

pub mod cli;
pub mod config;
pub mod source;
pub mod transform;
