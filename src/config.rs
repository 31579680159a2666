//! Configuration: figment layers, validation and redaction.
//!
//! Layers, later wins (SPEC §10): built-in defaults < `config/default.toml` (when present in the working
//! directory) < `--config FILE`, or the file `REPROCESSOR_CONFIG` names when `--config` is not given <
//! environment (`REPROCESSOR_` prefix, `__` for nesting, e.g. `REPROCESSOR_KAFKA__BOOTSTRAP_SERVERS`) <
//! Flexprice's own `FLEXPRICE_RAW_EVENTS_REPROCESSING_ENABLED` and `FLEXPRICE_RAW_EVENTS_REPROCESSING_OUTPUT_TOPIC`.
//!
//! Which `REPROCESSOR_*` variables are configuration keys ([`env_name`]): a name with `__` (a nested key), or
//! one that is a top-level key (`REPROCESSOR_ENABLED`, `REPROCESSOR_KAFKA`, ...). An unknown key of that shape is
//! an error naming it (a typo such as `REPROCESSOR_PROCESSING__CONCURENCY` must not pass silently). Any other
//! name is not ours (Kubernetes injects `REPROCESSOR_PORT`, `REPROCESSOR_SERVICE_HOST`, ... for a Service named
//! `reprocessor`): it is ignored, and [`Origin::ignored_env_warning`] names it on one warning line.
//! librdkafka's property names are dotted, so `REPROCESSOR_KAFKA__PROPERTIES__SASL_MECHANISMS` sets
//! `kafka.properties."sasl.mechanisms"` (underscores become dots; likewise `..._PROPERTY_FILES__...`).
//!
//! Secrets may come from files (Kubernetes secrets): `kafka.property_files` maps a librdkafka property to a
//! file whose content is its value, `clickhouse.password_file` holds ClickHouse's password. Files are read at
//! load; a missing, unreadable or empty one fails the load naming the key.
//!
//! A bad configuration fails at start with the key, the value and the reason ([`ConfigError`]); secrets
//! (passwords, any librdkafka property whose name mentions a password, secret or key material, and every value
//! read from a file) never appear in printed configuration ([`Config::redacted_toml`]) or in `Debug` output.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The text printed instead of a secret.
pub const REDACTED: &str = "***";

/// The whole effective configuration of the daemon and its CLI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// When false, the daemon keeps consuming commands and rejects every new one with reason `disabled`
    /// (SPEC §3). Also set by `FLEXPRICE_RAW_EVENTS_REPROCESSING_ENABLED`.
    pub enabled: bool,
    /// The id of this daemon instance, named in every result record and checkpoint it writes (SPEC §5a);
    /// unset: `<hostname>-<pid>` ([`Config::instance`]).
    pub instance_id: Option<String>,
    pub kafka: KafkaConfig,
    pub topics: TopicsConfig,
    pub clickhouse: ClickHouseConfig,
    pub processing: ProcessingConfig,
    pub observability: ObservabilityConfig,
    /// The HTTP API (SPEC §11); off unless `api.address` is set.
    pub api: ApiConfig,
    /// Where this configuration came from (set by [`Config::load`]; not a configuration key).
    #[serde(skip)]
    origin: Origin,
}

/// Where a loaded configuration came from: the files read and the environment variables used or ignored
/// (names only: values may be secrets).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Origin {
    /// The configuration files read, in layer order, each with what named it: `""` for
    /// `config/default.toml` in the working directory, `"--config"` or `"REPROCESSOR_CONFIG"`.
    pub files: Vec<(PathBuf, &'static str)>,
    /// `REPROCESSOR_*` variables read as configuration keys, sorted.
    pub env_keys: Vec<String>,
    /// `REPROCESSOR_*` variables that name no configuration key and were ignored, sorted.
    pub ignored_env: Vec<String>,
}

impl Origin {
    /// The one warning line about ignored `REPROCESSOR_*` variables, if any were ignored.
    pub fn ignored_env_warning(&self) -> Option<String> {
        if self.ignored_env.is_empty() {
            return None;
        }
        let hints: Vec<String> = self
            .ignored_env
            .iter()
            .filter_map(|name| nesting_hint(name))
            .collect();
        let mut line = format!(
            "ignoring environment variables that name no configuration key: {} (a key is REPROCESSOR_<SECTION>__<KEY>, \
             e.g. REPROCESSOR_KAFKA__BOOTSTRAP_SERVERS)",
            self.ignored_env.join(", ")
        );
        if !hints.is_empty() {
            line.push_str(&format!("; did you mean {}?", hints.join(", ")));
        }
        Some(line)
    }

    /// Comment lines saying which files and variables made the configuration (`reprocessor config`).
    pub fn describe(&self) -> String {
        let mut out = String::new();
        if self.files.is_empty() {
            out.push_str("# read: no file (built-in defaults)\n");
        } else {
            let files: Vec<String> = self
                .files
                .iter()
                .map(|(f, by)| match *by {
                    "" => f.display().to_string(),
                    by => format!("{} ({by})", f.display()),
                })
                .collect();
            out.push_str(&format!("# read: {}\n", files.join(", ")));
        }
        if !self.env_keys.is_empty() {
            out.push_str(&format!("# environment: {}\n", self.env_keys.join(", ")));
        }
        if !self.ignored_env.is_empty() {
            out.push_str(&format!(
                "# ignored (no such configuration key): {}\n",
                self.ignored_env.join(", ")
            ));
        }
        out
    }
}

/// The file layer read from the working directory when present.
const DEFAULT_FILE: &str = "config/default.toml";

/// For `REPROCESSOR_KAFKA_BOOTSTRAP_SERVERS` (one underscore after a section name): the nested spelling.
fn nesting_hint(name: &str) -> Option<String> {
    let rest = name.strip_prefix(ENV_PREFIX)?.to_ascii_lowercase();
    top_level_keys().into_iter().find_map(|key| {
        let tail = rest.strip_prefix(&format!("{key}_"))?;
        (!tail.is_empty()).then(|| {
            format!(
                "{ENV_PREFIX}{}__{}",
                key.to_ascii_uppercase(),
                tail.to_ascii_uppercase()
            )
        })
    })
}

/// The prefix of the configuration's environment variables.
pub const ENV_PREFIX: &str = "REPROCESSOR_";

/// What one `REPROCESSOR_*` variable is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvName {
    /// `REPROCESSOR_CONFIG`: the configuration file, when `--config` is not given.
    ConfigFile,
    /// A configuration key, as a dotted path (`kafka.bootstrap_servers`); unknown keys fail the load.
    Key(String),
    /// One librdkafka property of `kafka.properties` or `kafka.property_files` (`table`): librdkafka's names
    /// are dotted lowercase words, so `REPROCESSOR_KAFKA__PROPERTIES__SASL_USERNAME` is `sasl.username`.
    KafkaProperty {
        table: &'static str,
        property: String,
    },
    /// Not a configuration key (e.g. Kubernetes' `REPROCESSOR_PORT`): ignored with a warning.
    NotOurs,
}

