//! Robustness of the transformation: no panic and a clean outcome for any
//! input bytes (random bytes, mutated vector payloads, deep nesting, huge
//! numbers, long strings, invalid UTF-8 and escapes). More than 20,000
//! generated payloads in total.

use proptest::prelude::*;
use raw_events_reprocessor::transform::{Outcome, transform};
use serde_json::Value;

const VECTORS: &str = include_str!("fixtures/transform_reference.jsonl");

fn payloads() -> &'static [Vec<u8>] {
    static CACHE: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    CACHE.get_or_init(|| {
        VECTORS
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v["payload"].as_str().map(|s| s.as_bytes().to_vec()))
            .collect()
    })
}

/// Asserts the outcome is well formed.
fn check_clean(payload: &[u8]) {
    match transform(payload, "tenant_test", "env_test") {
        Outcome::Event(e) => {
            let v: Value = serde_json::from_str(&e.json).expect("event JSON must be valid JSON");
            assert_eq!(v["id"], e.id.as_str());
            assert_eq!(v["timestamp"], e.timestamp.as_str());
            assert!(!e.external_customer_id.is_empty());
            assert!(
                v["properties"]
                    .as_object()
                    .unwrap()
                    .values()
                    .all(Value::is_string)
            );
        }
        Outcome::Dropped(r) => assert!(!r.code().is_empty()),
        Outcome::Error(e) => assert!(!e.message.is_empty() && !e.stage.code().is_empty()),
    }
}

const INTERESTING: &[&[u8]] = &[
    b"\"",
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"\xff",
    b"\xe2\x80",
    b"\xed\xa0\x80",
    b"\\ud800",
    b"\\udc00\\ud800",
    b"null",
    b"1e309",
    b"-0",
    b"1e-400",
    b".",
    b"e",
    b"\t",
    b"\xef\xbb\xbf",
    b"\x00",
    b"\\u00",
    b"\\u2028",
    b"99999999999999999999999",
];

#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize),
    Insert(usize, usize),
    Replace(usize, u8),
    Duplicate(usize, usize, usize),
}

fn apply(mut p: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        if p.is_empty() {
            break;
        }
        let n = p.len();
        match *m {
            Mutation::Delete(i) => {
                p.remove(i % n);
            }
            Mutation::Insert(i, k) => {
                let ins = INTERESTING[k % INTERESTING.len()];
                let at = i % (n + 1);
                p.splice(at..at, ins.iter().copied());
            }
            Mutation::Replace(i, b) => p[i % n] = b,
            Mutation::Duplicate(i, j, len) => {
                let from = j % n;
                let seg: Vec<u8> = p[from..(from + len % 32).min(n)].to_vec();
                let at = i % (n + 1);
                p.splice(at..at, seg);
            }
        }
    }
    p
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Delete),
        (any::<usize>(), any::<usize>()).prop_map(|(i, k)| Mutation::Insert(i, k)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Replace(i, b)),
        (any::<usize>(), any::<usize>(), any::<usize>())
            .prop_map(|(i, j, l)| Mutation::Duplicate(i, j, l)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8000, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn random_bytes(p in proptest::collection::vec(any::<u8>(), 0..512)) {
        check_clean(&p);
    }

    #[test]
    fn mutated_vectors(idx in any::<usize>(), muts in proptest::collection::vec(mutation(), 1..6)) {
        let all = payloads();
        let base = all[idx % all.len()].clone();
        check_clean(&apply(base, &muts));
    }

    #[test]
    fn structured(
        key in "[a-zA-Z\u{212A}\u{17F}]{1,14}",
        s in "\\PC{0,40}",
        num in "-?[0-9]{1,30}(\\.[0-9]{0,20})?([eE][+-]?[0-9]{1,4})?",
        ts in "[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}[Tt ][0-9]{1,2}:[0-9]{2}:[0-9]{2}([.,][0-9]{0,12})?(Z|[+-][0-9]{2}:?[0-9]{2})?",
    ) {
        let p = format!(
            r#"{{"orgId":"o","methodName":"m","providerName":{s:?},"id":"i","createdAt":{ts:?},"{key}":{num},"data":{{"promptTokens":{num},"cachedPromptTokens":{s:?},"numCharacters":{num},"channels":{s:?},"modelName":{{"value":[{num},{s:?}]}},"{key}":{s:?}}},"byok":{num},"referenceCost":{{"{key}":{num}}}}}"#
        );
        check_clean(p.as_bytes());
    }
}

#[test]
fn deep_nesting_does_not_overflow() {
    for prefix in [
        "",
        "{\"data\":{\"x\":",
        "{\"unknown\":",
        "{\"byok\":",
        "{\"data\":{\"modelName\":{\"value\":",
    ] {
        for open in ["[", "{\"a\":"] {
            let p = format!("{prefix}{}", open.repeat(100_000));
            assert!(matches!(
                transform(p.as_bytes(), "t", "e"),
                Outcome::Error(_)
            ));
        }
    }
    // 9,998 levels inside the top-level object and data (Go's limit is 10,000) are fine.
    let inner = format!("{}{}", "[".repeat(9_998), "]".repeat(9_998));
    let p = format!(
        r#"{{"orgId":"o","methodName":"m","providerName":"p","id":"i","createdAt":"2026-01-01T00:00:00Z","data":{{"x":{inner}}}}}"#
    );
    // data = depth 2, so the arrays reach 10,000.
    check_clean(p.as_bytes());
    assert!(matches!(
        transform(p.as_bytes(), "t", "e"),
        Outcome::Event(_)
    ));
    let inner = format!("{}{}", "[".repeat(9_999), "]".repeat(9_999));
    let p = p.replace(
        &format!("{}{}", "[".repeat(9_998), "]".repeat(9_998)),
        &inner,
    );
    assert!(matches!(
        transform(p.as_bytes(), "t", "e"),
        Outcome::Error(_)
    ));
}

#[test]
fn huge_inputs() {
    let long = "x".repeat(2_000_000);
    let big = "9".repeat(100_000);
    let bad_utf8 = "\u{FFFD}".repeat(10).into_bytes();
    let cases: Vec<Vec<u8>> = vec![
        format!(r#"{{"orgId":"{long}","methodName":"m","providerName":"p","id":"i","createdAt":"2026-01-01T00:00:00Z"}}"#).into_bytes(),
        format!(r#"{{"orgId":"o","methodName":"m","providerName":"p","id":"i","createdAt":"2026-01-01T00:00:00Z","data":{{"promptTokens":{big}}}}}"#).into_bytes(),
        format!(r#"{{"orgId":"o","methodName":"m","providerName":"p","id":"i","createdAt":"2026-01-01T00:00:00Z","data":{{"promptTokens":"{big}","channels":"0x{big}p1"}}}}"#).into_bytes(),
        format!(r#"{{"x":0.{big}e-99999999999}}"#).into_bytes(),
        [&b"{\"orgId\":\"\xff\xfe\xed\xa0\x80"[..], &bad_utf8, b"\\ud800\\udc00\\udbff\",\"methodName\":\"m\",\"providerName\":\"p\",\"id\":\"i\",\"createdAt\":\"2026-01-01T00:00:00Z\"}"].concat(),
        b"\xff{}".to_vec(),
        b"{\"a\":\xff}".to_vec(),
    ];
    for c in cases {
        check_clean(&c);
    }
}
