//! docker/compose.yaml, scripts/services.sh and config/default.toml must agree: the five topics (names,
//! partitions, replication, retention, max.message.bytes, the compacted state topic) and the ports. The
//! containers stop within a grace longer than the daemon's and check `/readyz`; the example configurations
//! (docker/sasl_ssl.toml, the ConfigMap of deploy/kubernetes.yaml) use real keys and read their secrets from
//! the files that are mounted; the image carries every library the binary links. Prometheus scrapes the
//! daemon's metrics port, Grafana reads that Prometheus and loads the dashboards of docker/grafana/dashboards/,
//! whose queries name only metrics the daemon exports (rendered from `Metrics`) and every one of them.
//!
//! compose.yaml is parsed by line matching, which is enough for this file's fixed layout: one
//! `create <topic> -p N -r N -c key=value ...` line per topic in the `create-topics` job, and quoted
//! `"host:port:port"` entries under `ports:`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use raw_events_reprocessor::config::Config;
use raw_events_reprocessor::metrics::Metrics;
use serde_json::Value;

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
        .unwrap_or_else(|| {
            panic!("no `{key}:` line (compose.yaml, docker/prometheus.yml, docker/grafana/)")
        })
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
    assert!(dockerfile.contains("cmake libcurl4-openssl-dev libssl-dev libsasl2-dev pkg-config"));
    assert!(dockerfile.contains("COPY config/default.toml /app/config/default.toml"));
    assert!(dockerfile.contains("ENTRYPOINT [\"/usr/local/bin/reprocessor\"]"));
}

/// A compose duration such as `45s` or `1m30s`.
fn duration(text: &str) -> std::time::Duration {
    humantime::parse_duration(text.trim().trim_matches('"'))
        .unwrap_or_else(|e| panic!("not a duration: {text}: {e}"))
}

/// The daemon's services: the default one and the `sasl` profile's.
const DAEMON_SERVICES: [&str; 2] = ["reprocessor", "reprocessor-sasl"];

#[test]
fn compose_daemons_stop_gracefully_and_report_readiness() {
    let config = config();
    let compose = read("docker/compose.yaml");
    for name in DAEMON_SERVICES {
        let lines = service(&compose, name);
        let grace = duration(env_value(&lines, "stop_grace_period"));
        assert!(
            grace.as_secs() > config.processing.shutdown_grace_secs,
            "{name}: stop_grace_period {grace:?} must exceed processing.shutdown_grace_secs = {}",
            config.processing.shutdown_grace_secs
        );
        let test = env_value(&lines, "test");
        assert!(
            test.contains("\"/usr/local/bin/reprocessor\", \"health\""),
            "{name}: the health check runs `reprocessor health` (GET /readyz): {test}"
        );
    }
    // One Redpanda version for the broker and the topic job.
    let images: std::collections::BTreeSet<&str> = compose
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("image: docker.redpanda.com/redpandadata/redpanda:")
        })
        .collect();
    assert_eq!(images.len(), 1, "Redpanda tags: {images:?}");
}

/// The secret files a configuration reads: `kafka.property_files` and `clickhouse.password_file` (at least
/// the SASL user, its password and ClickHouse's password in the examples).
fn secret_files(config: &Config) -> Vec<&std::path::Path> {
    let mut files: Vec<&std::path::Path> = config
        .kafka
        .property_files
        .values()
        .map(|p| p.as_path())
        .collect();
    files.extend(config.clickhouse.password_file.as_deref());
    assert!(files.len() >= 3, "{files:?}");
    files
}

/// `text` as a configuration (every key must be a real one; secret files are not read).
fn parse_config(what: &str, text: &str) -> Config {
    toml::from_str(text).unwrap_or_else(|e| panic!("{what} is not a valid configuration: {e}"))
}

#[test]
fn compose_sasl_profile_reads_its_secrets_from_the_mounted_files() {
    let compose = read("docker/compose.yaml");
    let example = parse_config("docker/sasl_ssl.toml", &read("docker/sasl_ssl.toml"));
    let lines = service(&compose, "reprocessor-sasl");
    assert_eq!(
        env_value(&lines, "REPROCESSOR_CONFIG"),
        "/app/config/sasl_ssl.toml"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.trim() == "- ./sasl_ssl.toml:/app/config/sasl_ssl.toml:ro"),
        "reprocessor-sasl must mount docker/sasl_ssl.toml"
    );
    assert_eq!(
        example
            .kafka
            .properties
            .get("security.protocol")
            .map(String::as_str),
        Some("SASL_SSL")
    );
    for file in secret_files(&example) {
        let secret = file
            .strip_prefix("/run/secrets/")
            .unwrap_or_else(|_| panic!("{} is not a compose secret", file.display()))
            .to_str()
            .unwrap();
        assert!(
            lines.iter().any(|l| l.trim() == format!("- {secret}")),
            "reprocessor-sasl does not mount the secret {secret}"
        );
        assert!(
            compose.contains(&format!("\n  {secret}:\n    environment: ")),
            "secret {secret} is not declared"
        );
    }
}

