//! Reaching clusters as production does (SPEC §10), against the local services' secure endpoints
//! (`scripts/services.sh`: Kafka SASL_SSL and mTLS listeners, ClickHouse HTTPS, one local CA): every supported
//! Kafka security setup connects; refused credentials and untrusted certificates are named clearly, fast,
//! and the secret never appears in any output. The main job over SASL_SSL and HTTPS is in
//! `daemon_end_to_end.rs` (`real_input_end_to_end_is_exact`).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::harness::Env;
use support::{Secure, clickhouse_url, kafka_bootstrap, require_services};

/// Writes a configuration file: `[kafka]` bootstrap servers and librdkafka `properties`, then `extra` TOML.
fn config_file(
    dir: &Path,
    name: &str,
    bootstrap: &str,
    properties: &[(&str, String)],
    extra: &str,
) -> PathBuf {
    let mut text = format!("[kafka]\nbootstrap_servers = {bootstrap:?}\n[kafka.properties]\n");
    for (k, v) in properties {
        text.push_str(&format!("{k:?} = {v:?}\n"));
    }
    text.push_str(extra);
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `[clickhouse]` over HTTPS trusting only the local CA.
fn https_clickhouse(secure: &Secure) -> String {
    format!(
        "[clickhouse]\nurl = {:?}\nca_file = {:?}\n",
        secure.clickhouse_https,
        secure.ca_file.display().to_string()
    )
}

/// `reprocessor --config FILE <args>` with no `REPROCESSOR_*` variables of the test's own environment.
fn reprocessor(config: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_reprocessor"));
    c.arg("--config").arg(config).args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("REPROCESSOR_") || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .output()
        .expect("run reprocessor")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn every_supported_kafka_security_setup_connects() {
    require_services();
    let secure = support::secure();
    let dir = tempfile::tempdir().unwrap();
    let ca = secure.ca_file.display().to_string();
    let password = secure.sasl_password();
    let password_file = secure.sasl_password_file.display().to_string();
    let sasl = |mechanism: &str| {
        vec![
            ("security.protocol", "SASL_SSL".to_string()),
            ("ssl.ca.location", ca.clone()),
            ("sasl.mechanisms", mechanism.to_string()),
            ("sasl.username", secure.sasl_user.clone()),
        ]
    };
    let mut scram_256 = sasl("SCRAM-SHA-256");
    scram_256.push(("sasl.password", password.clone()));
    let mut plain = sasl("PLAIN");
    plain.push(("sasl.password", password.clone()));
    let oauthbearer = vec![
        ("security.protocol", "SASL_SSL".to_string()),
        ("ssl.ca.location", ca.clone()),
        ("sasl.mechanisms", "OAUTHBEARER".to_string()),
        // The broker's default validator accepts unsecured JWTs; OIDC needs an identity provider (README).
        ("enable.sasl.oauthbearer.unsecure.jwt", "true".to_string()),
        (
            "sasl.oauthbearer.config",
            "principal=reprocessor".to_string(),
        ),
    ];
    let mtls = vec![
        ("security.protocol", "SSL".to_string()),
        ("ssl.ca.location", ca.clone()),
        (
            "ssl.certificate.location",
            secure.client_cert_file.display().to_string(),
        ),
        (
            "ssl.key.location",
            secure.client_key_file.display().to_string(),
        ),
    ];
    let https = https_clickhouse(secure);
    // SCRAM-SHA-512 with the password from a file (as a Kubernetes secret is mounted).
    let scram_512_file =
        format!("[kafka.property_files]\n\"sasl.password\" = {password_file:?}\n{https}");
    let setups = [
        (
            "scram-sha-256",
            &secure.kafka_sasl_ssl,
            scram_256,
            https.clone(),
        ),
        (
            "scram-sha-512-file",
            &secure.kafka_sasl_ssl,
            sasl("SCRAM-SHA-512"),
            scram_512_file,
        ),
        ("plain", &secure.kafka_sasl_ssl, plain, https.clone()),
        (
            "oauthbearer",
            &secure.kafka_sasl_ssl,
            oauthbearer,
            https.clone(),
        ),
        ("mtls", &secure.kafka_mtls, mtls, https.clone()),
    ];
    for (name, bootstrap, properties, extra) in setups {
        let config = config_file(
            dir.path(),
            &format!("{name}.toml"),
            bootstrap,
            &properties,
            &extra,
        );
        let out = reprocessor(&config, &["check"]);
        let shown = text(&out);
        assert!(out.status.success(), "{name}: {shown}");
        assert!(
            shown.contains(&format!("OK    kafka {bootstrap}")),
            "{name}: {shown}"
        );
        assert!(
            shown.contains(&format!("OK    clickhouse {}", secure.clickhouse_https)),
            "{name}: {shown}"
        );
        assert!(!shown.contains(&password), "{name}: the password is shown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_sasl_password_is_named_fails_readiness_and_is_never_shown() {
    let secure = support::secure();
    let mut env = Env::on("wrong_pw", secure.kafka_sasl_ssl.clone(), clickhouse_url()).await;
    let wrong = "wrong-Pa55word-4711";
    let wrong_file = env.log_dir.join("wrong-password");
    std::fs::write(&wrong_file, format!("{wrong}\n")).unwrap();
    let config = config_file(
        &env.log_dir,
        "wrong.toml",
        &secure.kafka_sasl_ssl,
        &[
            ("security.protocol", "SASL_SSL".to_string()),
            ("ssl.ca.location", secure.ca_file.display().to_string()),
            ("sasl.mechanisms", "SCRAM-SHA-512".to_string()),
            ("sasl.username", secure.sasl_user.clone()),
        ],
        &format!(
            "[kafka.property_files]\n\"sasl.password\" = {:?}\n",
            wrong_file.display().to_string()
        ),
    );
    env.extra_env
        .push(("REPROCESSOR_CONFIG".into(), config.display().to_string()));
    env.extra_env.push((
        "REPROCESSOR_KAFKA__OPERATION_TIMEOUT_MS".into(),
        "5000".into(),
    ));

    // `check`: a FAIL line naming the refused SASL login, within its own short timeout.
    let started = Instant::now();
    let out = env.cli(&["check"]);
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    assert!(
        shown.contains(&format!("FAIL  kafka {}", secure.kafka_sasl_ssl))
            && shown.contains("SASL authentication error")
            && shown.contains("SCRAM-SHA-512"),
        "{shown}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "check took {:?}",
        started.elapsed()
    );
    assert!(!shown.contains(wrong), "the password is shown: {shown}");

    // `config`: the file it read, never the password.
    let out = env.cli(&["config"]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains(&format!(
            "# read: config/default.toml, {} (REPROCESSOR_CONFIG)",
            config.display()
        )),
        "{shown}"
    );
    assert!(!shown.contains(wrong), "the password is shown: {shown}");

    // The daemon: not ready while it cannot log in, then it stops with the reason; no hang.
    let mut daemon = env.start_daemon();
    let deadline = Instant::now() + Duration::from_secs(20);
    let not_ready = loop {
        let out = env.cli(&["health"]);
        let shown = text(&out);
        if shown.contains("503") {
            assert!(!out.status.success(), "{shown}");
            break shown;
        }
        assert!(Instant::now() < deadline, "no answer from /readyz: {shown}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        not_ready.contains("\"ready\":false,\"kafka\":false"),
        "{not_ready}"
    );
    let status = daemon.wait_exit(Duration::from_secs(60));
    let log = daemon.log();
    assert!(
        status.is_some_and(|s| !s.success()),
        "the daemon should stop with an error: {status:?}\n{log}"
    );
    assert!(log.contains("SASL authentication error"), "{log}");
    assert!(!log.contains(wrong), "the password is in the daemon's log");
}

#[test]
fn https_clickhouse_with_a_certificate_of_another_ca_is_refused() {
    require_services();
    let secure = support::secure();
    let dir = tempfile::tempdir().unwrap();
    let other_ca = dir.path().join("other-ca.pem");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=another CA",
        ])
        .arg("-keyout")
        .arg(dir.path().join("other-ca.key"))
        .arg("-out")
        .arg(&other_ca)
        .output()
        .expect("run openssl (scripts/install-deps.sh installs it)");
    assert!(out.status.success(), "openssl: {}", text(&out));
    let config = config_file(
        dir.path(),
        "other.toml",
        &kafka_bootstrap(),
        &[],
        &format!(
            "[clickhouse]\nurl = {:?}\nca_file = {:?}\n",
            secure.clickhouse_https,
            other_ca.display().to_string()
        ),
    );
    let started = Instant::now();
    let out = reprocessor(&config, &["check"]);
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    assert!(
        shown.contains(&format!("FAIL  clickhouse {}", secure.clickhouse_https))
            && shown.contains("TLS failed")
            && shown.contains(&format!("clickhouse.ca_file {}", other_ca.display()))
            && shown.contains("certificate verify failed"),
        "{shown}"
    );
    // Refused at once, not retried for the retry budget.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "check took {:?}",
        started.elapsed()
    );
}
