//! Go `strconv` / `fmt` number behaviour.
//!
//! * [`parse_int`] mirrors `strconv.ParseInt(s, 10, 64)` including its
//!   saturation on overflow.
//! * [`parse_float`] mirrors `strconv.ParseFloat(s, 64)`: `Inf`/`Infinity`/`NaN`,
//!   hexadecimal floats, digit underscores, range errors on overflow.
//! * [`fmt_v`] mirrors `fmt.Sprintf("%v", f)` (= `strconv.FormatFloat(f, 'g', -1, 64)`
//!   with the exponent threshold 6), [`fmt_json`] mirrors `encoding/json`'s
//!   float encoder, [`fmt_f6`] mirrors `fmt.Sprintf("%f", f)`.

use std::fmt::Write as _;

/// Result of Go's `strconv.ParseInt(s, 10, 64)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntParse {
    /// Parsed without error.
    Ok(i64),
    /// `ErrRange`: the value Go returns (±9223372036854775807/8, saturated).
    Range(i64),
    /// `ErrSyntax`: Go returns 0.
    Syntax,
}

impl IntParse {
    /// The value Go's `ParseInt` returns whatever the error (0 on syntax errors).
    pub fn value(self) -> i64 {
        match self {
            IntParse::Ok(v) | IntParse::Range(v) => v,
            IntParse::Syntax => 0,
        }
    }
}

/// Go's `strconv.ParseInt(s, 10, 64)`. Like Go's `ParseUint`, an overflow is
/// reported as soon as it happens, before any later invalid byte is seen.
pub fn parse_int(s: &str) -> IntParse {
    let mut b = s.as_bytes();
    if b.is_empty() {
        return IntParse::Syntax;
    }
    let mut neg = false;
    if b[0] == b'+' || b[0] == b'-' {
        neg = b[0] == b'-';
        b = &b[1..];
    }
    if b.is_empty() {
        return IntParse::Syntax;
    }
    let mut n: u64 = 0;
    let mut overflow = false;
    const CUTOFF: u64 = u64::MAX / 10 + 1;
    for &c in b {
        if !c.is_ascii_digit() {
            return IntParse::Syntax;
        }
        let d = (c - b'0') as u64;
        if n >= CUTOFF {
            overflow = true;
            break;
        }
        n *= 10;
        let n1 = n.wrapping_add(d);
        if n1 < n {
            overflow = true;
            break;
        }
        n = n1;
    }
    if overflow {
        n = u64::MAX;
    }
    const LIM: u64 = 1 << 63;
    if !neg && n >= LIM {
        return IntParse::Range(i64::MAX);
    }
    if neg && n > LIM {
        return IntParse::Range(i64::MIN);
    }
    if overflow {
        // Unreachable: overflow implies n = u64::MAX which is handled above.
        return IntParse::Range(if neg { i64::MIN } else { i64::MAX });
    }
    IntParse::Ok(if neg {
        (n as i64).wrapping_neg()
    } else {
        n as i64
    })
}

/// Product fix for token counts (not in the reference): reads `s` as an exact
/// decimal number (`[+-]digits[.digits][e[+-]digits]`, also `5.` and `.5`) and
/// returns it when it is an integer within the `i64` range.
pub fn exact_decimal_int(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut neg = false;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        neg = b[i] == b'-';
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = &b[int_start..i];
    let mut frac_digits: &[u8] = &[];
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let fs = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        frac_digits = &b[fs..i];
    }
    if int_digits.is_empty() && frac_digits.is_empty() {
        return None;
    }
    let mut exp: i64 = 0;
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        let mut eneg = false;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            eneg = b[i] == b'-';
            i += 1;
        }
        let es = i;
        while i < b.len() && b[i].is_ascii_digit() {
            exp = (exp * 10 + (b[i] - b'0') as i64).min(1_000_000_000);
            i += 1;
        }
        if es == i {
            return None;
        }
        if eneg {
            exp = -exp;
        }
    }
    if i != b.len() {
        return None;
    }
    // value = digits × 10^(exp - frac_len)
    let digits = int_digits.iter().chain(frac_digits.iter()).copied();
    let total: Vec<u8> = digits.collect();
    let mut end = total.len();
    let mut scale = exp - frac_digits.len() as i64;
    while end > 0 && total[end - 1] == b'0' {
        end -= 1;
        scale += 1;
    }
    let start = total[..end].iter().position(|&c| c != b'0').unwrap_or(end);
    let sig = &total[start..end];
    if sig.is_empty() {
        return Some(0);
    }
    if scale < 0 {
        return None; // not an integer
    }
    if sig.len() as i64 + scale > 19 {
        return None;
    }
    let mut v: i128 = 0;
    for &c in sig {
        v = v * 10 + (c - b'0') as i128;
    }
    for _ in 0..scale {
        v *= 10;
    }
    if neg {
        v = -v;
    }
    i64::try_from(v).ok()
}