#[test]
fn kubernetes_example_matches_the_configuration() {
    let manifest = read("deploy/kubernetes.yaml");
    // The configuration embedded in the ConfigMap (the block under `config.toml: |`).
    let embedded: String = manifest
        .lines()
        .skip_while(|l| l.trim() != "config.toml: |")
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    let config = parse_config("the ConfigMap's config.toml", &embedded);
    let value = |key: &str| -> &str {
        manifest
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{key}:")))
            .map(|v| v.trim().trim_matches('"'))
            .unwrap_or_else(|| panic!("{key} missing in deploy/kubernetes.yaml"))
    };
    let grace: u64 = value("terminationGracePeriodSeconds").parse().unwrap();
    assert!(
        grace > config.processing.shutdown_grace_secs,
        "terminationGracePeriodSeconds {grace} must exceed processing.shutdown_grace_secs"
    );
    assert_eq!(
        value("containerPort").parse::<u16>().unwrap(),
        port_of(&config.observability.metrics_address)
    );
    assert!(config.observability.metrics_address.starts_with("0.0.0.0:"));
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let body: Vec<&str> = manifest
            .lines()
            .skip_while(|l| l.trim() != format!("{probe}:"))
            .take(4)
            .collect();
        assert!(
            body.iter().any(|l| l.trim() == format!("path: {path}")),
            "{probe} must GET {path}: {body:?}"
        );
    }
    assert!(
        manifest.contains("value: /etc/reprocessor/config.toml")
            && manifest.contains("mountPath: /etc/reprocessor\n"),
        "REPROCESSOR_CONFIG names the mounted ConfigMap"
    );
    // Every secret file is a key of the Secret, mounted under its mount path.
    let mount = "/run/secrets/reprocessor/";
    assert!(manifest.contains(&format!("mountPath: {}\n", mount.trim_end_matches('/'))));
    for file in secret_files(&config) {
        let key = file
            .to_str()
            .unwrap()
            .strip_prefix(mount)
            .unwrap_or_else(|| panic!("{} is not under {mount}", file.display()));
        assert!(
            manifest.contains(&format!("\n  {key}: ")),
            "the Secret has no key {key}"
        );
    }
}

/// The runtime image installs the Debian package of every shared library the binary links, beyond those of
/// the base image (debian:bookworm-slim has libc6, libgcc-s1 and zlib1g).
#[test]
fn the_image_carries_what_the_binary_links() {
    let binary = env!("CARGO_BIN_EXE_reprocessor");
    let out = std::process::Command::new("readelf")
        .args(["-d", binary])
        .output()
        .expect("run readelf (binutils)");
    assert!(out.status.success(), "readelf -d {binary} failed");
    let needed: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| Some(l.split('[').nth(1)?.trim_end_matches(']').to_string()))
        .collect();
    assert!(needed.iter().any(|l| l.starts_with("libssl")), "{needed:?}");
    assert!(
        needed.iter().any(|l| l.starts_with("libsasl2")),
        "{needed:?}"
    );
    let dockerfile = read("docker/Dockerfile");
    let runtime = dockerfile
        .split("FROM debian:bookworm-slim")
        .nth(1)
        .expect("the runtime stage");
    let installed: Vec<&str> = runtime
        .lines()
        .find(|l| l.contains("apt-get install"))
        .expect("apt-get install in the runtime stage")
        .split_whitespace()
        .collect();
    assert!(installed.contains(&"ca-certificates"));
    const BASE: [&str; 3] = ["libc6", "libgcc-s1", "zlib1g"];
    for lib in needed {
        let out = std::process::Command::new("dpkg-query")
            .args(["-S", &format!("*/{lib}")])
            .output()
            .expect("run dpkg-query");
        let owner = String::from_utf8_lossy(&out.stdout);
        let package = owner
            .lines()
            .next()
            .and_then(|l| l.split(':').next())
            .unwrap_or_else(|| panic!("no Debian package owns {lib}"))
            .to_string();
        assert!(
            BASE.contains(&package.as_str()) || installed.contains(&package.as_str()),
            "the binary links {lib} (package {package}), which the runtime image does not install"
        );
    }
}

