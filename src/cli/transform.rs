//! `reprocessor transform [--input FILE]`: runs the transformation on JSON
//! lines (`tenant_id`, `environment_id`, `payload`; other members ignored, so
//! the vector file can be piped as is) and writes one JSON line per input line:
//!
//! * `{"outcome":"event","event":"<event JSON text>"}`
//! * `{"outcome":"dropped","reason":"<code>"}`
//! * `{"outcome":"error","stage":"decode|timestamp|encode","message":"<text>"}`
//! * `{"outcome":"invalid_input","message":"<text>"}` for a line that is not
//!   such an object (the tool goes on).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use anyhow::Context as _;
use serde::Deserialize;
use serde_json::json;

use crate::transform::{Outcome, transform};

#[derive(Deserialize)]
struct Line {
    tenant_id: String,
    environment_id: String,
    payload: String,
}

/// Reads JSON lines from `input` (stdin when `None`) and writes one result
/// line per input line to `out`, in order. Fails only on I/O errors.
pub fn run(input: Option<&Path>, out: &mut impl Write) -> anyhow::Result<()> {
    let reader: Box<dyn BufRead> = match input {
        Some(p) => Box::new(BufReader::new(
            std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?,
        )),
        None => Box::new(BufReader::new(std::io::stdin().lock())),
    };
    process(reader, out)
}

fn process(mut reader: impl BufRead, out: &mut impl Write) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if reader
            .read_until(b'\n', &mut buf)
            .context("reading input")?
            == 0
        {
            break;
        }
        let mut line = buf.as_slice();
        while let Some((&last, rest)) = line.split_last() {
            if last == b'\n' || last == b'\r' {
                line = rest;
            } else {
                break;
            }
        }
        let value = match serde_json::from_slice::<Line>(line) {
            Ok(l) => match transform(l.payload.as_bytes(), &l.tenant_id, &l.environment_id) {
                Outcome::Event(e) => json!({"outcome": "event", "event": e.json}),
                Outcome::Dropped(r) => json!({"outcome": "dropped", "reason": r.code()}),
                Outcome::Error(e) => {
                    json!({"outcome": "error", "stage": e.stage.code(), "message": e.message})
                }
            },
            Err(e) => json!({"outcome": "invalid_input", "message": e.to_string()}),
        };
        serde_json::to_writer(&mut *out, &value).context("writing output")?;
        out.write_all(b"\n").context("writing output")?;
    }
    out.flush().context("writing output")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let input = concat!(
            r#"{"name":"x","tenant_id":"t","environment_id":"e","payload":"null"}"#,
            "\n",
            "not json\n",
            r#"{"tenant_id":"t","environment_id":"e","payload":"[]"}"#,
            "\n",
        );
        let mut out = Vec::new();
        process(input.as_bytes(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[0],
            r#"{"outcome":"dropped","reason":"missing_org_id"}"#
        );
        assert!(lines[1].starts_with(r#"{"message":"#) && lines[1].contains("invalid_input"));
        assert!(lines[2].contains(r#""stage":"decode""#));
    }
}