/// Classifies an environment variable name (SPEC §10). The rule: after the prefix, a name containing `__`
/// (nesting) or equal to a top-level key is a configuration key; anything else is not ours.
pub fn env_name(name: &str) -> Option<EnvName> {
    let rest = name.strip_prefix(ENV_PREFIX)?;
    if rest == "CONFIG" {
        return Some(EnvName::ConfigFile);
    }
    let lower = rest.to_ascii_lowercase();
    for table in ["properties", "property_files"] {
        if let Some(property) = lower.strip_prefix(&format!("kafka__{table}__"))
            && !property.is_empty()
        {
            return Some(EnvName::KafkaProperty {
                table,
                property: property.replace('_', "."),
            });
        }
    }
    if lower.contains("__") || top_level_keys().contains(&lower) {
        Some(EnvName::Key(lower.replace("__", ".")))
    } else {
        Some(EnvName::NotOurs)
    }
}

/// The top-level configuration keys (`enabled`, `instance_id`, `kafka`, ...), from the configuration's own
/// shape (JSON keeps the keys whose default is unset, where TOML leaves them out).
fn top_level_keys() -> Vec<String> {
    match serde_json::to_value(Config::default()) {
        Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// A secret value read from a file: `Debug` prints `***`, and it is never serialized.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the client that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Reads a secret file for `key`: its content without one trailing line break. Errors: missing, unreadable,
/// not UTF-8 or empty.
fn read_secret_file(key: &str, path: &Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        invalid(
            key,
            format!("{:?}", path.display().to_string()),
            &format!("cannot read the file: {e}"),
        )
    })?;
    let value = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    if value.is_empty() {
        return Err(invalid(
            key,
            format!("{:?}", path.display().to_string()),
            "the file is empty",
        ));
    }
    Ok(Secret(value.to_string()))
}

impl Config {
    /// This instance's id: `instance_id`, or `<hostname>-<pid>`.
    pub fn instance(&self) -> String {
        self.instance_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .or_else(|| std::env::var("HOSTNAME").ok())
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".into());
            format!("{host}-{}", std::process::id())
        })
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: true,
            instance_id: None,
            kafka: KafkaConfig::default(),
            topics: TopicsConfig::default(),
            clickhouse: ClickHouseConfig::default(),
            processing: ProcessingConfig::default(),
            observability: ObservabilityConfig::default(),
            api: ApiConfig::default(),
            origin: Origin::default(),
        }
    }
}

/// Kafka client settings shared by the control consumer, the state reader and the job producers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `bootstrap.servers`, comma-separated `host:port` list.
    pub bootstrap_servers: String,
    /// Consumer group of the control topic (`group.id`).
    pub consumer_group: String,
    /// Transactional ids are `<prefix>-<job_id>`: stable per job so a new owner fences a zombie (SPEC §5).
    pub transactional_id_prefix: String,
    /// `transaction.timeout.ms` of the job producers, milliseconds (SPEC §5: short, 60 s default).
    pub transaction_timeout_ms: u64,
    /// Timeout of every transactional call (init, commit, abort, send offsets), milliseconds.
    pub operation_timeout_ms: u64,
    /// `session.timeout.ms` of the control-topic consumer, milliseconds: how soon a crashed daemon's
    /// partitions move to another instance.
    pub session_timeout_ms: u64,
    /// `group.instance.id` (static membership): a restarted daemon with the same id takes its partitions
    /// back at once instead of waiting for the session to expire. Unique per instance; unset by default.
    pub group_instance_id: Option<String>,
    /// Any librdkafka property, passed through to every client (e.g. `security.protocol`, `sasl.*`, `ssl.*`).
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties whose values are the contents of files (e.g. `"sasl.password" =
    /// "/run/secrets/kafka/password"`, a mounted Kubernetes secret), read at load without one trailing line
    /// break. A property may be in `properties` or here, not both. The values are secrets: never printed.
    pub property_files: BTreeMap<String, PathBuf>,
    /// The values read from `property_files` (filled by [`Config::load`]).
    #[serde(skip)]
    file_properties: BTreeMap<String, Secret>,
}

impl KafkaConfig {
    /// Every librdkafka property of every client: `properties`, then the values read from `property_files`.
    pub fn client_properties(&self) -> impl Iterator<Item = (&str, &str)> {
        self.properties
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(
                self.file_properties
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.expose())),
            )
    }

    /// Sets a property's value as if read from a file (for tests and tools that hold a secret in memory).
    pub fn set_secret_property(&mut self, name: &str, value: &str) {
        self.file_properties
            .insert(name.to_string(), Secret(value.to_string()));
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            bootstrap_servers: "127.0.0.1:9092".into(),
            consumer_group: "raw-events-reprocessor".into(),
            transactional_id_prefix: "raw-events-reprocessor".into(),
            transaction_timeout_ms: 60_000,
            operation_timeout_ms: 30_000,
            session_timeout_ms: 10_000,
            group_instance_id: None,
            properties: BTreeMap::new(),
            property_files: BTreeMap::new(),
            file_properties: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    /// `operation_timeout_ms`: the bound of one transactional call (init, send offsets, commit, abort) or
    /// metadata request.
    pub fn operation_timeout(&self) -> Duration {
        Duration::from_millis(self.operation_timeout_ms)
    }

    /// How long a new transactional producer retries `init_transactions` while the broker is not ready
    /// (4 × the operation timeout: the transaction coordinator may be loading after a restart).
    pub fn init_timeout(&self) -> Duration {
        self.operation_timeout() * 4
    }

    /// How long start-up waits for the state topic to be read to its end (4 × the operation timeout).
    pub fn state_load_timeout(&self) -> Duration {
        self.operation_timeout() * 4
    }

    /// How long a command's decision waits for transactions open on its job's state partition (a third of
    /// the operation timeout, 10 s by default) before deciding with what is read.
    pub fn command_state_wait(&self) -> Duration {
        self.operation_timeout() / 3
    }

    /// `transaction_timeout_ms`: after this the broker aborts a transaction left open (e.g. by a crashed
    /// instance), which bounds how long an open transaction can hide the state topic's end.
    pub fn transaction_timeout(&self) -> Duration {
        Duration::from_millis(self.transaction_timeout_ms)
    }
}

/// One topic's name and the settings it is created with when `create_topics = true`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
    /// `retention.ms`; `-1` keeps records forever (the state topic is compacted and never deleted by time).
    pub retention_ms: i64,
    /// `max.message.bytes` of the topic; rows whose record would exceed it are dead-lettered (SPEC §5).
    pub max_message_bytes: i64,
}