/// Error of [`parse_float`], like Go's `ErrSyntax` / `ErrRange`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloatError {
    Syntax,
    Range,
}

fn special(b: &[u8]) -> Option<(f64, usize)> {
    if b.is_empty() {
        return None;
    }
    let mut sign = 1.0;
    let mut nsign = 0;
    let mut s = b;
    let c = s[0];
    if c == b'+' || c == b'-' {
        if c == b'-' {
            sign = -1.0;
        }
        nsign = 1;
        s = &s[1..];
    } else if c == b'n' || c == b'N' {
        return if s.len() >= 3 && s[..3].eq_ignore_ascii_case(b"nan") {
            Some((f64::NAN, 3))
        } else {
            None
        };
    }
    if s.is_empty() || !(s[0] == b'i' || s[0] == b'I') {
        return None;
    }
    let word = b"infinity";
    let mut n = 0;
    while n < s.len() && n < word.len() && s[n].eq_ignore_ascii_case(&word[n]) {
        n += 1;
    }
    if 3 < n && n < 8 {
        n = 3;
    }
    if n == 3 || n == 8 {
        Some((sign * f64::INFINITY, nsign + n))
    } else {
        None
    }
}

fn underscore_ok(s: &[u8]) -> bool {
    let mut saw = b'^';
    let mut i = 0;
    let mut s = s;
    if !s.is_empty() && (s[0] == b'-' || s[0] == b'+') {
        s = &s[1..];
    }
    let mut hex = false;
    if s.len() >= 2 && s[0] == b'0' && matches!(s[1] | 0x20, b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = s[1] | 0x20 == b'x';
    }
    while i < s.len() {
        let c = s[i];
        if c.is_ascii_digit() || (hex && (c | 0x20).is_ascii_hexdigit()) {
            saw = b'0';
            i += 1;
            continue;
        }
        if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
            i += 1;
            continue;
        }
        if saw == b'_' {
            return false;
        }
        saw = b'!';
        i += 1;
    }
    saw != b'_'
}

/// Go's `strconv.ParseFloat(s, 64)`.
pub fn parse_float(s: &str) -> Result<f64, FloatError> {
    let b = s.as_bytes();
    if let Some((f, n)) = special(b) {
        return if n == b.len() {
            Ok(f)
        } else {
            Err(FloatError::Syntax)
        };
    }
    let mut i = 0;
    let mut neg = false;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        neg = b[i] == b'-';
        i += 1;
    }
    if i + 2 < b.len() && b[i] == b'0' && (b[i + 1] | 0x20) == b'x' {
        return parse_hex(b, i + 2, neg);
    }
    // Decimal: validate Go's grammar and build a clean string for Rust's
    // correctly rounded parser.
    let mut clean = String::with_capacity(b.len());
    if neg {
        clean.push('-');
    }
    let mut underscores = false;
    let mut sawdot = false;
    let mut sawdigits = false;
    while i < b.len() {
        let c = b[i];
        match c {
            b'_' => underscores = true,
            b'.' => {
                if sawdot {
                    break;
                }
                sawdot = true;
                clean.push('.');
            }
            b'0'..=b'9' => {
                sawdigits = true;
                clean.push(c as char);
            }
            _ => break,
        }
        i += 1;
    }
    if !sawdigits {
        return Err(FloatError::Syntax);
    }
    if i < b.len() && (b[i] | 0x20) == b'e' {
        i += 1;
        if i >= b.len() {
            return Err(FloatError::Syntax);
        }
        clean.push('e');
        if b[i] == b'+' {
            i += 1;
        } else if b[i] == b'-' {
            clean.push('-');
            i += 1;
        }
        if i >= b.len() || !b[i].is_ascii_digit() {
            return Err(FloatError::Syntax);
        }
        let mut e: u32 = 0;
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
            if b[i] == b'_' {
                underscores = true;
            } else if e < 10000 {
                e = e * 10 + (b[i] - b'0') as u32;
            }
            i += 1;
        }
        let _ = write!(clean, "{e}");
    }
    if underscores && !underscore_ok(&b[..i]) {
        return Err(FloatError::Syntax);
    }
    if i != b.len() {
        return Err(FloatError::Syntax);
    }
    let f: f64 = clean.parse().map_err(|_| FloatError::Syntax)?;
    if f.is_infinite() {
        return Err(FloatError::Range);
    }
    Ok(f)
}

