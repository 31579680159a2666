//! End-to-end harness: a private namespace per test (ClickHouse database, topic names, consumer group,
//! transactional-id prefix), raw rows in, the daemon as a child process, and readers of what it wrote.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Serialize;
use serde_json::Value;

use super::{Secure, clickhouse_url, kafka_bootstrap, require_services};

/// A raw row to insert (column names as in `flexprice.raw_events`): the one insert type of the tests and benches.
#[derive(Debug, Clone, clickhouse::Row, Serialize)]
pub struct InsertRow {
    pub id: String,
    pub tenant_id: String,
    pub environment_id: String,
    pub external_customer_id: String,
    pub event_name: String,
    pub source: Option<String>,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
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
    /// UTC milliseconds.
    pub timestamp: i64,
    /// UTC milliseconds.
    pub ingested_at: i64,
    pub version: u64,
    pub sign: i8,
}

/// A row of `flexprice.events` (what Flexprice's consumer stored; `pending` mode looks ids up in it).
#[derive(Debug, Clone, clickhouse::Row, Serialize)]
pub struct InsertEvent {
    pub id: String,
    pub tenant_id: String,
    pub external_customer_id: String,
    pub environment_id: String,
    pub event_name: String,
    pub customer_id: Option<String>,
    pub source: Option<String>,
    /// UTC milliseconds.
    pub timestamp: i64,
    /// UTC milliseconds.
    pub ingested_at: i64,
    pub properties: String,
}

impl InsertEvent {
    /// The event a raw row would become, stored at `timestamp_ms`.
    pub fn of(row: &InsertRow, timestamp_ms: i64) -> InsertEvent {
        InsertEvent {
            id: row.id.clone(),
            tenant_id: row.tenant_id.clone(),
            external_customer_id: row.external_customer_id.clone(),
            environment_id: row.environment_id.clone(),
            event_name: row.event_name.clone(),
            customer_id: None,
            source: None,
            timestamp: timestamp_ms,
            ingested_at: timestamp_ms,
            properties: "{}".into(),
        }
    }
}

impl InsertRow {
    /// The row as the source reads it back.
    pub fn to_raw(&self) -> raw_events_reprocessor::source::RawRow {
        let b = |s: &str| s.as_bytes().to_vec();
        let opt = |s: &Option<String>| s.as_deref().map(b);
        raw_events_reprocessor::source::RawRow {
            id: b(&self.id),
            tenant_id: b(&self.tenant_id),
            environment_id: b(&self.environment_id),
            external_customer_id: b(&self.external_customer_id),
            event_name: b(&self.event_name),
            source: opt(&self.source),
            payload: self.payload.clone(),
            field1: opt(&self.field1),
            field2: opt(&self.field2),
            field3: opt(&self.field3),
            field4: opt(&self.field4),
            field5: opt(&self.field5),
            field6: opt(&self.field6),
            field7: opt(&self.field7),
            field8: opt(&self.field8),
            field9: opt(&self.field9),
            field10: opt(&self.field10),
            timestamp_ms: self.timestamp,
            ingested_at_ms: self.ingested_at,
            version: self.version,
            sign: self.sign,
        }
    }

    pub fn new(
        id: &str,
        tenant: &str,
        env: &str,
        customer: &str,
        ts_ms: i64,
        payload: &[u8],
    ) -> InsertRow {
        InsertRow {
            id: id.into(),
            tenant_id: tenant.into(),
            environment_id: env.into(),
            external_customer_id: customer.into(),
            event_name: "usage".into(),
            source: None,
            payload: payload.to_vec(),
            field1: None,
            field2: None,
            field3: None,
            field4: None,
            field5: None,
            field6: None,
            field7: None,
            field8: None,
            field9: None,
            field10: None,
            timestamp: ts_ms,
            ingested_at: ts_ms,
            version: 1,
            sign: 1,
        }
    }
}

/// A record read back from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: Vec<u8>,
    pub headers: HashMap<String, String>,
    /// The record's timestamp (producer create time), milliseconds.
    pub timestamp_ms: Option<i64>,
}

