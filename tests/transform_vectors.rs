//! Golden vectors of the reference implementation (see
//! `tests/fixtures/transform_reference.jsonl`, a copy of the shared vectors).

use raw_events_reprocessor::transform::{ErrorStage, Outcome, transform};
use serde_json::Value;

const VECTORS: &str = include_str!("fixtures/transform_reference.jsonl");

fn check(case: &Value) -> Result<(), String> {
    let payload = case["payload"].as_str().ok_or("payload")?;
    let tenant = case["tenant_id"].as_str().ok_or("tenant_id")?;
    let env = case["environment_id"].as_str().ok_or("environment_id")?;
    let expect = &case["expect"];
    let outcome = expect["outcome"].as_str().ok_or("outcome")?;
    let got = transform(payload.as_bytes(), tenant, env);
    match (outcome, &got) {
        ("event", Outcome::Event(e)) => {
            let want = expect
                .get("event_product")
                .and_then(Value::as_str)
                .or_else(|| expect["event"].as_str())
                .ok_or("event")?;
            if e.json != want {
                return Err(format!("event differs\n  want {want}\n  got  {}", e.json));
            }
            let parsed: Value = serde_json::from_str(&e.json).map_err(|x| x.to_string())?;
            if parsed["id"] != e.id.as_str()
                || parsed["timestamp"] != e.timestamp.as_str()
                || parsed["event_name"] != e.event_name.as_str()
                || parsed["external_customer_id"] != e.external_customer_id.as_str()
            {
                return Err("event fields differ from the JSON".into());
            }
            Ok(())
        }
        ("dropped", Outcome::Dropped(_)) => Ok(()),
        ("error", Outcome::Error(err)) => {
            let want = match expect["hint"].as_str() {
                Some("Failed to parse Bento payload") => ErrorStage::Decode,
                Some("Failed to parse createdAt timestamp") => ErrorStage::Timestamp,
                h => return Err(format!("unknown hint {h:?}")),
            };
            if err.stage != want {
                return Err(format!(
                    "stage {:?}, want {want:?} ({})",
                    err.stage, err.message
                ));
            }
            Ok(())
        }
        ("marshal_error", Outcome::Error(err)) if err.stage == ErrorStage::Encode => Ok(()),
        _ => Err(format!("outcome {outcome} expected, got {got:?}")),
    }
}

#[test]
fn all_reference_vectors() {
    let mut failures = Vec::new();
    let mut n = 0;
    for line in VECTORS.lines().filter(|l| !l.trim().is_empty()) {
        n += 1;
        let case: Value = serde_json::from_str(line).expect("vector line");
        let name = case["name"].as_str().unwrap_or("?").to_string();
        if let Err(e) = check(&case) {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(n >= 847, "only {n} vectors");
    assert!(
        failures.is_empty(),
        "{} of {n} vectors failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
