//! `reprocessor transform [--input FILE]`: runs the transformation on JSON
//! lines (`tenant_id`, `environment_id`, `payload`; other members ignored, so
//! the vector file can be piped as is) and writes one JSON line per input line:
//!
//! * `{"outcome":"event","event":"<event JSON text>"}`
//! * `{"outcome":"dropped","reason":"<code>"}`
//! * `{"outcome":"error","stage":"decode|timestamp|encode","message":"<text>"}`
//! * `{"outcome":"invalid_input","message":"<text>"}` for a line that is not
//!   such an object (the tool goes on).
//!
//! A line *fails* when its outcome is `error` or `invalid_input` (`dropped` is the reference's answer for
//! that payload, not a failure). The tool exits 1 when every line failed (at least one line read), else 0;
//! when some lines failed it says how many on standard error.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;
use serde_json::json;

use super::error::{CliResult, Exit};
use crate::transform::{Outcome, transform};

/// `transform`'s arguments.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Exit codes: 0 unless every input line failed (error or invalid_input), then 1; \
2 usage."
)]
pub struct TransformArgs {
    /// Read from this file instead of standard input.
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
}

/// How many lines were read, and how many of them failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub lines: u64,
    pub failed: u64,
}

impl Tally {
    /// 1 ([`Exit::Error`]) when every line failed, else 0.
    pub fn exit(self) -> Exit {
        if self.lines > 0 && self.failed == self.lines {
            Exit::Error
        } else {
            Exit::Ok
        }
    }
}

#[derive(Deserialize)]
struct Line {
    tenant_id: String,
    environment_id: String,
    payload: String,
}

/// Runs `transform`: standard output gets the result lines; a note on standard error when lines failed.
pub fn run(a: &TransformArgs) -> CliResult {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let tally = run_on(a.input.as_deref(), &mut out)?;
    if tally.failed > 0 {
        eprintln!(
            "reprocessor transform: {} of {} lines failed (outcome error or invalid_input)",
            tally.failed, tally.lines
        );
    }
    Ok(tally.exit())
}

/// Reads JSON lines from `input` (stdin when `None`) and writes one result
/// line per input line to `out`, in order. Fails only on I/O errors.
pub fn run_on(input: Option<&Path>, out: &mut impl Write) -> anyhow::Result<Tally> {
    let reader: Box<dyn BufRead> = match input {
        Some(p) => Box::new(BufReader::new(
            std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?,
        )),
        None => Box::new(BufReader::new(std::io::stdin().lock())),
    };
    process(reader, out)
}

fn process(mut reader: impl BufRead, out: &mut impl Write) -> anyhow::Result<Tally> {
    let mut buf = Vec::new();
    let mut tally = Tally::default();
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
        let value = outcome_json(line);
        tally.lines += 1;
        if matches!(value["outcome"].as_str(), Some("error" | "invalid_input")) {
            tally.failed += 1;
        }
        serde_json::to_writer(&mut *out, &value).context("writing output")?;
        out.write_all(b"\n").context("writing output")?;
    }
    out.flush().context("writing output")?;
    Ok(tally)
}

/// The result line of one input line.
fn outcome_json(line: &[u8]) -> serde_json::Value {
    match serde_json::from_slice::<Line>(line) {
        Ok(l) => match transform(l.payload.as_bytes(), &l.tenant_id, &l.environment_id) {
            Outcome::Event(e) => json!({"outcome": "event", "event": e.json}),
            Outcome::Dropped(r) => json!({"outcome": "dropped", "reason": r.code()}),
            Outcome::Error(e) => {
                json!({"outcome": "error", "stage": e.stage.code(), "message": e.message})
            }
        },
        Err(e) => json!({"outcome": "invalid_input", "message": e.to_string()}),
    }
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
        let tally = process(input.as_bytes(), &mut out).unwrap();
        assert_eq!(
            tally,
            Tally {
                lines: 3,
                failed: 2
            }
        );
        assert_eq!(tally.exit(), Exit::Ok, "some lines failed, not all");
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

    #[test]
    fn exits_1_only_when_every_line_failed() {
        let mut out = Vec::new();
        let all_bad = process("not json\n{}\n".as_bytes(), &mut out).unwrap();
        assert_eq!(all_bad.exit(), Exit::Error);
        let empty = process("".as_bytes(), &mut out).unwrap();
        assert_eq!(empty.exit(), Exit::Ok, "nothing read, nothing failed");
        let dropped = r#"{"tenant_id":"t","environment_id":"e","payload":"null"}"#;
        let d = process(dropped.as_bytes(), &mut out).unwrap();
        assert_eq!((d.failed, d.exit()), (0, Exit::Ok), "a drop is an answer");
    }
}