impl TopicConfig {
    fn new(name: &str, partitions: i32, retention_ms: i64) -> Self {
        TopicConfig {
            name: name.into(),
            partitions,
            replication_factor: 1,
            retention_ms,
            max_message_bytes: 1_048_588,
        }
    }
}

/// The five topics of SPEC §2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    /// Create missing topics at start; when false, start fails naming the missing topic.
    pub create_topics: bool,
    pub commands: TopicConfig,
    /// Compacted (`cleanup.policy=compact`) whatever the configuration says.
    pub state: TopicConfig,
    pub output: TopicConfig,
    pub results: TopicConfig,
    pub dlq: TopicConfig,
}

const WEEK_MS: i64 = 7 * 24 * 3600 * 1000;

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            create_topics: true,
            commands: TopicConfig::new("raw_events_reprocess_commands", 6, WEEK_MS),
            state: TopicConfig::new("raw_events_reprocess_state", 6, -1),
            output: TopicConfig::new("prod_events_v4", 6, WEEK_MS),
            results: TopicConfig::new("raw_events_reprocess_results", 6, 4 * WEEK_MS),
            dlq: TopicConfig::new("raw_events_reprocess_dlq", 6, 4 * WEEK_MS),
        }
    }
}

impl TopicsConfig {
    /// The five topics with their configuration key (`topics.<key>`), in a fixed order.
    pub fn all(&self) -> [(&'static str, &TopicConfig); 5] {
        [
            ("commands", &self.commands),
            ("state", &self.state),
            ("output", &self.output),
            ("results", &self.results),
            ("dlq", &self.dlq),
        ]
    }
}

/// ClickHouse HTTP interface settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseConfig {
    /// Base URL of the HTTP interface: `http://host:8123`, or `https://host:8443` (e.g. ClickHouse Cloud).
    pub url: String,
    pub user: String,
    /// Secret: redacted when printed. Filled from `password_file` when that is set.
    pub password: String,
    /// A file holding the password (e.g. a mounted Kubernetes secret), read at load without one trailing line
    /// break; `password` must then be empty.
    pub password_file: Option<PathBuf>,
    /// PEM file of the CA certificate(s) that HTTPS servers are checked against, instead of the system's CA
    /// roots; unset = the system's roots.
    pub ca_file: Option<PathBuf>,
    pub database: String,
    /// The raw events table (SPEC §4).
    pub table: String,
    /// The events table read by `pending` mode.
    pub events_table: String,
    /// Sorting key columns after `tenant_id, environment_id`; empty = read from `system.tables`.
    pub sorting_key: Vec<String>,
    /// Timeout of one HTTP request, seconds.
    pub request_timeout_secs: u64,
    /// Total time transient failures of one query are retried for, seconds (exponential backoff with jitter).
    pub retry_budget_secs: u64,
    /// Rows one query of a job reads at most, cut into batches as they arrive (SPEC §4); a throttled job's
    /// queries read at most 30 s of its rate.
    pub max_rows_per_query: u64,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: "http://127.0.0.1:8123".into(),
            user: "default".into(),
            password: String::new(),
            password_file: None,
            ca_file: None,
            database: "flexprice".into(),
            table: "raw_events".into(),
            events_table: "events".into(),
            sorting_key: Vec::new(),
            request_timeout_secs: 60,
            retry_budget_secs: 120,
            max_rows_per_query: 500_000,
        }
    }
}

/// Job processing limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessingConfig {
    /// Batch size of a command that gives none (rows per page and per transaction).
    pub default_batch_size: u32,
    /// Largest batch size a command may ask for.
    pub max_batch_size: u32,
    /// Jobs running at once; more wait as `queued` (SPEC §3).
    pub concurrency: u32,
    /// Least time between two `progress` results of a job, seconds.
    pub progress_interval_secs: u64,
    /// On SIGTERM/SIGINT, time allowed to finish or abort in-flight transactions, seconds.
    pub shutdown_grace_secs: u64,
    /// Dead-letter `raw_event.payload` is cut to this many bytes when the record would be too large.
    pub dlq_max_payload_bytes: usize,
}

impl Default for ProcessingConfig {
    fn default() -> Self {
        ProcessingConfig {
            default_batch_size: 1000,
            max_batch_size: 10_000,
            concurrency: 4,
            progress_interval_secs: 5,
            shutdown_grace_secs: 30,
            dlq_max_payload_bytes: 512 * 1024,
        }
    }
}

impl ProcessingConfig {
    /// `progress_interval_secs`: the least time between two `progress` results of a job.
    pub fn progress_interval(&self) -> Duration {
        Duration::from_secs(self.progress_interval_secs)
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Logs and the HTTP endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObservabilityConfig {
    pub log_format: LogFormat,
    /// A `tracing` filter directive, e.g. `info` or `raw_events_reprocessor=debug`.
    pub log_level: String,
    /// Address of `/metrics`, `/healthz`, `/readyz`.
    pub metrics_address: String,
}

impl Default for ObservabilityConfig {
    fn default() -> Self {
        ObservabilityConfig {
            log_format: LogFormat::Text,
            log_level: "info".into(),
            metrics_address: "127.0.0.1:9464".into(),
        }
    }
}

/// The HTTP API (SPEC §11): `POST /events/raw/reprocess` and the job endpoints, served by the daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// `IP:port` to listen on (e.g. `0.0.0.0:8080`); unset (the default): no API.
    pub address: Option<String>,
    /// Largest request body, bytes; a larger one is refused with 413.
    pub max_body_bytes: usize,
    /// How long `POST /events/raw/reprocess` waits for the daemon's verdict on the results topic before it
    /// answers 202 with status `submitted`, seconds.
    pub verdict_timeout_secs: u64,
    /// The API keys, each scoped to one tenant.
    pub keys: Vec<ApiKeyConfig>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            address: None,
            max_body_bytes: 64 * 1024,
            verdict_timeout_secs: 10,
            keys: Vec::new(),
        }
    }
}

