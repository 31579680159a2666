//! The operator CLI's conventions (issue 15): `-b`/`-X` win over the configuration, against the real broker;
//! `--json` output is JSON lines (`watch --json` ends with the final record); exit codes of usage and
//! configuration errors; `transform`'s exit code; completions and the man page.

mod support;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::harness::{Env, realistic_rows, rfc3339};
use support::{DAY, T0};

/// A bootstrap server nothing listens on.
const NOWHERE: &str = "127.0.0.1:1";

/// Runs the binary outside any test namespace, with `vars` set (for what needs no service).
fn bare(args: &[&str], vars: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reprocessor"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .envs(vars.iter().copied())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run reprocessor")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts the exit code; returns standard output.
fn expect(out: Output, code: i32) -> String {
    assert_eq!(out.status.code(), Some(code), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// Every line of `stdout` parsed as one JSON object.
fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            assert!(v.is_object(), "{l}");
            v
        })
        .collect()
}

#[test]
fn usage_errors_exit_2_and_configuration_errors_78() {
    for args in [
        &[][..],
        &["submit", "--tenant", "t"],
        &["status", "--no-such-flag"],
        &["status", "-X", "novalue"],
        &["watch", "j", "--timeout", "soon"],
        &["transform", "-b", "127.0.0.1:9092"],
        &["peek", "output", "--job", "j", "-b", NOWHERE],
    ] {
        let out = bare(args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(!out.stderr.is_empty(), "{args:?}: clap explains");
    }
    expect(bare(&["--help"], &[]), 0);
    for (args, vars, needle) in [
        (
            &["--config", "/no/such.toml", "status"][..],
            &[][..],
            "--config",
        ),
        (
            &["status"],
            // (A name without `__` that is no key, such as Kubernetes' REPROCESSOR_PORT, is only warned about.)
            &[("REPROCESSOR_PROCESSING__NO_SUCH_KEY", "1")],
            "no_such_key",
        ),
        (
            &["status", "-X", "no.such.property=1"],
            &[],
            "-X no.such.property",
        ),
        (
            &["run", "-X", "socket.timeout.ms=soon"],
            &[],
            "-X socket.timeout.ms",
        ),
    ] {
        let out = bare(args, vars);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(78), "{args:?}: {}", text(&out));
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn transform_exits_1_only_when_every_line_failed() {
    let dir = tempfile::tempdir().unwrap();
    let run = |lines: &str| {
        let path = dir.path().join("in.jsonl");
        std::fs::write(&path, lines).unwrap();
        bare(&["transform", "--input", path.to_str().unwrap()], &[])
    };
    let dropped = r#"{"tenant_id":"t","environment_id":"e","payload":"null"}"#;
    let all_bad = run("not json\n{}\n");
    assert!(String::from_utf8_lossy(&all_bad.stderr).contains("2 of 2 lines failed"));
    assert_eq!(json_lines(&expect(all_bad, 1)).len(), 2);
    let some_bad = run(&format!("{dropped}\nnot json\n"));
    assert!(String::from_utf8_lossy(&some_bad.stderr).contains("1 of 2 lines failed"));
    expect(some_bad, 0);
}

#[test]
fn completions_and_man_page_are_generated() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = expect(bare(&["completions", shell], &[]), 0);
        for needle in ["reprocessor", "submit", "bootstrap-server"] {
            assert!(out.contains(needle), "{shell} completion lacks {needle}");
        }
    }
    let man = expect(bare(&["man"], &[]), 0);
    assert!(man.contains(".TH reprocessor 1"), "{man}");
    assert!(
        man.contains("bootstrap\\-server") && man.contains("78"),
        "{man}"
    );
    let dir = tempfile::tempdir().unwrap();
    expect(
        bare(&["man", "--dir", dir.path().to_str().unwrap()], &[]),
        0,
    );
    for page in [
        "reprocessor.1",
        "reprocessor-submit.1",
        "reprocessor-watch.1",
    ] {
        assert!(dir.path().join(page).is_file(), "{page} missing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_flags_win_over_configuration_and_json_lines_follow_jobs() {
    let env = Env::new("cli_json").await;
    let mut rows = realistic_rows("t_done", "e1", 400, T0, DAY);
    rows.extend(realistic_rows("t_slow", "e1", 3_000, T0, DAY));
    env.insert(&rows).await;
    let daemon = env.running_daemon();
    // The configured bootstrap server is wrong; -b (or -X bootstrap.servers) names the real one.
    let wrong = [
        ("REPROCESSOR_KAFKA__BOOTSTRAP_SERVERS", NOWHERE),
        ("REPROCESSOR_KAFKA__OPERATION_TIMEOUT_MS", "3000"),
    ];
    let cli = |args: &[&str]| {
        let mut all = vec!["-b", env.kafka.as_str()];
        all.extend_from_slice(args);
        env.cli_with(&all, &wrong)
    };

    let unreachable = json_lines(&expect(env.cli_with(&["check", "--json"], &wrong), 1));
    assert_eq!(unreachable[0]["dependency"], format!("kafka {NOWHERE}"));
    assert_eq!(unreachable[0]["status"], "fail", "{unreachable:?}");
    let ok = json_lines(&expect(cli(&["check", "--json"]), 0));
    assert!(ok.len() >= 7, "kafka, five topics, clickhouse: {ok:?}");
    assert!(ok.iter().all(|l| l["status"] == "ok"), "{ok:?}");
    let via_x = format!("bootstrap.servers={}", env.kafka);
    expect(env.cli_with(&["check", "-X", &via_x], &wrong), 0);

    // submit --json --watch: where the command landed, then the job's records, the final one last.
    let (start, end) = (rfc3339(T0), rfc3339(T0 + DAY));
    let range = ["--environment", "e1", "--start", &start, "--end", &end];
    let mut submit = vec!["submit", "--tenant", "t_done", "--job-id", "done-1"];
    submit.extend(range);
    submit.extend(["--batch-size", "100"]);
    let lines = json_lines(&expect(
        cli(&[&submit[..], &["--json", "--watch"]].concat()),
        0,
    ));
    assert_eq!(lines[0]["job_id"], "done-1");
    assert_eq!(lines[0]["command"], "reprocess");
    assert!(
        lines[0]["partition"].is_i64() && lines[0]["offset"].is_i64(),
        "{lines:?}"
    );
    let statuses: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.first(), Some(&"accepted"), "{statuses:?}");
    let last = lines.last().unwrap();
    assert_eq!(last["status"], "completed", "{lines:?}\n{}", daemon.log());
    assert_eq!(last["total_events_found"], 400);
    let watched = json_lines(&expect(cli(&["watch", "done-1", "--json"]), 0));
    assert_eq!(
        watched.last().unwrap(),
        last,
        "watch --json ends with the final record"
    );
    assert!(watched.iter().all(|l| l["job_id"] == "done-1"));

    // A throttled job: paused, listed, cancelled, each answer a JSON line.
    let mut slow = vec!["submit", "--tenant", "t_slow", "--job-id", "slow-1"];
    slow.extend(range);
    slow.extend([
        "--batch-size",
        "100",
        "--max-events-per-second",
        "200",
        "--json",
    ]);
    let sent = json_lines(&expect(cli(&slow), 0));
    assert_eq!(
        (sent.len(), &sent[0]["job_id"]),
        (1, &Value::from("slow-1"))
    );
    env.wait_status("slow-1", &["progress"], Duration::from_secs(60));
    let paused = json_lines(&expect(cli(&["pause", "slow-1", "--json"]), 0));
    assert_eq!(paused[0]["command"], "pause", "{paused:?}");
    assert_eq!(
        paused.get(1).map(|l| &l["status"]),
        Some(&Value::from("paused"))
    );
    let table = json_lines(&expect(cli(&["status", "--json"]), 0));
    assert_eq!(table.len(), 2, "one line per job: {table:?}");
    assert_eq!(table[0]["job_id"], "slow-1", "newest first");
    assert_eq!(table[0]["status"], "paused");
    assert!(table.iter().all(|j| j["owner_partition"].is_i64()));
    let text_table = expect(cli(&["status"]), 0);
    let owner = format!("partition {}", table[0]["owner_partition"]);
    assert!(
        text_table.contains("OWNER") && text_table.contains(&owner),
        "{text_table}"
    );
    let cancelled = json_lines(&expect(cli(&["cancel", "slow-1", "--json"]), 0));
    assert_eq!(
        cancelled.get(1).map(|l| &l["status"]),
        Some(&Value::from("cancelled"))
    );
    let watched = json_lines(&expect(cli(&["watch", "slow-1", "--json"]), 4));
    assert_eq!(watched.last().unwrap()["status"], "cancelled");
    let refused = cli(&["resume", "slow-1", "--json"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("already cancelled"));
    assert!(expect(refused, 5).is_empty(), "nothing was sent");
}