/// Hexadecimal float (`0x1.8p3`), after the `0x` prefix at `i`. Go requires
/// the `p` exponent.
fn parse_hex(b: &[u8], mut i: usize, neg: bool) -> Result<f64, FloatError> {
    let start = i - 2;
    let mut mant: u64 = 0;
    let mut trunc = false;
    let mut nd_mant = 0i64;
    let mut dp = 0i64;
    let mut nd = 0i64;
    let mut sawdot = false;
    let mut sawdigits = false;
    let mut underscores = false;
    while i < b.len() {
        let c = b[i];
        let d = match c {
            b'_' => {
                underscores = true;
                i += 1;
                continue;
            }
            b'.' => {
                if sawdot {
                    break;
                }
                sawdot = true;
                dp = nd;
                i += 1;
                continue;
            }
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => break,
        };
        sawdigits = true;
        if d == 0 && nd == 0 {
            dp -= 1;
            i += 1;
            continue;
        }
        nd += 1;
        if nd_mant < 16 {
            mant = mant * 16 + d as u64;
            nd_mant += 1;
        } else if d != 0 {
            trunc = true;
        }
        i += 1;
    }
    if !sawdigits {
        return Err(FloatError::Syntax);
    }
    if !sawdot {
        dp = nd;
    }
    dp *= 4;
    let nd_mant4 = nd_mant * 4;
    if i < b.len() && (b[i] | 0x20) == b'p' {
        i += 1;
        if i >= b.len() {
            return Err(FloatError::Syntax);
        }
        let mut esign = 1i64;
        if b[i] == b'+' {
            i += 1;
        } else if b[i] == b'-' {
            i += 1;
            esign = -1;
        }
        if i >= b.len() || !b[i].is_ascii_digit() {
            return Err(FloatError::Syntax);
        }
        let mut e = 0i64;
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
            if b[i] == b'_' {
                underscores = true;
            } else if e < 10000 {
                e = e * 10 + (b[i] - b'0') as i64;
            }
            i += 1;
        }
        dp += e * esign;
    } else {
        return Err(FloatError::Syntax);
    }
    let exp = if mant != 0 { dp - nd_mant4 } else { 0 };
    if underscores && !underscore_ok(&b[start..i]) {
        return Err(FloatError::Syntax);
    }
    if i != b.len() {
        return Err(FloatError::Syntax);
    }
    atof_hex(mant, exp, neg, trunc)
}