impl ApiConfig {
    /// `verdict_timeout_secs`.
    pub fn verdict_timeout(&self) -> Duration {
        Duration::from_secs(self.verdict_timeout_secs)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(address) = &self.address
            && address.parse::<SocketAddr>().is_err()
        {
            return Err(invalid(
                "api.address",
                format!("{address:?}"),
                "must be an IP address and port, e.g. 0.0.0.0:8080",
            ));
        }
        if self.max_body_bytes < 1024 {
            return Err(invalid(
                "api.max_body_bytes",
                self.max_body_bytes,
                "must be at least 1024",
            ));
        }
        if self.verdict_timeout_secs == 0 {
            return Err(invalid("api.verdict_timeout_secs", 0, "must be at least 1"));
        }
        let mut names = std::collections::HashSet::new();
        let mut digests = std::collections::HashSet::new();
        for (i, k) in self.keys.iter().enumerate() {
            let key = |field: &str| format!("api.keys[{i}].{field} (key {:?})", k.name);
            if k.name.trim().is_empty() {
                return Err(invalid(
                    format!("api.keys[{i}].name"),
                    format!("{:?}", k.name),
                    "must not be empty: it names the key in logs",
                ));
            }
            if !names.insert(k.name.as_str()) {
                return Err(invalid(
                    key("name"),
                    format!("{:?}", k.name),
                    "used by two keys; each key needs its own name",
                ));
            }
            if k.sha256.len() != 64 || !k.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(invalid(
                    key("sha256"),
                    REDACTED,
                    "must be the key's SHA-256 as 64 hex digits (`printf %s KEY | sha256sum`), not the key itself",
                ));
            }
            if !digests.insert(k.sha256.to_ascii_lowercase()) {
                return Err(invalid(
                    key("sha256"),
                    REDACTED,
                    "the same key is configured twice; give each key its own name and hash",
                ));
            }
            if k.tenant_id.trim().is_empty() {
                return Err(invalid(key("tenant_id"), "\"\"", "must not be empty"));
            }
            let wildcard = k.environments.iter().any(|e| e == "*");
            if k.environments.is_empty()
                || k.environments.iter().any(|e| e.trim().is_empty())
                || (wildcard && k.environments.len() > 1)
            {
                return Err(invalid(
                    key("environments"),
                    format!("{:?}", k.environments),
                    "must be a non-empty list of environment ids, or [\"*\"] for every environment",
                ));
            }
        }
        Ok(())
    }
}

/// One API key (`[[api.keys]]`): only its SHA-256 is configured, never the key itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Names the key in logs and errors (never the key).
    pub name: String,
    /// Hex SHA-256 of the key (`printf %s KEY | sha256sum`); redacted when configuration is printed.
    pub sha256: String,
    /// The tenant every request with this key acts for.
    pub tenant_id: String,
    /// The environments the key may use, or `["*"]` for every environment of the tenant.
    pub environments: Vec<String>,
}

/// A configuration that cannot be used: names the key, the value and the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: key `{key}` = {value}: {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
    #[error("invalid configuration: {0}")]
    Figment(String),
}

fn invalid(key: impl Into<String>, value: impl std::fmt::Display, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        value: format!("{value}"),
        reason: reason.into(),
    }
}

/// `Ok` when `ok`, else [`ConfigError::Invalid`] for `key` with `value` and `reason`.
fn require(
    ok: bool,
    key: impl Into<String>,
    value: impl std::fmt::Display,
    reason: &str,
) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(invalid(key, value, reason))
    }
}

/// Whether `s` is non-empty and of `[A-Za-z0-9._-]` (topic names, transactional ids, group instance ids).
fn is_id(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_id_char)
}

impl KafkaConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let empty = "must not be empty";
        require(
            !self.bootstrap_servers.trim().is_empty(),
            "kafka.bootstrap_servers",
            "\"\"",
            empty,
        )?;
        require(
            !self.consumer_group.trim().is_empty(),
            "kafka.consumer_group",
            "\"\"",
            empty,
        )?;
        let prefix = &self.transactional_id_prefix;
        require(
            is_id(prefix),
            "kafka.transactional_id_prefix",
            format!("{prefix:?}"),
            "must be non-empty and use only [A-Za-z0-9._-]",
        )?;
        require(
            self.transaction_timeout_ms >= 1000,
            "kafka.transaction_timeout_ms",
            self.transaction_timeout_ms,
            "must be at least 1000",
        )?;
        require(
            self.operation_timeout_ms >= 100,
            "kafka.operation_timeout_ms",
            self.operation_timeout_ms,
            "must be at least 100",
        )?;
        require(
            (6_000..=300_000).contains(&self.session_timeout_ms),
            "kafka.session_timeout_ms",
            self.session_timeout_ms,
            "must be between 6000 and 300000 (the broker's group session limits)",
        )?;
        match &self.group_instance_id {
            Some(id) => require(
                is_id(id),
                "kafka.group_instance_id",
                format!("{id:?}"),
                "must be non-empty and use only [A-Za-z0-9._-]",
            ),
            None => Ok(()),
        }
    }
}

impl TopicsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::HashSet::new();
        for (key, topic) in self.all() {
            let name = format!("{:?}", topic.name);
            require(
                is_id(&topic.name) && topic.name.len() <= 249,
                format!("topics.{key}.name"),
                &name,
                "a topic name is 1 to 249 characters of [A-Za-z0-9._-]",
            )?;
            require(
                names.insert(topic.name.as_str()),
                format!("topics.{key}.name"),
                &name,
                "used by two topics; each topic needs its own name",
            )?;
            require(
                topic.partitions >= 1,
                format!("topics.{key}.partitions"),
                topic.partitions,
                "must be at least 1",
            )?;
            require(
                topic.replication_factor >= 1,
                format!("topics.{key}.replication_factor"),
                topic.replication_factor,
                "must be at least 1",
            )?;
            require(
                topic.retention_ms == -1 || topic.retention_ms > 0,
                format!("topics.{key}.retention_ms"),
                topic.retention_ms,
                "must be -1 (forever) or a positive number of milliseconds",
            )?;
            require(
                topic.max_message_bytes >= 1024,
                format!("topics.{key}.max_message_bytes"),
                topic.max_message_bytes,
                "must be at least 1024",
            )?;
        }
        Ok(())
    }
}

impl ClickHouseConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let shown = format!("{:?}", self.url);
        let url = url::Url::parse(&self.url)
            .map_err(|e| invalid("clickhouse.url", &shown, &format!("not a URL: {e}")))?;
        require(
            url.scheme() == "http" || url.scheme() == "https",
            "clickhouse.url",
            &shown,
            "scheme must be http or https",
        )?;
        for (key, value) in [
            ("clickhouse.database", &self.database),
            ("clickhouse.table", &self.table),
            ("clickhouse.events_table", &self.events_table),
        ] {
            require(
                !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                key,
                format!("{value:?}"),
                "must be a plain identifier of [A-Za-z0-9_]",
            )?;
        }
        if let Some(path) = &self.ca_file {
            let shown = format!("{:?}", path.display().to_string());
            let text = std::fs::read_to_string(path).map_err(|e| {
                invalid(
                    "clickhouse.ca_file",
                    &shown,
                    &format!("cannot read the file: {e}"),
                )
            })?;
            require(
                text.contains("-----BEGIN CERTIFICATE-----"),
                "clickhouse.ca_file",
                &shown,
                "holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            )?;
        }
        require(
            self.request_timeout_secs >= 1,
            "clickhouse.request_timeout_secs",
            self.request_timeout_secs,
            "must be at least 1",
        )?;
        require(
            self.max_rows_per_query >= 1,
            "clickhouse.max_rows_per_query",
            self.max_rows_per_query,
            "must be at least 1",
        )
    }
}

