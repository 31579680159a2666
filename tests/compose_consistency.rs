//! docker/compose.yaml, scripts/services.sh and config/default.toml must agree: the five topics (names,
//! partitions, replication, retention, max.message.bytes, the compacted state topic) and the ports.
//!
//! compose.yaml is parsed by line matching, which is enough for this file's fixed layout: one
//! `create <topic> -p N -r N -c key=value ...` line per topic in the `create-topics` job, and quoted
//! `"host:port:port"` entries under `ports:`.

use std::collections::BTreeMap;
use std::path::Path;

use raw_events_reprocessor::config::Config;

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("read {}: {e}", full.display()))
}

fn config() -> Config {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml");
    Config::load_from(Some(&file), std::iter::empty()).expect("config/default.toml loads")
}

#[derive(Debug)]
struct TopicLine {
    partitions: i64,
    replicas: i64,
    configs: BTreeMap<String, String>,
}

/// The `create <topic> ...` lines of the topic-creation job.
fn compose_topics(compose: &str) -> BTreeMap<String, TopicLine> {
    let mut topics = BTreeMap::new();
    for line in compose.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("create") {
            continue;
        }
        let name = words.next().expect("topic name after `create`").to_string();
        let mut topic = TopicLine {
            partitions: -1,
            replicas: -1,
            configs: BTreeMap::new(),
        };
        while let Some(flag) = words.next() {
            let value = words
                .next()
                .unwrap_or_else(|| panic!("flag {flag} without value: {line}"));
            match flag {
                "-p" | "--partitions" => topic.partitions = value.parse().expect("partitions"),
                "-r" | "--replicas" => topic.replicas = value.parse().expect("replicas"),
                "-c" | "--topic-config" => {
                    let (key, val) = value.split_once('=').expect("-c key=value");
                    topic.configs.insert(key.to_string(), val.to_string());
                }
                other => panic!("unexpected flag {other} in {line}"),
            }
        }
        assert!(
            topics.insert(name.clone(), topic).is_none(),
            "topic {name} created twice"
        );
    }
    topics
}

/// The body of one service (the lines indented under `  <name>:`).
fn service<'a>(compose: &'a str, name: &str) -> Vec<&'a str> {
    let header = format!("  {name}:");
    let mut lines = compose.lines().skip_while(|l| *l != header);
    assert!(
        lines.next().is_some(),
        "service {name} missing in compose.yaml"
    );
    lines
        .take_while(|l| l.is_empty() || l.starts_with("    ") || l.trim_start().starts_with('#'))
        .collect()
}

fn port_of(address: &str) -> u16 {
    let address = address.trim_end_matches('/');
    address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {address}"))
}

fn env_value<'a>(lines: &[&'a str], key: &str) -> &'a str {
    let prefix = format!("{key}:");
    lines
        .iter()
        .find_map(|l| l.trim().strip_prefix(prefix.as_str()))
        .map(|v| v.trim().trim_matches('"'))
        .unwrap_or_else(|| panic!("{key} not set in compose.yaml"))
}

fn published(lines: &[&str]) -> Vec<(String, u16, u16)> {
    lines
        .iter()
        .filter_map(|l| l.trim().strip_prefix("- \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter_map(|p| {
            let parts: Vec<&str> = p.split(':').collect();
            (parts.len() == 3).then(|| {
                (
                    parts[0].to_string(),
                    parts[1].parse().expect("host port"),
                    parts[2].parse().expect("container port"),
                )
            })
        })
        .collect()
}

#[test]
fn compose_creates_the_configured_topics() {
    let config = config();
    let compose = read("docker/compose.yaml");
    let topics = compose_topics(&compose);
    assert_eq!(
        topics.len(),
        5,
        "compose.yaml should create exactly five topics: {topics:?}"
    );
    for (key, expected) in config.topics.all() {
        let got = topics.get(&expected.name).unwrap_or_else(|| {
            panic!(
                "topics.{key} = {:?} is not created in docker/compose.yaml",
                expected.name
            )
        });
        assert_eq!(
            got.partitions,
            i64::from(expected.partitions),
            "{} partitions",
            expected.name
        );
        assert_eq!(
            got.replicas,
            i64::from(expected.replication_factor),
            "{} replicas",
            expected.name
        );
        assert_eq!(
            got.configs.get("retention.ms").map(String::as_str),
            Some(expected.retention_ms.to_string().as_str()),
            "{} retention.ms",
            expected.name
        );
        assert_eq!(
            got.configs.get("max.message.bytes").map(String::as_str),
            Some(expected.max_message_bytes.to_string().as_str()),
            "{} max.message.bytes",
            expected.name
        );
        let compacted = got.configs.get("cleanup.policy").map(String::as_str) == Some("compact");
        assert_eq!(
            compacted,
            key == "state",
            "{}: only the state topic is compacted",
            expected.name
        );
    }
}