/// Go's `atofHex`: rounds mantissa × 2^exp to float64 (round half to even,
/// `trunc` acting as a sticky bit).
fn atof_hex(mut mant: u64, mut exp: i64, neg: bool, trunc: bool) -> Result<f64, FloatError> {
    const MANT_BITS: u32 = 52;
    const BIAS: i64 = -1023;
    let max_exp = (1i64 << 11) + BIAS - 2; // 1023
    let min_exp = BIAS + 1; // -1022
    exp += MANT_BITS as i64;
    let sign = if neg { -1.0 } else { 1.0 };
    let mut trunc = trunc;
    while mant != 0 && mant >> (MANT_BITS + 2) == 0 {
        mant <<= 1;
        exp -= 1;
    }
    if trunc {
        mant |= 1;
    }
    while mant >> (1 + MANT_BITS + 2) != 0 {
        mant = (mant >> 1) | (mant & 1);
        exp += 1;
    }
    while mant > 1 && exp < min_exp - 2 {
        mant = (mant >> 1) | (mant & 1);
        exp += 1;
    }
    let mut round = mant & 3;
    mant >>= 2;
    round |= mant & 1;
    exp += 2;
    if round == 3 {
        mant += 1;
        if mant == 1 << (1 + MANT_BITS) {
            mant >>= 1;
            exp += 1;
        }
    }
    if mant >> MANT_BITS == 0 {
        exp = BIAS;
    }
    if exp > max_exp {
        return Err(FloatError::Range);
    }
    let bits = mant & ((1u64 << MANT_BITS) - 1);
    let ebits = ((exp - BIAS) as u64 & 0x7ff) << MANT_BITS;
    trunc = false;
    let _ = trunc;
    Ok(sign * f64::from_bits(bits | ebits))
}

/// Shortest round-trip decimal digits of a finite `f.abs()`:
/// `value = 0.d1d2…dn × 10^dp`. Zero gives `nd = 0, dp = 0`.
fn shortest(f: f64, digits: &mut [u8; 20]) -> (usize, i32) {
    let a = f.abs();
    if a == 0.0 {
        return (0, 0);
    }
    let mut buf = ryu::Buffer::new();
    let s = buf.format_finite(a).as_bytes();
    // ryu writes e.g. "123.456", "0.001", "1e16", "1.5e-7": collect all
    // digits D, the count P of digits before '.', the exponent E; then the
    // value is 0.D × 10^(P + E).
    let mut nd = 0usize;
    let mut point: Option<i32> = None;
    let mut exp: i32 = 0;
    let mut total = 0i32;
    let mut leading = 0i32;
    for (i, &c) in s.iter().enumerate() {
        match c {
            b'0'..=b'9' => {
                if nd == 0 && c == b'0' {
                    leading += 1;
                } else if nd < digits.len() {
                    digits[nd] = c;
                    nd += 1;
                }
                total += 1;
            }
            b'.' => point = Some(total),
            b'e' | b'E' => {
                let rest = std::str::from_utf8(&s[i + 1..]).unwrap_or("0");
                exp = rest.parse().unwrap_or(0);
                break;
            }
            _ => {}
        }
    }
    let p = point.unwrap_or(total);
    let dp = p + exp - leading;
    while nd > 1 && digits[nd - 1] == b'0' {
        nd -= 1;
    }
    (nd, dp)
}

fn push_exp(out: &mut String, e: i32) {
    if e < 0 {
        out.push('-');
    } else {
        out.push('+');
    }
    let e = e.unsigned_abs();
    if e < 10 {
        out.push('0');
    }
    let mut b = itoa::Buffer::new();
    out.push_str(b.format(e));
}

fn push_e(out: &mut String, d: &[u8], dp: i32, pad_exp: bool) {
    out.push(d[0] as char);
    if d.len() > 1 {
        out.push('.');
        for &c in &d[1..] {
            out.push(c as char);
        }
    }
    out.push('e');
    let e = dp - 1;
    if pad_exp {
        push_exp(out, e);
    } else {
        // encoding/json: "e-07" cleaned up to "e-7"; positive keeps "e+21".
        if e < 0 {
            out.push('-');
        } else {
            out.push('+');
        }
        let mut b = itoa::Buffer::new();
        out.push_str(b.format(e.unsigned_abs()));
    }
}

fn push_f(out: &mut String, d: &[u8], dp: i32) {
    let nd = d.len() as i32;
    if dp > 0 {
        let m = dp.min(nd) as usize;
        for &c in &d[..m] {
            out.push(c as char);
        }
        for _ in m as i32..dp {
            out.push('0');
        }
    } else {
        out.push('0');
    }
    let prec = (nd - dp).max(0);
    if prec > 0 {
        out.push('.');
        for i in 0..prec {
            let j = dp + i;
            out.push(if j < 0 || j >= nd {
                '0'
            } else {
                d[j as usize] as char
            });
        }
    }
}