impl Record {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.value).unwrap_or(Value::Null)
    }
}

/// A test's private namespace on the shared (or its own) Kafka and ClickHouse.
pub struct Env {
    pub name: String,
    pub kafka: String,
    pub clickhouse: String,
    pub database: String,
    pub metrics_port: u16,
    /// `target/e2e-logs/<name>`: the daemon logs of this test, kept for inspection.
    pub log_dir: PathBuf,
    /// Extra `REPROCESSOR_*` variables for the daemon.
    pub extra_env: Vec<(String, String)>,
    /// A configuration file passed as `--config` to the daemon and the CLI ([`Env::config_file`]).
    pub config: Option<PathBuf>,
    /// librdkafka properties of this harness's own Kafka clients (producer of commands, readers), e.g. SASL.
    pub client_properties: Vec<(String, String)>,
    /// The ClickHouse URL the daemon and the CLI use when it differs from `clickhouse` (which the harness
    /// uses to create tables and insert rows), e.g. the HTTPS port.
    pub daemon_clickhouse: Option<String>,
}

/// A TCP port free on 127.0.0.1 right now, below the ephemeral range ([`super::free_ports`]).
pub fn free_port() -> u16 {
    super::free_ports(1)
}

impl Env {
    /// A namespace on the shared services (`scripts/services.sh up`).
    pub async fn new(name: &str) -> Env {
        require_services();
        Env::on(name, kafka_bootstrap(), clickhouse_url()).await
    }

    /// A namespace on the given services.
    pub async fn on(name: &str, kafka: String, clickhouse: String) -> Env {
        let unique = format!(
            "{name}_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
                % 1_000_000
        );
        let env = Env {
            database: format!("e2e_{unique}"),
            name: unique.clone(),
            kafka,
            clickhouse,
            metrics_port: free_port(),
            log_dir: {
                let d = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("target/e2e-logs")
                    .join(&unique);
                std::fs::create_dir_all(&d).unwrap();
                d
            },
            extra_env: Vec::new(),
            config: None,
            client_properties: Vec::new(),
            daemon_clickhouse: None,
        };
        env.create_tables().await;
        env
    }

    /// A namespace reached as production is: Kafka over SASL_SSL (SCRAM-SHA-512) and ClickHouse over HTTPS,
    /// both trusting only the local CA, the SASL password from a file. The daemon and the CLI read a
    /// configuration file (`REPROCESSOR_CONFIG`, in `log_dir`) with `[kafka.properties]`,
    /// `[kafka.property_files]` and `clickhouse.ca_file`; the harness's own clients use the same settings.
    pub async fn secure(name: &str, secure: &Secure) -> Env {
        require_services();
        let mut env = Env::on(name, secure.kafka_sasl_ssl.clone(), clickhouse_url()).await;
        env.client_properties = secure.scram_properties();
        env.daemon_clickhouse = Some(secure.clickhouse_https.clone());
        let file = env.log_dir.join("secure.toml");
        std::fs::write(
            &file,
            format!(
                "[kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\n\"ssl.ca.location\" = {ca:?}\n\
                 \"sasl.mechanisms\" = \"SCRAM-SHA-512\"\n\"sasl.username\" = {user:?}\n\n\
                 [kafka.property_files]\n\"sasl.password\" = {pw:?}\n\n[clickhouse]\nca_file = {ca:?}\n",
                ca = secure.ca_file.display().to_string(),
                user = secure.sasl_user,
                pw = secure.sasl_password_file.display().to_string(),
            ),
        )
        .unwrap();
        env.extra_env
            .push(("REPROCESSOR_CONFIG".into(), file.display().to_string()));
        env
    }

    /// A librdkafka configuration of this harness's clients: bootstrap servers plus `client_properties`.
    pub fn kafka_config(&self) -> ClientConfig {
        kafka_config(&self.kafka, &self.client_properties)
    }

