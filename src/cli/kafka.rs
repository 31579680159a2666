//! The CLI's Kafka clients: the command producer, `read_committed` readers of whole topics and the results of
//! one job (from [`crate::control_client`], shared with the HTTP API), and the state topic's job table. Every
//! client is configured by [`crate::kafka::client_config`] (so `-b`, `-X` and `kafka.properties` reach each
//! one).

pub use crate::control_client::{Reader, Sent, produce_command, result_of, wait_for_result};

use crate::config::Config;
use crate::state::StateStore;

/// The job table of the state topic, read to its end.
pub async fn load_state(cfg: &Config) -> anyhow::Result<StateStore> {
    let (store, _events) = StateStore::start(cfg).await?;
    store.sync(cfg.kafka.operation_timeout() * 2).await?;
    Ok(store)
}