/// The value of the first `key: value` line of a YAML file laid out one key per line.
fn yaml_value<'a>(text: &'a str, key: &str) -> &'a str {
    env_value(&text.lines().collect::<Vec<_>>(), key)
}

/// The container path a service mounts `source` at (`- source:target[:ro]`).
fn mount_target<'a>(lines: &[&'a str], source: &str) -> &'a str {
    let prefix = format!("- {source}:");
    lines
        .iter()
        .find_map(|l| l.trim().strip_prefix(prefix.as_str()))
        .map(|t| t.trim_end_matches(":ro"))
        .unwrap_or_else(|| panic!("{source} is not mounted: {lines:#?}"))
}

#[test]
fn compose_prometheus_scrapes_the_daemon_and_grafana_shows_it() {
    let config = config();
    let compose = read("docker/compose.yaml");
    let metrics_port = port_of(&config.observability.metrics_address);

    // Prometheus reads docker/prometheus.yml and scrapes the daemon's service on its metrics port.
    let prometheus = service(&compose, "prometheus");
    let file = mount_target(&prometheus, "./prometheus.yml");
    assert!(
        prometheus
            .iter()
            .any(|l| l.trim() == format!("- --config.file={file}")),
        "prometheus must be started with --config.file={file}"
    );
    let scrape = read("docker/prometheus.yml");
    assert_eq!(yaml_value(&scrape, "metrics_path"), "/metrics");
    let targets = yaml_value(&scrape, "- targets");
    assert_eq!(targets, format!("[\"reprocessor:{metrics_port}\"]"));
    service(&compose, "reprocessor");
    let (_, _, prometheus_port) = *published(&prometheus)
        .first()
        .expect("prometheus publishes its port");

    // Grafana's data source is that Prometheus, with its scrape interval (for $__rate_interval).
    let grafana = service(&compose, "grafana");
    assert_eq!(
        mount_target(&grafana, "./grafana/provisioning"),
        "/etc/grafana/provisioning"
    );
    let datasource = read("docker/grafana/provisioning/datasources/prometheus.yaml");
    assert_eq!(yaml_value(&datasource, "type"), "prometheus");
    assert_eq!(
        yaml_value(&datasource, "url"),
        format!("http://prometheus:{prometheus_port}")
    );
    assert_eq!(
        yaml_value(&datasource, "timeInterval"),
        yaml_value(&scrape, "scrape_interval")
    );

    // The dashboards' folder is mounted where the provider looks, and the home dashboard is one of them.
    let dashboards = mount_target(&grafana, "./grafana/dashboards");
    let provider = read("docker/grafana/provisioning/dashboards/reprocessor.yaml");
    assert_eq!(yaml_value(&provider, "path"), dashboards);
    let home = env_value(&grafana, "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH");
    let home = home
        .strip_prefix(&format!("{dashboards}/"))
        .unwrap_or_else(|| panic!("the home dashboard {home} is not under {dashboards}"));
    assert!(
        dashboard_files().iter().any(|f| f.ends_with(home)),
        "{home}"
    );
}

/// The dashboards shipped for Grafana.
fn dashboard_files() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/grafana/dashboards");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no dashboard in {}", dir.display());
    files
}

/// The series names the daemon exports (as PromQL sees them: counters with `_total`, histograms with
/// `_bucket`, `_sum`, `_count`, info with `_info`), by metric family, from the `# TYPE` lines of a rendered
/// [`Metrics`] with one job reading (a family without series is not rendered).
fn exported() -> BTreeMap<String, Vec<String>> {
    let metrics = std::sync::Arc::new(Metrics::new());
    let job = metrics.job_series("j");
    job.set(1, Some(2));
    let text = metrics.render();
    let families: BTreeMap<String, Vec<String>> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').expect("# TYPE name type");
            let series = match kind {
                "counter" => vec![format!("{name}_total")],
                "histogram" => ["bucket", "sum", "count"]
                    .map(|s| format!("{name}_{s}"))
                    .to_vec(),
                "info" => vec![format!("{name}_info")],
                _ => vec![name.to_string()],
            };
            (name.to_string(), series)
        })
        .collect();
    assert!(families.len() >= 12, "{text}");
    families
}

/// Labels Prometheus adds to every scraped series (not the daemon's).
const TARGET_LABELS: [&str; 2] = ["instance", "job"];

