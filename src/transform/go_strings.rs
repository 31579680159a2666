//! Go `strings`/`unicode` behaviour where Rust's standard library differs.
//!
//! * [`to_lower`] mirrors `strings.ToLower`: per-rune `unicode.ToLower` (simple
//!   mappings of Unicode 15.0.0, so `İ` → `i` and no final-sigma rule).
//! * [`trim_space`] mirrors `strings.TrimSpace` (`unicode.IsSpace`).
//! * [`key_matches`] mirrors the case-insensitive struct-field matching of
//!   `encoding/json` (`unicode.SimpleFold` orbits).

use std::borrow::Cow;

use super::go_tables::LOWER_RANGES;

/// Go's `unicode.IsSpace`: `\t \n \v \f \r`, space, U+0085, U+00A0 and the
/// other `White_Space` runes (U+1680, U+2000–U+200A, U+2028, U+2029, U+202F,
/// U+205F, U+3000). Not U+200B, U+2060, U+180E or U+FEFF.
pub fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n'
            | '\u{0B}'
            | '\u{0C}'
            | '\r'
            | ' '
            | '\u{85}'
            | '\u{A0}'
            | '\u{1680}'
            | '\u{2000}'
            ..='\u{200A}' | '\u{2028}' | '\u{2029}' | '\u{202F}' | '\u{205F}' | '\u{3000}'
    )
}

/// Go's `strings.TrimSpace`: strips leading and trailing [`is_space`] runes.
pub fn trim_space(s: &str) -> &str {
    s.trim_matches(is_space)
}

/// Go's `unicode.ToLower` for one rune (simple case mapping, Unicode 15.0.0).
pub fn lower_rune(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    let r = c as u32;
    // Find the last range whose first rune is <= r.
    let idx = LOWER_RANGES.partition_point(|&(lo, _, _, _)| lo <= r);
    if idx == 0 {
        return c;
    }
    let (lo, hi, delta, stride) = LOWER_RANGES[idx - 1];
    if r > hi || !(r - lo).is_multiple_of(stride) {
        return c;
    }
    char::from_u32((r as i64 + delta as i64) as u32).unwrap_or(c)
}

/// Go's `strings.ToLower`: maps every rune with [`lower_rune`]. Borrows when
/// nothing changes.
pub fn to_lower(s: &str) -> Cow<'_, str> {
    let bytes = s.as_bytes();
    let first = if s.is_ascii() {
        match bytes.iter().position(|b| b.is_ascii_uppercase()) {
            None => return Cow::Borrowed(s),
            Some(_) => return Cow::Owned(s.to_ascii_lowercase()),
        }
    } else {
        s.char_indices().find(|&(_, c)| lower_rune(c) != c)
    };
    match first {
        None => Cow::Borrowed(s),
        Some((i, _)) => {
            let mut out = String::with_capacity(s.len());
            out.push_str(&s[..i]);
            out.extend(s[i..].chars().map(lower_rune));
            Cow::Owned(out)
        }
    }
}

/// Appends `"-" + ToLower(TrimSpace(s))` style text: `ToLower(TrimSpace(s))`.
pub fn push_lower_trim(out: &mut String, s: &str) {
    let t = trim_space(s);
    if t.is_ascii() {
        out.extend(t.bytes().map(|b| b.to_ascii_lowercase() as char));
    } else {
        out.extend(t.chars().map(lower_rune));
    }
}

/// Whether a JSON object key selects the struct field `field` (ASCII) the way
/// Go's `encoding/json` does: an exact match, or equal after folding every
/// rune to the smallest rune of its `unicode.SimpleFold` orbit. For ASCII
/// field names this means ASCII case-insensitivity plus the Kelvin sign
/// U+212A (≡ `k`) and the long s U+017F (≡ `s`); `İ` matches nothing.
pub fn key_matches(key: &str, field: &str) -> bool {
    let fb = field.as_bytes();
    if key.len() == fb.len() {
        // All-ASCII fast path (same byte length means no multi-byte rune
        // can be present when the key is ASCII).
        if key.as_bytes().eq_ignore_ascii_case(fb) {
            return true;
        }
        if key.is_ascii() {
            return false;
        }
    }
    let mut fi = 0;
    for c in key.chars() {
        let Some(&f) = fb.get(fi) else {
            return false;
        };
        fi += 1;
        let ok = match c {
            '\u{212A}' => f.eq_ignore_ascii_case(&b'k'),
            '\u{017F}' => f.eq_ignore_ascii_case(&b's'),
            c if c.is_ascii() => (c as u8).eq_ignore_ascii_case(&f),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    fi == fb.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_go_rules() {
        assert_eq!(to_lower("İ"), "i");
        assert_eq!(to_lower("ΣΑΣ"), "σασ");
        assert_eq!(to_lower("OpenAI"), "openai");
        assert_eq!(to_lower("abc"), "abc");
        assert!(matches!(to_lower("abc"), Cow::Borrowed(_)));
        assert_eq!(to_lower("ÀÉ"), "àé");
        assert_eq!(to_lower("\u{212A}"), "k");
        // Unicode 16 additions are not lowered (Go 1.23 has Unicode 15).
        assert_eq!(to_lower("\u{A7CB}"), "\u{A7CB}");
    }

    #[test]
    fn trim_go_rules() {
        assert_eq!(
            trim_space(
                "\u{A0}\u{85}\u{1680}\u{2000}\u{200A}\u{2028}\u{2029}\u{205F}\u{3000}x\t\n\u{0B}\u{0C}\r "
            ),
            "x"
        );
        assert_eq!(trim_space("\u{200B}x\u{2060}"), "\u{200B}x\u{2060}");
        assert_eq!(trim_space("\u{180E}x\u{FEFF}"), "\u{180E}x\u{FEFF}");
    }

    #[test]
    fn key_folding() {
        assert!(key_matches("id", "id"));
        assert!(key_matches("ID", "id"));
        assert!(key_matches("ſerviceName", "serviceName"));
        assert!(key_matches("byo\u{212A}", "byok"));
        assert!(!key_matches("İd", "id"));
        assert!(!key_matches("idd", "id"));
        assert!(!key_matches("i", "id"));
        assert!(!key_matches("i_", "id"));
    }
}