    pub fn client(&self) -> clickhouse::Client {
        clickhouse::Client::default()
            .with_url(&self.clickhouse)
            .with_database(&self.database)
    }

    async fn create_tables(&self) {
        let client = clickhouse::Client::default().with_url(&self.clickhouse);
        create_schema(&client, &self.database, &|ddl| ddl).await;
    }

    pub fn topic(&self, key: &str) -> String {
        format!("{key}_{}", self.name)
    }

    /// `REPROCESSOR_*` variables pointing the daemon at this namespace.
    pub fn daemon_env(&self) -> Vec<(String, String)> {
        let mut v = vec![
            (
                "REPROCESSOR_KAFKA__BOOTSTRAP_SERVERS".into(),
                self.kafka.clone(),
            ),
            (
                "REPROCESSOR_KAFKA__CONSUMER_GROUP".into(),
                format!("g_{}", self.name),
            ),
            (
                "REPROCESSOR_KAFKA__TRANSACTIONAL_ID_PREFIX".into(),
                format!("tx_{}", self.name),
            ),
            (
                "REPROCESSOR_KAFKA__GROUP_INSTANCE_ID".into(),
                format!("i_{}", self.name),
            ),
            (
                "REPROCESSOR_CLICKHOUSE__URL".into(),
                self.daemon_clickhouse
                    .clone()
                    .unwrap_or_else(|| self.clickhouse.clone()),
            ),
            (
                "REPROCESSOR_CLICKHOUSE__DATABASE".into(),
                self.database.clone(),
            ),
            (
                "REPROCESSOR_OBSERVABILITY__METRICS_ADDRESS".into(),
                format!("127.0.0.1:{}", self.metrics_port),
            ),
            (
                "REPROCESSOR_OBSERVABILITY__LOG_FORMAT".into(),
                "json".into(),
            ),
            (
                "REPROCESSOR_PROCESSING__PROGRESS_INTERVAL_SECS".into(),
                "1".into(),
            ),
        ];
        for key in ["commands", "state", "output", "results", "dlq"] {
            v.push((
                format!("REPROCESSOR_TOPICS__{}__NAME", key.to_uppercase()),
                self.topic(key),
            ));
            v.push((
                format!("REPROCESSOR_TOPICS__{}__PARTITIONS", key.to_uppercase()),
                "3".into(),
            ));
        }
        v.extend(self.extra_env.iter().cloned());
        v
    }

    /// Writes `toml` as this namespace's configuration file, passed as `--config` from now on.
    pub fn config_file(&mut self, toml: &str) {
        let path = self.log_dir.join("config.toml");
        std::fs::write(&path, toml).unwrap();
        self.config = Some(path);
    }

    fn config_args(&self) -> Vec<String> {
        match &self.config {
            Some(p) => vec!["--config".into(), p.display().to_string()],
            None => Vec::new(),
        }
    }