/// Every label of every series the daemon exports, with the values it exports (a job's series for one job):
/// series name → label → values.
fn exported_labels() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let metrics = std::sync::Arc::new(Metrics::new());
    let job = metrics.job_series("j");
    job.set(1, Some(2));
    let mut out: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for line in metrics.render().lines().filter(|l| !l.starts_with('#')) {
        let Some((name, rest)) = line.split_once('{') else {
            if let Some((name, _)) = line.split_once(' ') {
                out.entry(name.to_string()).or_default();
            }
            continue;
        };
        let labels = out.entry(name.to_string()).or_default();
        let inside = &rest[..rest.find('}').expect("closing brace")];
        for pair in inside.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').expect("label=value");
            labels
                .entry(k.to_string())
                .or_default()
                .insert(v.trim_matches('"').to_string());
        }
    }
    out
}

/// The label matchers of each `reprocessor_…{…}` selector of a PromQL expression: (series, label, operator,
/// value).
fn matchers(expr: &str) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for name in metric_names(expr) {
        let mut rest = expr;
        while let Some(i) = rest.find(&format!("{name}{{")) {
            let tail = &rest[i + name.len() + 1..];
            let inside = &tail[..tail.find('}').expect("closing brace of a selector")];
            for m in inside.split(',').map(str::trim).filter(|m| !m.is_empty()) {
                let at = m.find(['=', '!']).expect("a label matcher");
                let (label, op_value) = m.split_at(at);
                let op_len = if op_value.starts_with("=~")
                    || op_value.starts_with("!~")
                    || op_value.starts_with("!=")
                {
                    2
                } else {
                    1
                };
                let (op, value) = op_value.split_at(op_len);
                out.push((
                    name.clone(),
                    label.trim().to_string(),
                    op.to_string(),
                    value
                        .trim()
                        .trim_matches(|c| c == '"' || c == '\\')
                        .to_string(),
                ));
            }
            rest = &tail[inside.len()..];
        }
    }
    out
}

/// The labels of the `by (…)` / `without (…)` clauses of a PromQL expression.
fn grouping_labels(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    for kw in ["by (", "without ("] {
        let mut rest = expr;
        while let Some(i) = rest.find(kw) {
            let tail = &rest[i + kw.len()..];
            let inside = &tail[..tail.find(')').expect("closing parenthesis")];
            out.extend(inside.split(',').map(|l| l.trim().to_string()));
            rest = tail;
        }
    }
    out
}

/// The metric names (`reprocessor_[a-z_]+`) in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("reprocessor_") {
        let before = rest[..i].chars().next_back();
        let tail = &rest[i..];
        let len = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            names.push(tail[..len].to_string());
        }
        rest = &tail[len..];
    }
    names
}

/// Every query of a dashboard: panel targets' `expr` and template variables' `query`/`definition` strings.
fn queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "definition", Value::String(q)) => out.push(q.clone()),
                    ("query", Value::String(q)) if q.contains('(') => out.push(q.clone()),
                    _ => queries(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| queries(v, out)),
        _ => {}
    }
}

#[test]
fn dashboard_queries_use_only_exported_metrics_and_all_of_them() {
    let families = exported();
    let series: BTreeMap<&str, &str> = families
        .iter()
        .flat_map(|(f, names)| names.iter().map(move |n| (n.as_str(), f.as_str())))
        .collect();
    assert!(series.contains_key("reprocessor_events_total"));
    assert!(series.contains_key("reprocessor_batch_duration_seconds_bucket"));
    for file in dashboard_files() {
        let what = file.display().to_string();
        let text = std::fs::read_to_string(&file).unwrap();
        let dashboard: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what} is not JSON: {e}"));
        assert!(
            dashboard["uid"].is_string() && dashboard["title"].is_string(),
            "{what}"
        );
        let mut exprs = Vec::new();
        queries(&dashboard, &mut exprs);
        assert!(exprs.len() >= 10, "{what}: only {} queries", exprs.len());
        let mut used = BTreeSet::new();
        for expr in &exprs {
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{what}: a query names no metric: {expr}");
            for name in names {
                let family = series.get(name.as_str()).unwrap_or_else(|| {
                    panic!("{what}: {name} is not exported by the daemon (in {expr})")
                });
                used.insert(*family);
            }
        }
        let unused: Vec<&String> = families
            .keys()
            .filter(|f| !used.contains(f.as_str()))
            .collect();
        assert!(unused.is_empty(), "{what} shows nothing of {unused:?}");
        // Label matchers and groupings name labels the series have, and `=`/`!=` values they take.
        let labels = exported_labels();
        for expr in &exprs {
            for (name, label, op, value) in matchers(expr) {
                if TARGET_LABELS.contains(&label.as_str()) {
                    continue;
                }
                let values = labels[&name]
                    .get(&label)
                    .unwrap_or_else(|| panic!("{what}: {name} has no label `{label}` (in {expr})"));
                if (op == "=" || op == "!=") && label != "job_id" {
                    assert!(
                        values.contains(&value),
                        "{what}: {name}{{{label}}} is never {value:?}, only {values:?} (in {expr})"
                    );
                }
            }
            let named = metric_names(expr);
            for label in grouping_labels(expr) {
                assert!(
                    TARGET_LABELS.contains(&label.as_str())
                        || named.iter().any(|n| labels[n].contains_key(&label)),
                    "{what}: no series of {named:?} has the label `{label}` it groups by (in {expr})"
                );
            }
        }
        // Every panel queries the dashboard's Prometheus data source variable.
        let variables = dashboard["templating"]["list"]
            .as_array()
            .expect("variables");
        assert!(
            variables.iter().any(|v| v["name"] == "datasource"
                && v["type"] == "datasource"
                && v["query"] == "prometheus"),
            "{what}: no `datasource` variable of Prometheus data sources"
        );
        for panel in dashboard["panels"].as_array().expect("panels") {
            if panel["type"] == "row" {
                continue;
            }
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{what}: panel {}",
                panel["title"]
            );
        }
    }
}