/// Go's `fmt.Sprintf("%v", f)` for a finite `float64`: shortest round-trip
/// digits, `%e` form (two-digit minimum exponent) when the decimal exponent is
/// < −4 or ≥ 6 (`1e+06`, `1e-05`, `1.5`, `-0`).
pub fn fmt_v(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str("NaN");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    if f.is_sign_negative() {
        out.push('-');
    }
    // Integers below 1e6 print as their digits (no exponent, and the
    // shortest digits of an integer this small are the integer itself).
    let a = f.abs();
    if a < 1e6 && a.fract() == 0.0 {
        out.push_str(itoa::Buffer::new().format(a as u32));
        return;
    }
    let mut buf = [0u8; 20];
    let (nd, dp) = shortest(f, &mut buf);
    if nd == 0 {
        out.push('0');
        return;
    }
    let d = &buf[..nd];
    let exp = dp - 1;
    if !(-4..6).contains(&exp) {
        push_e(out, d, dp, true);
    } else {
        push_f(out, d, dp);
    }
}

/// `encoding/json`'s float64 encoder: shortest digits, plain decimal unless
/// `abs < 1e-6 || abs >= 1e21`, then `%e` without exponent padding
/// (`1e-7`, `1e+21`).
pub fn fmt_json(out: &mut String, f: f64) {
    if f.is_sign_negative() {
        out.push('-');
    }
    let a = f.abs();
    // Integers below 2^53 print as their digits: every integer there is a
    // float64, so the shortest round-trip digits are the integer's own.
    if a < 9_007_199_254_740_992.0 && a.fract() == 0.0 {
        out.push_str(itoa::Buffer::new().format(a as u64));
        return;
    }
    let mut buf = [0u8; 20];
    let (nd, dp) = shortest(f, &mut buf);
    if nd == 0 {
        out.push('0');
        return;
    }
    let d = &buf[..nd];
    if !(1e-6..1e21).contains(&a) {
        push_e(out, d, dp, false);
    } else {
        push_f(out, d, dp);
    }
}