impl ProcessingConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        require(
            (1..=1_000_000).contains(&self.max_batch_size),
            "processing.max_batch_size",
            self.max_batch_size,
            "must be between 1 and 1000000",
        )?;
        require(
            (1..=self.max_batch_size).contains(&self.default_batch_size),
            "processing.default_batch_size",
            self.default_batch_size,
            "must be between 1 and processing.max_batch_size",
        )?;
        require(
            self.concurrency >= 1,
            "processing.concurrency",
            self.concurrency,
            "must be at least 1",
        )?;
        require(
            self.progress_interval_secs >= 1,
            "processing.progress_interval_secs",
            self.progress_interval_secs,
            "must be at least 1",
        )?;
        require(
            self.dlq_max_payload_bytes >= 256,
            "processing.dlq_max_payload_bytes",
            self.dlq_max_payload_bytes,
            "must be at least 256",
        )
    }
}

impl ObservabilityConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        require(
            self.metrics_address.parse::<SocketAddr>().is_ok(),
            "observability.metrics_address",
            format!("{:?}", self.metrics_address),
            "must be an IP address and port, e.g. 127.0.0.1:9464",
        )?;
        require(
            valid_log_filter(&self.log_level),
            "observability.log_level",
            format!("{:?}", self.log_level),
            "not a log filter (e.g. info, debug, raw_events_reprocessor=debug)",
        )
    }
}

/// Name fragments of librdkafka properties that hold secrets.
const SECRET_MARKERS: [&str; 5] = ["password", "secret", "key", "token", "jaas"];

fn is_secret_property(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    // `ssl.key.location` is a path, not key material; everything else naming a key/secret is redacted.
    !lower.ends_with(".location") && SECRET_MARKERS.iter().any(|m| lower.contains(m))
}

impl Config {
    /// Loads the layers from the process environment. `file` is the `--config FILE` layer; without it, the
    /// file `REPROCESSOR_CONFIG` names, if set.
    ///
    /// Errors: a file that does not exist or does not parse, a value of the wrong type, an unknown key, a secret
    /// file that cannot be read, or a value that fails [`Config::validate`].
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_from(file, std::env::vars())
    }

    /// Like [`Config::load`] with an explicit environment (for tests).
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut env: Vec<(String, String)> = env.into_iter().collect();
        env.sort();
        let mut origin = Origin::default();
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        let default_file = Path::new(DEFAULT_FILE);
        if default_file.is_file() {
            fig = fig.merge(Toml::file(default_file));
            origin.files.push((default_file.to_path_buf(), ""));
        }
        let env_file = env
            .iter()
            .find(|(k, _)| env_name(k) == Some(EnvName::ConfigFile))
            .map(|(_, v)| PathBuf::from(v));
        let named = match (file, &env_file) {
            (Some(f), _) => Some((f.to_path_buf(), "--config")),
            (None, Some(f)) => Some((f.clone(), "REPROCESSOR_CONFIG")),
            (None, None) => None,
        };
        if let Some((file, by)) = named {
            if !file.is_file() {
                return Err(invalid(
                    by,
                    file.display(),
                    "file does not exist or is not a file",
                ));
            }
            fig = fig.merge(Toml::file(&file));
            origin.files.push((file, by));
        }
        for (name, value) in &env {
            let path = match env_name(name) {
                Some(EnvName::Key(path)) => path,
                Some(EnvName::KafkaProperty { table, property }) => {
                    origin.env_keys.push(name.clone());
                    // A nested value rather than a dotted path: the property's own dots are not nesting.
                    let entry =
                        BTreeMap::from([(table, BTreeMap::from([(property, value.clone())]))]);
                    fig = fig.merge(Serialized::global("kafka", entry));
                    continue;
                }
                Some(EnvName::NotOurs) => {
                    origin.ignored_env.push(name.clone());
                    continue;
                }
                Some(EnvName::ConfigFile) | None => continue,
            };
            origin.env_keys.push(name.clone());
            // Environment values are parsed as TOML values where they parse (numbers, booleans, arrays),
            // else taken as strings, the same rule figment's `Env` provider applies.
            let val: figment::value::Value = value
                .parse::<figment::value::Value>()
                .unwrap_or_else(|_| value.clone().into());
            fig = fig.merge(Serialized::global(&path, val));
        }
        for (name, value) in &env {
            match name.as_str() {
                "FLEXPRICE_RAW_EVENTS_REPROCESSING_ENABLED" => {
                    let enabled = match value.trim().to_ascii_lowercase().as_str() {
                        "true" | "1" | "yes" => true,
                        "false" | "0" | "no" => false,
                        _ => {
                            return Err(invalid(name.clone(), value, "expected true or false"));
                        }
                    };
                    fig = fig.merge(Serialized::global("enabled", enabled));
                }
                "FLEXPRICE_RAW_EVENTS_REPROCESSING_OUTPUT_TOPIC" => {
                    fig = fig.merge(Serialized::global("topics.output.name", value.clone()));
                }
                _ => {}
            }
        }
        let mut config: Config = fig.extract().map_err(|e| {
            let mut msgs = Vec::new();
            for err in e {
                let key = if err.path.is_empty() {
                    String::from("(root)")
                } else {
                    err.path.join(".")
                };
                msgs.push(format!("key `{key}`: {}", err.kind));
            }
            ConfigError::Figment(msgs.join("; "))
        })?;
        config.read_secret_files()?;
        config.validate()?;
        config.origin = origin;
        Ok(config)
    }

    /// Where this configuration came from (empty for one not made by [`Config::load`]).
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// Reads `kafka.property_files` and `clickhouse.password_file`.
    fn read_secret_files(&mut self) -> Result<(), ConfigError> {
        let mut values = BTreeMap::new();
        for (name, path) in &self.kafka.property_files {
            let key = format!("kafka.property_files.{name:?}");
            if self.kafka.properties.contains_key(name) {
                return Err(invalid(
                    key,
                    format!("{:?}", path.display().to_string()),
                    &format!(
                        "{name:?} is also set in kafka.properties; give a property one value, inline or from a file"
                    ),
                ));
            }
            values.insert(name.clone(), read_secret_file(&key, path)?);
        }
        self.kafka.file_properties = values;
        if let Some(path) = &self.clickhouse.password_file {
            if !self.clickhouse.password.is_empty() {
                return Err(invalid(
                    "clickhouse.password_file",
                    format!("{:?}", path.display().to_string()),
                    "clickhouse.password is also set; give the password inline or from a file, not both",
                ));
            }
            self.clickhouse.password = read_secret_file("clickhouse.password_file", path)?.0;
        }
        Ok(())
    }

    /// Checks every value that types alone cannot: non-empty names, positive sizes, parseable URL and address.
    /// Errors: [`ConfigError::Invalid`] naming the first bad key, its value and the rule.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.kafka.validate()?;
        self.topics.validate()?;
        self.clickhouse.validate()?;
        self.processing.validate()?;
        self.observability.validate()?;
        self.api.validate()
    }

    /// A copy with every secret replaced by [`REDACTED`].
    pub fn redacted(&self) -> Config {
        let mut c = self.clone();
        if !c.clickhouse.password.is_empty() {
            c.clickhouse.password = REDACTED.into();
        }
        c.clickhouse.url = redact_url(&c.clickhouse.url);
        for (name, value) in c.kafka.properties.iter_mut() {
            if is_secret_property(name) {
                *value = REDACTED.into();
            }
        }
        for key in c.api.keys.iter_mut() {
            key.sha256 = REDACTED.into();
        }
        c
    }

    /// The effective configuration as TOML, secrets redacted, after comment lines saying which files and
    /// environment variables made it (`reprocessor config`). Values read from files are never included.
    pub fn redacted_toml(&self) -> String {
        let body = toml::to_string_pretty(&self.redacted())
            .unwrap_or_else(|e| format!("# cannot print: {e}\n"));
        format!("{}{body}", self.origin.describe())
    }
}

