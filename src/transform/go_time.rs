//! Go's `time.Parse(time.RFC3339, s)` (with the `RFC3339Nano` fallback) and
//! `time.Time.MarshalJSON` for the parsed value.
//!
//! Quirks mirrored from Go's general layout parser:
//! * the hour may have one digit (`T0:00:37Z`); the other fields need two;
//! * `.` or `,` introduces the fraction; digits beyond 9 are truncated;
//! * the offset hour may be 0–24 and the minutes 0–60 (`+05:60` = `+06:00`);
//! * `t`/`z`, leap second `:60`, `+0530`, a missing zone, a space are errors.
//!
//! Marshalling keeps the wall clock and the offset (`Z` for a zero offset,
//! trailing fractional zeros dropped) and refuses an offset hour ≥ 24.

use std::fmt;

/// A parsed RFC 3339 timestamp, as Go holds it (wall clock + fixed offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoTime {
    pub year: u32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub nanos: u32,
    /// Offset east of UTC, in seconds.
    pub offset: i32,
}

/// Why a timestamp did not parse (informational, Go-like wording).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeParseError(pub &'static str);

impl fmt::Display for TimeParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

fn is_leap(y: u32) -> bool {
    y.is_multiple_of(4) && (!y.is_multiple_of(100) || y.is_multiple_of(400))
}

fn days_in(month: u32, year: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn digit(b: &[u8], i: usize) -> Option<u32> {
    b.get(i)
        .filter(|c| c.is_ascii_digit())
        .map(|c| (c - b'0') as u32)
}

/// Go's `getnum`: one or two digits (`fixed` requires two).
fn getnum(b: &[u8], fixed: bool) -> Result<(u32, &[u8]), TimeParseError> {
    let d0 = digit(b, 0).ok_or(TimeParseError("bad number"))?;
    match digit(b, 1) {
        Some(d1) => Ok((d0 * 10 + d1, &b[2..])),
        None if fixed => Err(TimeParseError("bad number")),
        None => Ok((d0, &b[1..])),
    }
}

fn lit(b: &[u8], c: u8) -> Result<&[u8], TimeParseError> {
    match b.first() {
        Some(&x) if x == c => Ok(&b[1..]),
        _ => Err(TimeParseError("literal mismatch")),
    }
}

/// Go's `time.Parse(time.RFC3339, s)` (its `RFC3339Nano` retry accepts the
/// same inputs).
pub fn parse_rfc3339(s: &str) -> Result<GoTime, TimeParseError> {
    let b = s.as_bytes();
    // Year: exactly four digits.
    if b.len() < 4 || !b[..4].iter().all(u8::is_ascii_digit) {
        return Err(TimeParseError("bad year"));
    }
    let year = b[..4].iter().fold(0u32, |a, c| a * 10 + (c - b'0') as u32);
    let b = lit(&b[4..], b'-')?;
    let (month, b) = getnum(b, true)?;
    if !(1..=12).contains(&month) {
        return Err(TimeParseError("month out of range"));
    }
    let b = lit(b, b'-')?;
    let (day, b) = getnum(b, true)?;
    if day > 31 {
        return Err(TimeParseError("day out of range"));
    }
    let b = lit(b, b'T')?;
    let (hour, b) = getnum(b, false)?;
    if hour >= 24 {
        return Err(TimeParseError("hour out of range"));
    }
    let b = lit(b, b':')?;
    let (minute, b) = getnum(b, true)?;
    if minute >= 60 {
        return Err(TimeParseError("minute out of range"));
    }
    let b = lit(b, b':')?;
    let (second, mut b) = getnum(b, true)?;
    if second >= 60 {
        return Err(TimeParseError("second out of range"));
    }
    let mut nanos = 0u32;
    if b.len() >= 2 && (b[0] == b'.' || b[0] == b',') && b[1].is_ascii_digit() {
        let mut n = 1;
        while n < b.len() && b[n].is_ascii_digit() {
            n += 1;
        }
        let digits = &b[1..n.min(10)];
        let mut ns = digits.iter().fold(0u32, |a, c| a * 10 + (c - b'0') as u32);
        for _ in digits.len()..9 {
            ns *= 10;
        }
        nanos = ns;
        b = &b[n..];
    }
    let offset;
    if b.first() == Some(&b'Z') {
        b = &b[1..];
        offset = 0;
    } else {
        if b.len() < 6 || b[3] != b':' {
            return Err(TimeParseError("bad zone"));
        }
        let (hr, _) = getnum(&b[1..3], true)?;
        let (mm, _) = getnum(&b[4..6], true)?;
        if hr > 24 {
            return Err(TimeParseError("time zone offset hour out of range"));
        }
        if mm > 60 {
            return Err(TimeParseError("time zone offset minute out of range"));
        }
        let off = ((hr * 60 + mm) * 60) as i32;
        offset = match b[0] {
            b'+' => off,
            b'-' => -off,
            _ => return Err(TimeParseError("bad zone sign")),
        };
        b = &b[6..];
    }
    if !b.is_empty() {
        return Err(TimeParseError("extra text"));
    }
    if day < 1 || day > days_in(month, year) {
        return Err(TimeParseError("day out of range"));
    }
    Ok(GoTime {
        year,
        month,
        day,
        hour,
        minute,
        second,
        nanos,
        offset,
    })
}

impl GoTime {
    /// Appends Go's `MarshalJSON` text (without quotes). Errors like Go when
    /// the offset hour is ≥ 24 ("timezone hour outside of range [0,23]").
    pub fn write_rfc3339(&self, out: &mut String) -> Result<(), &'static str> {
        let zone_min = self.offset.unsigned_abs() / 60;
        if self.offset != 0 && zone_min / 60 >= 24 {
            return Err("Time.MarshalJSON: timezone hour outside of range [0,23]");
        }
        push2(out, self.year / 100);
        push2(out, self.year % 100);
        out.push('-');
        push2(out, self.month);
        out.push('-');
        push2(out, self.day);
        out.push('T');
        push2(out, self.hour);
        out.push(':');
        push2(out, self.minute);
        out.push(':');
        push2(out, self.second);
        if self.nanos != 0 {
            out.push('.');
            let mut ns = self.nanos;
            let mut buf = [b'0'; 9];
            for i in (0..9).rev() {
                buf[i] = b'0' + (ns % 10) as u8;
                ns /= 10;
            }
            let mut end = 9;
            while buf[end - 1] == b'0' {
                end -= 1;
            }
            for &c in &buf[..end] {
                out.push(c as char);
            }
        }
        if self.offset == 0 {
            out.push('Z');
        } else {
            out.push(if self.offset < 0 { '-' } else { '+' });
            push2(out, zone_min / 60);
            out.push(':');
            push2(out, zone_min % 60);
        }
        Ok(())
    }
}