/// Go's `fmt.Sprintf("%f", f)`: six decimals, correctly rounded (half to
/// even on exact ties); `+Inf`, `-Inf`, `NaN`.
pub fn fmt_f6(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str("NaN");
    } else if f.is_infinite() {
        out.push_str(if f > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{f:.6}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(f: f64) -> String {
        let mut s = String::new();
        fmt_v(&mut s, f);
        s
    }
    fn j(f: f64) -> String {
        let mut s = String::new();
        fmt_json(&mut s, f);
        s
    }
    fn f6(f: f64) -> String {
        let mut s = String::new();
        fmt_f6(&mut s, f);
        s
    }

    #[test]
    fn percent_v() {
        assert_eq!(v(1000000.0), "1e+06");
        assert_eq!(v(1234567.0), "1.234567e+06");
        assert_eq!(v(0.00001), "1e-05");
        assert_eq!(v(-0.0), "-0");
        assert_eq!(v(0.0), "0");
        assert_eq!(v(1e21), "1e+21");
        assert_eq!(v(9007199254740993.0), "9.007199254740992e+15");
        assert_eq!(v(123456.0), "123456");
        assert_eq!(v(0.0001), "0.0001");
        assert_eq!(v(0.001994), "0.001994");
        assert_eq!(v(1e-7), "1e-07");
        assert_eq!(v(1e100), "1e+100");
        assert_eq!(v(5e-324), "5e-324");
        assert_eq!(v(1.5), "1.5");
        assert_eq!(v(-2.5), "-2.5");
        assert_eq!(v(33.333333333333336), "33.333333333333336");
    }

    #[test]
    fn json_float() {
        assert_eq!(j(1e-7), "1e-7");
        assert_eq!(j(0.000001), "0.000001");
        assert_eq!(j(100000000.0), "100000000");
        assert_eq!(j(1e20), "100000000000000000000");
        assert_eq!(j(1e21), "1e+21");
        assert_eq!(j(-0.0), "-0");
        assert_eq!(j(2.5), "2.5");
        assert_eq!(j(1.5e-10), "1.5e-10");
    }

    #[test]
    fn percent_f() {
        assert_eq!(f6(450.0), "450.000000");
        assert_eq!(f6(f64::INFINITY), "+Inf");
        assert_eq!(f6(0.0078125), "0.007812");
        assert_eq!(f6(0.0234375), "0.023438");
    }

    #[test]
    fn int_parse() {
        assert_eq!(parse_int("+5"), IntParse::Ok(5));
        assert_eq!(parse_int("-5"), IntParse::Ok(-5));
        assert_eq!(parse_int("1_000"), IntParse::Syntax);
        assert_eq!(parse_int("5."), IntParse::Syntax);
        assert_eq!(parse_int(""), IntParse::Syntax);
        assert_eq!(parse_int("-"), IntParse::Syntax);
        assert_eq!(parse_int("9223372036854775807"), IntParse::Ok(i64::MAX));
        assert_eq!(parse_int("9223372036854775808"), IntParse::Range(i64::MAX));
        assert_eq!(parse_int("-9223372036854775808"), IntParse::Ok(i64::MIN));
        assert_eq!(parse_int("-9223372036854775809"), IntParse::Range(i64::MIN));
        assert_eq!(
            parse_int("99999999999999999999x"),
            IntParse::Range(i64::MAX)
        );
        assert_eq!(parse_int("1x"), IntParse::Syntax);
    }

    #[test]
    fn float_parse() {
        assert_eq!(parse_float("Inf"), Ok(f64::INFINITY));
        assert_eq!(parse_float("-infinity"), Ok(f64::NEG_INFINITY));
        assert!(parse_float("NaN").unwrap().is_nan());
        assert!(parse_float("+nan").is_err());
        assert_eq!(parse_float("infin"), Err(FloatError::Syntax));
        assert_eq!(parse_float("0x1p-2"), Ok(0.25));
        assert_eq!(parse_float("0x1.8p1"), Ok(3.0));
        assert_eq!(parse_float("0x1"), Err(FloatError::Syntax));
        assert_eq!(parse_float("+5"), Ok(5.0));
        assert_eq!(parse_float(".5"), Ok(0.5));
        assert_eq!(parse_float("5."), Ok(5.0));
        assert_eq!(parse_float("1_000"), Ok(1000.0));
        assert_eq!(parse_float("1__000"), Err(FloatError::Syntax));
        assert_eq!(parse_float(" 5"), Err(FloatError::Syntax));
        assert_eq!(parse_float("1,5"), Err(FloatError::Syntax));
        assert_eq!(parse_float("1e400"), Err(FloatError::Range));
        assert_eq!(parse_float("1e-400"), Ok(0.0));
        assert_eq!(parse_float("."), Err(FloatError::Syntax));
        assert_eq!(parse_float("1e"), Err(FloatError::Syntax));
        assert_eq!(parse_float("0x1p1024"), Err(FloatError::Range));
    }

    #[test]
    fn product_decimal() {
        assert_eq!(exact_decimal_int("1.5e+06"), Some(1_500_000));
        assert_eq!(exact_decimal_int("5e2"), Some(500));
        assert_eq!(exact_decimal_int("5."), Some(5));
        assert_eq!(exact_decimal_int("5.0"), Some(5));
        assert_eq!(exact_decimal_int("5.5"), None);
        assert_eq!(exact_decimal_int("1e21"), None);
        assert_eq!(exact_decimal_int("9.223372036854776e+18"), None);
        assert_eq!(
            exact_decimal_int("-9.007199254740992e+15"),
            Some(-9007199254740992)
        );
        assert_eq!(exact_decimal_int("nan"), None);
        assert_eq!(exact_decimal_int("5 "), None);
        assert_eq!(exact_decimal_int("0b101"), None);
    }
}