    /// Runs `reprocessor <args>` (an operator command) with this namespace's environment; waits for it.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        self.cli_with(args, &[])
    }

    /// Like [`Env::cli`], with `vars` set over the namespace's environment (e.g. a wrong bootstrap server).
    pub fn cli_with(&self, args: &[&str], vars: &[(&str, &str)]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_reprocessor"))
            .args(self.config_args())
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .envs(self.daemon_env())
            .envs(vars.iter().copied())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .expect("run reprocessor")
    }

    /// Starts `reprocessor run` for this namespace; its logs go to `daemon-<n>.log` in `log_dir`.
    pub fn start_daemon(&self) -> DaemonProcess {
        self.start_daemon_with(&[])
    }

    /// Starts `reprocessor run` for this namespace and waits until it has created the topics.
    pub fn running_daemon(&self) -> DaemonProcess {
        let daemon = self.start_daemon();
        self.wait_topics(Duration::from_secs(60));
        daemon
    }

    /// Starts another daemon instance of the same group: its own static membership id, metrics port and
    /// `instance_id` (`instance`, so results name it; kept across a restart). A restarted static member
    /// takes its control partitions back at once.
    pub fn start_instance(&self, instance: &str) -> DaemonProcess {
        let group_instance_id = format!("i_{}_{instance}", self.name);
        self.start_member(instance, Some(&group_instance_id))
    }

    /// Like [`Env::start_instance`], as a dynamic member of the group (no `group.instance.id`): when it dies,
    /// its control partitions move to the other instances after the session timeout.
    pub fn start_dynamic_instance(&self, instance: &str) -> DaemonProcess {
        self.start_member(instance, None)
    }

    fn start_member(&self, instance: &str, group_instance_id: Option<&str>) -> DaemonProcess {
        let port = free_port().to_string();
        let metrics = format!("127.0.0.1:{port}");
        let mut vars = vec![
            ("REPROCESSOR_INSTANCE_ID", instance),
            ("REPROCESSOR_OBSERVABILITY__METRICS_ADDRESS", &metrics),
        ];
        if let Some(id) = group_instance_id {
            vars.push(("REPROCESSOR_KAFKA__GROUP_INSTANCE_ID", id));
        }
        self.start_daemon_with(&vars)
    }

    /// Starts `reprocessor run` with `overrides` on top of this namespace's environment.
    pub fn start_daemon_with(&self, overrides: &[(&str, &str)]) -> DaemonProcess {
        let n = std::fs::read_dir(&self.log_dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("daemon-"))
            })
            .count();
        let log_path = self.log_dir.join(format!("daemon-{n}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_reprocessor"))
            .args(self.config_args())
            .arg("run")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .envs(self.daemon_env())
            .envs(
                overrides
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string())),
            )
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start reprocessor run");
        DaemonProcess {
            child: Some(child),
            log_path,
        }
    }

    /// Inserts rows into this namespace's `events` table.
    pub async fn insert_events(&self, rows: &[InsertEvent]) {
        let mut insert = self.client().insert::<InsertEvent>("events").await.unwrap();
        for r in rows {
            insert.write(r).await.unwrap();
        }
        insert.end().await.unwrap();
    }

    pub async fn insert(&self, rows: &[InsertRow]) {
        let client = self.client();
        for chunk in rows.chunks(20_000) {
            let mut insert = client
                .insert::<InsertRow>("raw_events")
                .await
                .expect("insert");
            for r in chunk {
                insert.write(r).await.expect("write row");
            }
            insert.end().await.expect("end insert");
        }
    }

    /// Produces a command on the control topic keyed by `key`, on `partition` when given; returns the partition
    /// and offset it landed on.
    pub async fn produce(&self, key: &str, partition: Option<i32>, command: &str) -> (i32, i64) {
        let producer: FutureProducer = self
            .kafka_config()
            .set("partitioner", "murmur2_random")
            .create()
            .unwrap();
        let topic = self.topic("commands");
        let mut rec = FutureRecord::to(&topic).key(key).payload(command);
        if let Some(p) = partition {
            rec = rec.partition(p);
        }
        let d = producer
            .send(rec, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)
            .expect("produce command");
        (d.partition, d.offset)
    }

    /// Produces a command on the control topic, keyed by `key`.
    pub async fn submit(&self, key: &str, command: &str) {
        self.produce(key, None, command).await;
    }

    /// Waits until the control topic exists (the daemon creates the topics at start).
    pub fn wait_topics(&self, timeout: Duration) {
        let c: BaseConsumer = self.kafka_config().create().unwrap();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(md) = c.fetch_metadata(None, Duration::from_secs(5)) {
                let names: Vec<&str> = md.topics().iter().map(|t| t.name()).collect();
                if ["commands", "state", "output", "results", "dlq"]
                    .iter()
                    .all(|k| names.contains(&self.topic(k).as_str()))
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not create its topics in time"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Every committed record of a topic (read_committed), read to the end of every partition.
    pub fn read_all(&self, key: &str) -> Vec<Record> {
        read_topic(&self.kafka_config(), &self.topic(key))
    }

    /// The results of one job, in order.
    pub fn results(&self, job_id: &str) -> Vec<Value> {
        let mut recs: Vec<Record> = self
            .read_all("results")
            .into_iter()
            .filter(|r| r.key.as_deref() == Some(job_id))
            .collect();
        recs.sort_by_key(|r| (r.partition, r.offset));
        recs.iter().map(Record::json).collect()
    }

    /// Polls the results topic until the job has a record whose status is in `statuses`.
    pub fn wait_status(&self, job_id: &str, statuses: &[&str], timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = self
                .results(job_id)
                .into_iter()
                .find(|v| statuses.contains(&v["status"].as_str().unwrap_or("")))
            {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "job {job_id} reached none of {statuses:?} in {timeout:?}; results so far: {:?}",
                self.results(job_id)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// The largest value of `counter` (e.g. `total_events_published`) in the job's result records so far (0
    /// before any).
    pub fn counter_so_far(&self, job_id: &str, counter: &str) -> i64 {
        self.results(job_id)
            .iter()
            .filter_map(|v| v[counter].as_i64())
            .max()
            .unwrap_or(0)
    }

    /// Waits until the job's results report `counter` at `at_least` or more.
    pub fn wait_counter(&self, job_id: &str, counter: &str, at_least: i64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.counter_so_far(job_id, counter) < at_least {
            assert!(
                Instant::now() < deadline,
                "job {job_id}: {counter} did not reach {at_least} within {timeout:?}: {:?}",
                self.results(job_id).last()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits for the job's final result (`completed`, `failed`, `cancelled`, `rejected`).
    pub fn wait_final(&self, job_id: &str, timeout: Duration) -> Value {
        self.wait_status(
            job_id,
            &["completed", "failed", "cancelled", "rejected"],
            timeout,
        )
    }
}

/// `bootstrap.servers` plus `properties`.
pub fn kafka_config(bootstrap: &str, properties: &[(String, String)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    for (k, v) in properties {
        c.set(k, v);
    }
    c
}

/// Reads a whole topic with `isolation.level=read_committed`, retrying while the broker is not ready
/// (e.g. right after a restart). `client` is the base configuration (bootstrap servers, SASL, TLS).
pub fn read_topic(client: &ClientConfig, topic: &str) -> Vec<Record> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match std::panic::catch_unwind(|| read_topic_once(client, topic)) {
            Ok(records) => return records,
            Err(e) if Instant::now() < deadline => {
                eprintln!(
                    "reading {topic} failed ({:?}); retrying",
                    e.downcast_ref::<String>()
                );
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => std::panic::resume_unwind(e),
        }
    }
}

fn read_topic_once(client: &ClientConfig, topic: &str) -> Vec<Record> {
    let c: BaseConsumer = client
        .clone()
        .set("group.id", "e2e-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "false")
        .create()
        .unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let parts: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut tpl = TopicPartitionList::new();
    let mut targets = HashMap::new();
    for p in &parts {
        let (_, high) = c
            .fetch_watermarks(topic, *p, Duration::from_secs(10))
            .unwrap();
        targets.insert(*p, high);
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let pos = c.position().unwrap();
        let done = parts.iter().all(|p| {
            let high = targets[p];
            high == 0
                || matches!(pos.find_partition(topic, *p).map(|e| e.offset()), Some(Offset::Offset(o)) if o >= high)
        });
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "reading {topic} timed out");
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.expect("consume");
            let mut headers = HashMap::new();
            if let Some(h) = m.headers() {
                for hd in h.iter() {
                    headers.insert(
                        hd.key.to_string(),
                        String::from_utf8_lossy(hd.value.unwrap_or_default()).into_owned(),
                    );
                }
            }
            out.push(Record {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                value: m.payload().unwrap_or_default().to_vec(),
                headers,
                timestamp_ms: m.timestamp().to_millis(),
            });
        }
    }
    out
}

/// The daemon child process; killed when dropped.
pub struct DaemonProcess {
    child: Option<Child>,
    pub log_path: PathBuf,
}

impl DaemonProcess {
    /// SIGKILL, no goodbye.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for the exit status (up to `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        unsafe {
            libc_kill(c.id() as i32, 15);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = c.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Peak resident set size (`VmHWM`) of the running process, in KiB (Linux).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// SIGSTOP: the process freezes (heartbeats stop, open transactions stay open).
    pub fn stop(&self) {
        if let Some(pid) = self.pid() {
            unsafe {
                libc_kill(pid as i32, 19);
            }
        }
    }

    /// SIGCONT after [`DaemonProcess::stop`].
    pub fn cont(&self) {
        if let Some(pid) = self.pid() {
            unsafe {
                libc_kill(pid as i32, 18);
            }
        }
    }

    /// Waits until the log contains `needle`; panics with the log after `timeout`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "`{needle}` not logged within {timeout:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits up to `timeout` for the process to exit on its own; its exit status, or `None` if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!(
                "--- last lines of {}:\n{}",
                self.log_path.display(),
                tail.join("\n")
            );
        }
    }
}

/// A realistic Bento payload (the shape of Flexprice's sample payloads), deterministic in `i`.
pub fn realistic_payload(i: u64, org: &str, created_at: &str) -> String {
    let providers = [
        "openai",
        "anthropic",
        "deepgram",
        "11labs",
        "cartesia",
        "aws",
    ];
    let methods = ["modeling", "transcription", "synthesizer", "BEDROCK_LLM"];
    let models = [
        "gpt-4.1",
        "gpt-4o-mini",
        "nova-2",
        "eleven_turbo_v2_5",
        "claude-3-5-sonnet",
    ];
    let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let p = providers[(h % providers.len() as u64) as usize];
    let m = methods[((h >> 8) % methods.len() as u64) as usize];
    let model = models[((h >> 16) % models.len() as u64) as usize];
    let prompt = (h >> 24) % 200_000;
    let cached = prompt / 3;
    let completion = (h >> 40) % 5_000;
    let data = match (h >> 4) % 3 {
        0 => format!(
            r#"{{"modelName":"{model}","promptTokens":{prompt},"cachedPromptTokens":{cached},"completionTokens":{completion}}}"#
        ),
        1 => format!(
            r#"{{"modelName":"{model}","numCharacters":{},"channels":{}}}"#,
            completion + 1,
            (h >> 50) % 4 + 1
        ),
        _ => format!(
            r#"{{"modelName":{{"key":"modelName","value":"{model}"}},"durationMS":{{"key":"durationMS","value":{}}}}}"#,
            prompt + 1
        ),
    };
    format!(
        r#"{{"id":"evt-{i:08}-{h:016x}","orgId":"{org}","targetItemType":"call","targetItemId":"item-{h:x}","referenceType":"completion","providerName":"{p}","methodName":"{m}","createdAt":"{created_at}","updatedAt":"{created_at}","startedAt":"{created_at}","endedAt":"{created_at}","dataInterface":"MODEL_USAGE_DATA_TYPE","byok":{},"isSubscribed":false,"data":{data},"referenceCost":0.00{}}}"#,
        h.is_multiple_of(2),
        h % 997 + 1
    )
}

/// Creates database `db` afresh (dropping one of that name) with the product's tables `raw_events` and
/// `events` from `schemas/clickhouse/`, each statement first passed through `edit` (e.g. another ORDER BY).
pub async fn create_schema(admin: &clickhouse::Client, db: &str, edit: &dyn Fn(String) -> String) {
    for sql in [
        format!("DROP DATABASE IF EXISTS {db}"),
        format!("CREATE DATABASE {db}"),
    ] {
        admin
            .query(&sql)
            .execute()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas/clickhouse");
    for file in ["002_raw_events.sql", "003_events.sql"] {
        let ddl = std::fs::read_to_string(root.join(file))
            .unwrap()
            .replace("flexprice.", &format!("{db}."));
        let ddl: String = edit(ddl)
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n");
        admin
            .query(&ddl)
            .execute()
            .await
            .unwrap_or_else(|e| panic!("create table from {file}: {e}"));
    }
}

/// A `reprocess` command for `job` over tenant `tenant`, environment `e1`, the `days` days from `T0`, with
/// `extra` (`,"field":value,…`) appended to its members.
pub fn reprocess_command(job: &str, tenant: &str, days: i64, extra: &str) -> String {
    format!(
        r#"{{"type":"reprocess","job_id":"{job}","tenant_id":"{tenant}","environment_id":"e1","start_date":"{}","end_date":"{}"{extra}}}"#,
        rfc3339(super::T0),
        rfc3339(super::T0 + days * super::DAY)
    )
}

/// Formats UTC milliseconds as RFC 3339 with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    raw_events_reprocessor::command::format_ms(ms)
}

/// `n` realistic rows of one tenant/environment, spread evenly over `span_ms` from `start_ms` in shuffled
/// order, over 40 customers.
pub fn realistic_rows(
    tenant: &str,
    env: &str,
    n: u64,
    start_ms: i64,
    span_ms: i64,
) -> Vec<InsertRow> {
    (0..n)
        .map(|i| {
            // A shuffle of the rows over the whole span, whatever `n`.
            let ts = start_ms + ((i * 7_919) % n) as i64 * span_ms / n as i64;
            let payload = realistic_payload(i, &format!("org-{}", i % 40), &rfc3339(ts));
            InsertRow::new(
                &format!("row-{i:07}"),
                tenant,
                env,
                &format!("cust-{}", i % 40),
                ts,
                payload.as_bytes(),
            )
        })
        .collect()
}

/// The event JSON each row must become (rows the transformation does not publish are left out).
pub fn expected_events(rows: &[InsertRow]) -> Vec<String> {
    use raw_events_reprocessor::transform::{Outcome, transform};
    rows.iter()
        .filter_map(
            |r| match transform(&r.payload, &r.tenant_id, &r.environment_id) {
                Outcome::Event(e) => Some(e.json),
                _ => None,
            },
        )
        .collect()
}

/// Asserts the output topic holds exactly `expected` (as a multiset): nothing missing, nothing twice.
pub fn assert_exactly_once(env: &Env, expected: &[String]) {
    let out = env.read_all("output");
    let mut want: HashMap<&str, i64> = HashMap::new();
    for e in expected {
        *want.entry(e.as_str()).or_default() += 1;
    }
    let mut got: HashMap<String, i64> = HashMap::new();
    for r in &out {
        *got.entry(String::from_utf8_lossy(&r.value).into_owned())
            .or_default() += 1;
    }
    let missing = want
        .iter()
        .filter(|(k, n)| got.get(**k).copied().unwrap_or(0) < **n)
        .count();
    let extra = got
        .iter()
        .filter(|(k, n)| want.get(k.as_str()).copied().unwrap_or(0) < **n)
        .count();
    assert!(
        missing == 0 && extra == 0 && out.len() == expected.len(),
        "output has {} records for {} expected events: {missing} events missing, {extra} events duplicated or unexpected",
        out.len(),
        expected.len()
    );
}

/// `GET path` of the daemon's HTTP endpoint on loopback `port`: (status code, body).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    try_http_get(port, path).expect("GET from the daemon's HTTP endpoint")
}

/// Like [`http_get`], with an error when the endpoint does not answer (e.g. the daemon is starting).
pub fn try_http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    Ok((code, body))
}

/// A final result's row counters, in SPEC §6's order: found, published, dropped, transformation errors,
/// failed, sampled out.
pub const COUNTERS: [&str; 6] = [
    "total_events_found",
    "total_events_published",
    "total_events_dropped",
    "total_transformation_errors",
    "total_events_failed",
    "total_events_sampled_out",
];

/// The [`COUNTERS`] of a result record (-1 for one missing).
pub fn counters(v: &Value) -> [i64; 6] {
    COUNTERS.map(|k| v[k].as_i64().unwrap_or(-1))
}