#[test]
fn matchers_and_groupings_are_found_in_expressions() {
    let expr = r#"sum by (status) (reprocessor_jobs{instance=~"$instance",status="running"}) - sum without (le, kind) (reprocessor_job_rows{kind!="done"})"#;
    assert_eq!(
        matchers(expr),
        [
            ("reprocessor_jobs", "instance", "=~", "$instance"),
            ("reprocessor_jobs", "status", "=", "running"),
            ("reprocessor_job_rows", "kind", "!=", "done"),
        ]
        .map(|(n, l, o, v)| (n.to_string(), l.to_string(), o.to_string(), v.to_string()))
    );
    assert_eq!(grouping_labels(expr), ["status", "le", "kind"]);
    let labels = exported_labels();
    assert!(labels["reprocessor_jobs"]["status"].contains("running"));
    assert!(!labels["reprocessor_jobs"].contains_key("kind"));
}

#[test]
fn metric_names_are_found_in_expressions() {
    assert_eq!(
        metric_names(
            "histogram_quantile(0.9, sum by (le) (rate(reprocessor_batch_duration_seconds_bucket[5m]))) / xreprocessor_no + reprocessor_jobs{status=\"running\"}"
        ),
        [
            "reprocessor_batch_duration_seconds_bucket",
            "reprocessor_jobs"
        ]
    );
}

/// The compose daemon serves the HTTP API on a published port with an example key for the demo's tenant; the
/// settings load as configuration, and the configured hash is the SHA-256 of the key the comment and the
/// README use.
#[test]
fn compose_serves_the_api_with_an_example_key() {
    use sha2::Digest;
    let compose = read("docker/compose.yaml");
    let reprocessor = service(&compose, "reprocessor");
    let vars: Vec<(String, String)> = ["REPROCESSOR_API__ADDRESS", "REPROCESSOR_API__KEYS"]
        .iter()
        .map(|k| {
            let value = env_value(&reprocessor, k).trim_matches('\'');
            (k.to_string(), value.to_string())
        })
        .collect();
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml");
    let config = Config::load_from(Some(&file), vars).expect("compose's API settings load");
    let address = config.api.address.as_deref().expect("api.address is set");
    assert!(address.starts_with("0.0.0.0:"), "{address}");
    let port = port_of(address);
    assert!(
        published(&reprocessor)
            .iter()
            .any(|(_, host, container)| *host == port && *container == port),
        "reprocessor must publish the API port {port}"
    );
    let key = "demo-api-key-change-me";
    let [example] = config.api.keys.as_slice() else {
        panic!("one example key: {:?}", config.api.keys);
    };
    assert_eq!(example.sha256, hex::encode(sha2::Sha256::digest(key)));
    assert_eq!(
        (example.tenant_id.as_str(), example.environments.as_slice()),
        ("demo_tenant", ["demo_env".to_string()].as_slice()),
        "the demo's tenant (scripts/demo.sh)"
    );
    assert!(compose.contains(&format!("x-api-key: {key}")));
    assert!(
        read("README.md").contains(key),
        "README shows the example key"
    );
}