/// Whether `filter` is a log filter: comma-separated directives, each a level (`trace`, `debug`, `info`,
/// `warn`, `error`, `off`) or `target=level`. A bare word is refused (tracing would read it as a target name
/// and log nothing else).
fn valid_log_filter(filter: &str) -> bool {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    !filter.trim().is_empty()
        && tracing_subscriber::EnvFilter::try_new(filter).is_ok()
        && filter.split(',').all(|d| {
            let d = d.trim();
            let level = d
                .rsplit('=')
                .next()
                .unwrap_or(d)
                .trim()
                .to_ascii_lowercase();
            LEVELS.contains(&level.as_str())
        })
}

/// `url` with the password of its user info replaced by [`REDACTED`] (`http://u:***@host/`).
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some(REDACTED));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Characters allowed in job ids, topic names and transactional id prefixes.
pub fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn environment_overrides_nested_keys_and_flexprice_variables_win() {
        let c = Config::load_from(
            None,
            env(&[
                ("REPROCESSOR_KAFKA__BOOTSTRAP_SERVERS", "broker:9093"),
                ("REPROCESSOR_PROCESSING__CONCURRENCY", "7"),
                ("REPROCESSOR_TOPICS__OUTPUT__NAME", "from_reprocessor_env"),
                (
                    "FLEXPRICE_RAW_EVENTS_REPROCESSING_OUTPUT_TOPIC",
                    "events_out",
                ),
                ("FLEXPRICE_RAW_EVENTS_REPROCESSING_ENABLED", "false"),
            ]),
        )
        .unwrap();
        assert_eq!(c.kafka.bootstrap_servers, "broker:9093");
        assert_eq!(c.processing.concurrency, 7);
        assert_eq!(c.topics.output.name, "events_out");
        assert!(!c.enabled);
    }

    #[test]
    fn file_layer_overrides_defaults_and_env_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[processing]\nconcurrency = 3\ndefault_batch_size = 50\n[kafka.properties]\n\"sasl.password\" = \"hunter2\"\n",
        )
        .unwrap();
        let c = Config::load_from(
            Some(&path),
            env(&[("REPROCESSOR_PROCESSING__CONCURRENCY", "9")]),
        )
        .unwrap();
        assert_eq!(c.processing.default_batch_size, 50);
        assert_eq!(c.processing.concurrency, 9);
        let printed = c.redacted_toml();
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains(REDACTED));
    }

    #[test]
    fn bad_values_name_key_value_and_reason() {
        let err = Config::load_from(None, env(&[("REPROCESSOR_PROCESSING__CONCURRENCY", "0")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("processing.concurrency") && err.contains("at least 1"),
            "{err}"
        );

        let err = Config::load_from(None, env(&[("REPROCESSOR_CLICKHOUSE__URL", "not a url")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("clickhouse.url") && err.contains("not a url"),
            "{err}"
        );

        let err = Config::load_from(
            None,
            env(&[("REPROCESSOR_PROCESSING__CONCURRENCY", "many")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("processing.concurrency") && err.contains("many"),
            "{err}"
        );

        let err = Config::load_from(
            None,
            env(&[("FLEXPRICE_RAW_EVENTS_REPROCESSING_ENABLED", "maybe")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("FLEXPRICE_RAW_EVENTS_REPROCESSING_ENABLED") && err.contains("maybe"),
            "{err}"
        );
    }

    #[test]
    fn variables_that_name_no_key_are_ignored_with_one_warning() {
        // What Kubernetes injects for a Service named `reprocessor`, plus a nesting mistake.
        let c = Config::load_from(
            None,
            env(&[
                ("REPROCESSOR_PORT", "tcp://10.0.0.7:9464"),
                ("REPROCESSOR_PORT_9464_TCP", "tcp://10.0.0.7:9464"),
                ("REPROCESSOR_PORT_9464_TCP_ADDR", "10.0.0.7"),
                ("REPROCESSOR_SERVICE_HOST", "10.0.0.7"),
                ("REPROCESSOR_SERVICE_PORT", "9464"),
                ("REPROCESSOR_KAFKA_BOOTSTRAP_SERVERS", "broker:9092"),
                ("REPROCESSOR_PROCESSING__CONCURRENCY", "3"),
                ("REPROCESSOR_ENABLED", "false"),
            ]),
        )
        .unwrap();
        assert_eq!(c.processing.concurrency, 3);
        assert!(!c.enabled);
        assert_eq!(c.kafka.bootstrap_servers, "127.0.0.1:9092");
        let warning = c.origin().ignored_env_warning().unwrap();
        for name in [
            "REPROCESSOR_PORT,",
            "REPROCESSOR_PORT_9464_TCP,",
            "REPROCESSOR_SERVICE_HOST",
            "REPROCESSOR_KAFKA_BOOTSTRAP_SERVERS",
        ] {
            assert!(warning.contains(name), "{name}: {warning}");
        }
        assert!(
            warning.contains("did you mean REPROCESSOR_KAFKA__BOOTSTRAP_SERVERS?"),
            "{warning}"
        );
        assert!(
            !warning.contains("10.0.0.7"),
            "values are not shown: {warning}"
        );
        assert_eq!(warning.lines().count(), 1);
        assert_eq!(
            c.origin().env_keys,
            ["REPROCESSOR_ENABLED", "REPROCESSOR_PROCESSING__CONCURRENCY"]
        );
        let printed = c.redacted_toml();
        assert!(
            printed.contains("# ignored (no such configuration key): REPROCESSOR_KAFKA_BOOTSTRAP_SERVERS, REPROCESSOR_PORT"),
            "{printed}"
        );
        assert!(
            Config::load_from(None, env(&[]))
                .unwrap()
                .origin()
                .ignored_env_warning()
                .is_none()
        );
    }

    #[test]
    fn env_names_are_keys_when_nested_or_top_level() {
        assert_eq!(env_name("PATH"), None);
        assert_eq!(env_name("REPROCESSOR_CONFIG"), Some(EnvName::ConfigFile));
        assert_eq!(
            env_name("REPROCESSOR_KAFKA__PROPERTY_FILES__SASL_PASSWORD"),
            Some(EnvName::KafkaProperty {
                table: "property_files",
                property: "sasl.password".into()
            })
        );
        assert_eq!(
            env_name("REPROCESSOR_ENABLED"),
            Some(EnvName::Key("enabled".into()))
        );
        assert_eq!(
            env_name("REPROCESSOR_KAFKA"),
            Some(EnvName::Key("kafka".into()))
        );
        // A key whose default is unset is a key too (it was ignored as not ours).
        assert_eq!(
            env_name("REPROCESSOR_INSTANCE_ID"),
            Some(EnvName::Key("instance_id".into()))
        );
        let cfg = Config::load_from(None, env(&[("REPROCESSOR_INSTANCE_ID", "pod-7")])).unwrap();
        assert_eq!(cfg.instance(), "pod-7");
        assert_eq!(
            env_name("REPROCESSOR_SERVICE_PORT_METRICS"),
            Some(EnvName::NotOurs)
        );
        // A typo of a section is still a key (and fails the load naming it).
        assert_eq!(
            env_name("REPROCESSOR_PROCESING__CONCURRENCY"),
            Some(EnvName::Key("procesing.concurrency".into()))
        );
        let err = Config::load_from(None, env(&[("REPROCESSOR_PROCESING__CONCURRENCY", "2")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("procesing"), "{err}");
    }

    #[test]
    fn librdkafka_properties_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "env-file-secret").unwrap();
        let c = Config::load_from(
            None,
            env(&[
                (
                    "REPROCESSOR_KAFKA__PROPERTIES__SECURITY_PROTOCOL",
                    "SASL_SSL",
                ),
                (
                    "REPROCESSOR_KAFKA__PROPERTIES__SASL_MECHANISMS",
                    "SCRAM-SHA-512",
                ),
                ("REPROCESSOR_KAFKA__PROPERTIES__MESSAGE_TIMEOUT_MS", "30000"),
                (
                    "REPROCESSOR_KAFKA__PROPERTY_FILES__SASL_PASSWORD",
                    pw.to_str().unwrap(),
                ),
            ]),
        )
        .unwrap();
        let props: BTreeMap<&str, &str> = c.kafka.client_properties().collect();
        assert_eq!(props["security.protocol"], "SASL_SSL");
        assert_eq!(props["sasl.mechanisms"], "SCRAM-SHA-512");
        assert_eq!(props["message.timeout.ms"], "30000", "numbers stay text");
        assert_eq!(props["sasl.password"], "env-file-secret");
        assert!(!c.redacted_toml().contains("env-file-secret"));
    }

    #[test]
    fn reprocessor_config_names_the_file_unless_config_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.toml");
        let b = dir.path().join("b.toml");
        std::fs::write(&a, "[processing]\nconcurrency = 5\n").unwrap();
        std::fs::write(&b, "[processing]\nconcurrency = 6\n").unwrap();
        let vars = env(&[("REPROCESSOR_CONFIG", a.to_str().unwrap())]);
        let c = Config::load_from(None, vars.clone()).unwrap();
        assert_eq!(c.processing.concurrency, 5);
        assert!(c.origin().env_keys.is_empty() && c.origin().ignored_env.is_empty());
        let printed = c.redacted_toml();
        assert!(
            printed.starts_with("# read: ")
                && printed
                    .lines()
                    .next()
                    .unwrap()
                    .ends_with(&format!("{} (REPROCESSOR_CONFIG)", a.display())),
            "{printed}"
        );
        let c = Config::load_from(Some(&b), vars).unwrap();
        assert_eq!(c.processing.concurrency, 6);
        assert!(
            c.redacted_toml()
                .contains(&format!("{} (--config)", b.display()))
        );
        let err = Config::load_from(None, env(&[("REPROCESSOR_CONFIG", "/nonexistent/r.toml")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("REPROCESSOR_CONFIG") && err.contains("/nonexistent/r.toml"),
            "{err}"
        );
    }

    #[test]
    fn secrets_come_from_files_and_are_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let kafka_pw = dir.path().join("kafka-password");
        let ch_pw = dir.path().join("clickhouse-password");
        std::fs::write(&kafka_pw, "file-secret-1\n").unwrap();
        std::fs::write(&ch_pw, "file-secret-2").unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            format!(
                "[kafka.properties]\n\"sasl.username\" = \"bob\"\n[kafka.property_files]\n\"sasl.password\" = {:?}\n\
                 \"ssl.certificate.pem\" = {:?}\n[clickhouse]\npassword_file = {:?}\n",
                kafka_pw.display().to_string(),
                kafka_pw.display().to_string(),
                ch_pw.display().to_string()
            ),
        )
        .unwrap();
        let c = Config::load_from(Some(&file), env(&[])).unwrap();
        let props: BTreeMap<&str, &str> = c.kafka.client_properties().collect();
        assert_eq!(
            props["sasl.password"], "file-secret-1",
            "one trailing line break is dropped"
        );
        assert_eq!(props["sasl.username"], "bob");
        assert_eq!(c.clickhouse.password, "file-secret-2");
        let printed = c.redacted_toml();
        let debug = format!("{:?}", c.kafka);
        for shown in [&printed, &debug] {
            assert!(
                !shown.contains("file-secret-1") && !shown.contains("file-secret-2"),
                "{shown}"
            );
        }
        assert!(
            printed.contains(&kafka_pw.display().to_string()),
            "paths are shown: {printed}"
        );

        // Missing or empty files, and a property given twice, fail naming the key.
        let bad = |toml: String| {
            std::fs::write(&file, toml).unwrap();
            Config::load_from(Some(&file), env(&[]))
                .unwrap_err()
                .to_string()
        };
        let err = bad("[kafka.property_files]\n\"sasl.password\" = \"/nonexistent/pw\"\n".into());
        assert!(
            err.contains("kafka.property_files.\"sasl.password\"") && err.contains("cannot read"),
            "{err}"
        );
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let err = bad(format!(
            "[clickhouse]\npassword_file = {:?}\n",
            empty.display().to_string()
        ));
        assert!(
            err.contains("clickhouse.password_file") && err.contains("empty"),
            "{err}"
        );
        let err = bad(format!(
            "[kafka.properties]\n\"sasl.password\" = \"inline\"\n[kafka.property_files]\n\"sasl.password\" = {:?}\n",
            kafka_pw.display().to_string()
        ));
        assert!(err.contains("also set in kafka.properties"), "{err}");
        let err = bad(format!(
            "[clickhouse]\npassword = \"pw-inline-7\"\npassword_file = {:?}\n",
            ch_pw.display().to_string()
        ));
        assert!(
            err.contains("clickhouse.password_file") && !err.contains("pw-inline-7"),
            "{err}"
        );
    }

    #[test]
    fn ca_file_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        for (path, reason) in [
            (not_pem.display().to_string(), "no PEM certificate"),
            ("/nonexistent/ca.pem".to_string(), "cannot read"),
        ] {
            let err = Config::load_from(None, env(&[("REPROCESSOR_CLICKHOUSE__CA_FILE", &path)]))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("clickhouse.ca_file") && err.contains(&path) && err.contains(reason),
                "{err}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = Config::load_from(None, env(&[("REPROCESSOR_PROCESSING__CONCURENCY", "2")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("concurency"), "{err}");
    }

    #[test]
    fn a_bare_word_is_not_a_log_level() {
        for bad in ["verbose", "", "info,loud", "raw_events_reprocessor=chatty"] {
            let err =
                Config::load_from(None, env(&[("REPROCESSOR_OBSERVABILITY__LOG_LEVEL", bad)]))
                    .unwrap_err()
                    .to_string();
            assert!(err.contains("observability.log_level"), "{bad}: {err}");
        }
        for good in [
            "debug",
            "info,librdkafka=warn",
            "raw_events_reprocessor=debug",
        ] {
            Config::load_from(None, env(&[("REPROCESSOR_OBSERVABILITY__LOG_LEVEL", good)]))
                .unwrap_or_else(|e| panic!("{good}: {e}"));
        }
    }

    const SHA: &str = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

    #[test]
    fn api_is_off_by_default_and_keys_are_read_and_redacted() {
        let c = Config::load_from(None, env(&[])).unwrap();
        assert_eq!(c.api.address, None);
        assert!(c.api.keys.is_empty());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            format!(
                "[api]\naddress = \"127.0.0.1:8080\"\n[[api.keys]]\nname = \"team-a\"\nsha256 = \"{SHA}\"\n\
                 tenant_id = \"t1\"\nenvironments = [\"*\"]\n"
            ),
        )
        .unwrap();
        let c = Config::load_from(
            Some(&file),
            env(&[("REPROCESSOR_API__VERDICT_TIMEOUT_SECS", "3")]),
        )
        .unwrap();
        assert_eq!(c.api.address.as_deref(), Some("127.0.0.1:8080"));
        assert_eq!(c.api.verdict_timeout(), Duration::from_secs(3));
        assert_eq!(c.api.keys[0].tenant_id, "t1");
        let printed = c.redacted_toml();
        assert!(
            !printed.contains(SHA) && printed.contains("team-a"),
            "{printed}"
        );
        // Keys from the environment, as an inline TOML array of tables (e.g. for compose).
        let c = Config::load_from(
            None,
            env(&[(
                "REPROCESSOR_API__KEYS",
                &format!(
                    "[{{name=\"k\",sha256=\"{SHA}\",tenant_id=\"t\",environments=[\"e1\",\"e2\"]}}]"
                ),
            )]),
        )
        .unwrap();
        assert_eq!(c.api.keys[0].environments, ["e1", "e2"]);
    }

    #[test]
    fn bad_api_settings_fail_naming_the_key() {
        let key = |name: &str, sha: &str, tenant: &str, envs: &str| {
            format!(
                "[[api.keys]]\nname = {name:?}\nsha256 = {sha:?}\ntenant_id = {tenant:?}\nenvironments = {envs}\n"
            )
        };
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        let cases = [
            (
                "[api]\naddress = \"localhost\"\n".to_string(),
                "api.address",
            ),
            (
                "[api]\nmax_body_bytes = 10\n".to_string(),
                "api.max_body_bytes",
            ),
            (
                key("a", "the-key-itself", "t", "[\"*\"]"),
                "api.keys[0].sha256 (key \"a\")",
            ),
            (
                key("a", SHA, " ", "[\"*\"]"),
                "api.keys[0].tenant_id (key \"a\")",
            ),
            (
                key("a", SHA, "t", "[]"),
                "api.keys[0].environments (key \"a\")",
            ),
            (
                key("a", SHA, "t", "[\"*\", \"e1\"]"),
                "api.keys[0].environments",
            ),
            (key("", SHA, "t", "[\"*\"]"), "api.keys[0].name"),
            (
                key("a", SHA, "t", "[\"e\"]") + &key("b", &SHA.to_uppercase(), "u", "[\"e\"]"),
                "api.keys[1].sha256 (key \"b\")",
            ),
            (
                key("a", SHA, "t", "[\"e\"]") + &key("a", &SHA.replace('2', "3"), "u", "[\"e\"]"),
                "api.keys[1].name",
            ),
        ];
        for (toml, needle) in cases {
            std::fs::write(&file, &toml).unwrap();
            let err = Config::load_from(Some(&file), env(&[]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{toml}: {err}");
            assert!(
                !err.contains("the-key-itself"),
                "a key is never shown: {err}"
            );
        }
    }

    #[test]
    fn password_is_redacted() {
        let mut c = Config::default();
        c.clickhouse.url = "http://bob:urlpw@127.0.0.1:8123".into();
        c.kafka.properties.insert(
            "sasl.jaas.config".into(),
            "org.apache.kafka.common.security.plain.PlainLoginModule required password=\"jaaspw\";"
                .into(),
        );
        let printed = c.redacted_toml();
        assert!(
            !printed.contains("urlpw") && !printed.contains("jaaspw"),
            "{printed}"
        );
        assert!(
            printed.contains("http://bob:***@127.0.0.1:8123"),
            "{printed}"
        );
        c.clickhouse.password = "s3cret".into();
        c.kafka
            .properties
            .insert("ssl.key.location".into(), "/etc/k.pem".into());
        let printed = c.redacted_toml();
        assert!(!printed.contains("s3cret"));
        assert!(
            printed.contains("/etc/k.pem"),
            "paths are not secrets: {printed}"
        );
    }
}