fn push2(out: &mut String, v: u32) {
    out.push((b'0' + (v / 10 % 10) as u8) as char);
    out.push((b'0' + (v % 10) as u8) as char);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(s: &str) -> Result<String, String> {
        let t = parse_rfc3339(s).map_err(|e| format!("parse: {e}"))?;
        let mut o = String::new();
        t.write_rfc3339(&mut o)
            .map_err(|e| format!("marshal: {e}"))?;
        Ok(o)
    }

    #[test]
    fn accepted() {
        assert_eq!(
            fmt("2026-03-21T00:00:37.092Z").unwrap(),
            "2026-03-21T00:00:37.092Z"
        );
        assert_eq!(
            fmt("2026-03-21T00:00:37.100Z").unwrap(),
            "2026-03-21T00:00:37.1Z"
        );
        assert_eq!(
            fmt("2026-03-21T00:00:37.000Z").unwrap(),
            "2026-03-21T00:00:37Z"
        );
        assert_eq!(
            fmt("2026-03-21T00:00:37+05:30").unwrap(),
            "2026-03-21T00:00:37+05:30"
        );
        assert_eq!(
            fmt("2026-03-21T00:00:37+00:00").unwrap(),
            "2026-03-21T00:00:37Z"
        );
        assert_eq!(
            fmt("2026-03-21T00:00:37-00:00").unwrap(),
            "2026-03-21T00:00:37Z"
        );
        assert_eq!(
            fmt("2026-03-21T00:00:37+05:60").unwrap(),
            "2026-03-21T00:00:37+06:00"
        );
        assert_eq!(fmt("2026-03-21T0:00:37Z").unwrap(), "2026-03-21T00:00:37Z");
        assert_eq!(
            fmt("2026-03-21T00:00:37,5Z").unwrap(),
            "2026-03-21T00:00:37.5Z"
        );
        assert_eq!(
            fmt("2026-03-21T00:00:37.1234567899Z").unwrap(),
            "2026-03-21T00:00:37.123456789Z"
        );
        assert_eq!(fmt("2024-02-29T00:00:00Z").unwrap(), "2024-02-29T00:00:00Z");
    }

    #[test]
    fn rejected() {
        for s in [
            "2026-03-21t00:00:37Z",
            "2026-03-21T00:00:37z",
            "2026-03-21T00:00:60Z",
            "2026-03-21T00:00:37+0530",
            "2026-03-21T00:00:37",
            "2026-03-21 00:00:37Z",
            "2026-03-21T00:00:37+25:00",
            "2026-03-21T00:00:37+05:61",
            "2025-02-29T00:00:00Z",
            "2026-3-21T00:00:37Z",
            "2026-03-21T24:00:00Z",
            "",
        ] {
            assert!(fmt(s).unwrap_err().starts_with("parse"), "{s}");
        }
        for s in [
            "2026-03-21T00:00:37+24:00",
            "2026-03-21T00:00:37-24:00",
            "2026-03-21T00:00:37+23:60",
        ] {
            assert!(fmt(s).unwrap_err().starts_with("marshal"), "{s}");
        }
    }
}