#[test]
fn compose_ports_match_config_and_services_script() {
    let config = config();
    let compose = read("docker/compose.yaml");
    let services_sh = read("scripts/services.sh");

    // Kafka: the host reaches the broker at config's bootstrap address.
    let bootstrap = &config.kafka.bootstrap_servers;
    let kafka_port = port_of(bootstrap);
    let redpanda = service(&compose, "redpanda");
    assert!(
        redpanda
            .iter()
            .any(|l| l.contains("--advertise-kafka-addr=")
                && l.contains(&format!("external://{bootstrap}"))),
        "redpanda must advertise external://{bootstrap} to the host"
    );
    assert!(
        published(&redpanda)
            .iter()
            .any(|(_, host, _)| *host == kafka_port),
        "redpanda must publish host port {kafka_port}"
    );
    assert!(
        services_sh.contains(&format!("KAFKA_PORT=\"${{KAFKA_PORT:-{kafka_port}}}\"")),
        "scripts/services.sh must default KAFKA_PORT to {kafka_port}"
    );

    // The daemon container reaches the broker on its internal listener.
    let reprocessor = service(&compose, "reprocessor");
    let internal = env_value(&reprocessor, "REPROCESSOR_KAFKA__BOOTSTRAP_SERVERS");
    assert!(
        redpanda
            .iter()
            .any(|l| l.contains("--advertise-kafka-addr=")
                && l.contains(&format!("internal://{internal}"))),
        "REPROCESSOR_KAFKA__BOOTSTRAP_SERVERS={internal} must be redpanda's internal advertised address"
    );
    assert!(
        redpanda.iter().any(|l| l.contains("--kafka-addr=")
            && l.contains(&format!("internal://0.0.0.0:{}", port_of(internal)))),
        "redpanda must listen on the internal port {}",
        port_of(internal)
    );

    // ClickHouse HTTP.
    let url = url::Url::parse(&config.clickhouse.url).expect("clickhouse.url");
    let clickhouse_port = url.port_or_known_default().expect("clickhouse port");
    assert_eq!(clickhouse_port, 8123);
    let clickhouse = service(&compose, "clickhouse");
    assert!(
        published(&clickhouse)
            .iter()
            .any(|(_, host, container)| *host == clickhouse_port && *container == 8123),
        "clickhouse must publish host port {clickhouse_port} to 8123"
    );
    assert!(
        clickhouse
            .iter()
            .any(|l| l.contains("../schemas/clickhouse:/docker-entrypoint-initdb.d")),
        "clickhouse must run schemas/clickhouse at first start"
    );
    assert_eq!(
        env_value(&reprocessor, "REPROCESSOR_CLICKHOUSE__URL"),
        "http://clickhouse:8123"
    );
    assert!(
        services_sh.contains(&format!(
            "CLICKHOUSE_PORT=\"${{CLICKHOUSE_PORT:-{clickhouse_port}}}\""
        )),
        "scripts/services.sh must default CLICKHOUSE_PORT to {clickhouse_port}"
    );

    // Metrics: same port as the configuration, on all interfaces in the container.
    let metrics_port = port_of(&config.observability.metrics_address);
    assert_eq!(
        env_value(&reprocessor, "REPROCESSOR_OBSERVABILITY__METRICS_ADDRESS"),
        format!("0.0.0.0:{metrics_port}")
    );
    assert!(
        published(&reprocessor)
            .iter()
            .any(|(_, host, container)| *host == metrics_port && *container == metrics_port),
        "reprocessor must publish the metrics port {metrics_port}"
    );
}

#[test]
fn dockerfile_ships_binary_and_default_config() {
    let dockerfile = read("docker/Dockerfile");
    assert!(dockerfile.contains("FROM rust:1.95-bookworm AS build"));
    assert!(dockerfile.contains("FROM debian:bookworm-slim"));
    assert!(dockerfile.contains("cmake libcurl4-openssl-dev"));
    assert!(dockerfile.contains("COPY config/default.toml /app/config/default.toml"));
    assert!(dockerfile.contains("ENTRYPOINT [\"/usr/local/bin/reprocessor\"]"));
}
