//! raw-events-reprocessor: replays usage events from ClickHouse into Kafka, on command.
//!
//! Data flows one way: command → job → source → transform → sink/checkpoint (see `README.md`).

pub mod api;
pub mod batch;
pub mod cli;
pub mod command;
pub mod config;
pub mod control_client;
pub mod daemon;
pub mod job;
pub mod kafka;
pub mod metrics;
pub mod runner;
pub mod sink;
pub mod source;
pub mod state;
pub mod transform;
