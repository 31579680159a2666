//! A small JSON reader/writer over bytes with Go `encoding/json` semantics.
//!
//! Reading mirrors `json.Unmarshal` into `interface{}` values:
//! * the grammar of Go's scanner (whitespace is only space, `\t`, `\n`, `\r`;
//!   no BOM; nesting deeper than 10000 is an error — containers are parsed
//!   iteratively so deep input never grows the Rust stack);
//! * strings are unquoted like Go: every invalid UTF-8 byte becomes U+FFFD, an
//!   escaped lone surrogate becomes U+FFFD;
//! * numbers become `float64` via `strconv.ParseFloat`; a number that does not
//!   fit (`1e309`) is an error, underflow is silently 0;
//! * in an object the last duplicate key wins.
//!
//! Writing mirrors `json.Marshal`: map keys sorted by bytes, HTML-safe string
//! escaping, `float64` in the encoder's `'f'`/`'e'` forms.

use std::borrow::Cow;

use super::go_strconv::fmt_json;

/// Go's `maxNestingDepth` of the JSON scanner.
pub const MAX_DEPTH: usize = 10_000;

/// A decode failure (syntax or type), with a Go-like message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError(pub String);

/// A decoded JSON value (`interface{}`); containers live in the [`Arena`].
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    Null,
    Bool(bool),
    Num(f64),
    Str(Cow<'a, str>),
    /// Index of an array or object in the arena.
    Node(u32),
}

/// A container value. Object members are sorted by key with duplicates
/// removed (last wins), which is both Go's map semantics and its marshal order.
#[derive(Debug, Clone, PartialEq)]
pub enum Node<'a> {
    Arr(Vec<Val<'a>>),
    Obj(Vec<(Cow<'a, str>, Val<'a>)>),
}

/// Storage for container values of one payload.
pub type Arena<'a> = Vec<Node<'a>>;

/// Sorts members by key (stable) and keeps the last of each key.
///
/// Already strictly sorted input (the usual case: encoders write sorted keys)
/// is detected in one pass and left alone; small inputs use an insertion sort.
pub fn dedupe_last<V>(items: &mut Vec<(Cow<'_, str>, V)>) {
    if items.len() < 2 {
        return;
    }
    if items
        .windows(2)
        .all(|w| w[0].0.as_bytes() < w[1].0.as_bytes())
    {
        return;
    }
    if items.len() <= 24 {
        // Stable insertion sort.
        for i in 1..items.len() {
            let mut j = i;
            while j > 0 && items[j - 1].0.as_bytes() > items[j].0.as_bytes() {
                items.swap(j - 1, j);
                j -= 1;
            }
        }
    } else {
        items.sort_by(|a, b| a.0.cmp(&b.0));
    }
    let mut w = 0;
    for r in 0..items.len() {
        if r + 1 < items.len() && items[r + 1].0 == items[r].0 {
            continue;
        }
        items.swap(w, r);
        w += 1;
    }
    items.truncate(w);
}

/// Byte-level JSON reader.
pub struct Reader<'a> {
    pub b: &'a [u8],
    pub i: usize,
}

enum Frame<'a> {
    Arr(Vec<Val<'a>>),
    Obj(Vec<(Cow<'a, str>, Val<'a>)>, Cow<'a, str>),
}

/// Bytes that end a run of plain string content: `"`, `\\`, controls.
static STRING_STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Bytes `write_string` must look at: controls, `"`, `\\`, `<`, `>`, `&` and
/// 0xE2 (first byte of U+2028/U+2029).
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
static ESCAPE_STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t[b'<' as usize] = true;
    t[b'>' as usize] = true;
    t[b'&' as usize] = true;
    t[0xE2] = true;
    t
};

/// 16-byte block scanning: bit `k` of a mask is set when byte `k` of the
/// block belongs to the set. SSE2 on x86_64 (always available there), plain
/// loops elsewhere.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod block {
    // SAFETY (every `unsafe` block below): SSE2 is enabled at compile time
    // (the `cfg` above), and each load reads exactly the 16 bytes of a
    // `&[u8; 16]` (`loadu` has no alignment requirement).
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };

    #[inline(always)]
    fn eq(v: __m128i, b: u8) -> __m128i {
        unsafe { _mm_cmpeq_epi8(v, _mm_set1_epi8(b as i8)) }
    }

    /// Bytes below 0x20.
    #[inline(always)]
    fn ctl(v: __m128i) -> __m128i {
        unsafe {
            let m = _mm_set1_epi8(0x1F);
            _mm_cmpeq_epi8(_mm_max_epu8(v, m), m)
        }
    }

    /// (controls, `"` or `\\`; bytes ≥ 0x80).
    #[inline(always)]
    pub fn string_masks(c: &[u8; 16]) -> (u32, u32) {
        unsafe {
            let v = _mm_loadu_si128(c.as_ptr().cast());
            let stop = _mm_or_si128(ctl(v), _mm_or_si128(eq(v, b'"'), eq(v, b'\\')));
            (
                _mm_movemask_epi8(stop) as u32 & 0xFFFF,
                _mm_movemask_epi8(v) as u32 & 0xFFFF,
            )
        }
    }

    /// Controls, `"`, `\\`, `<`, `>`, `&` and 0xE2.
    #[inline(always)]
    pub fn escape_mask(c: &[u8; 16]) -> u32 {
        unsafe {
            let v = _mm_loadu_si128(c.as_ptr().cast());
            let a = _mm_or_si128(ctl(v), _mm_or_si128(eq(v, b'"'), eq(v, b'\\')));
            let b = _mm_or_si128(_mm_or_si128(eq(v, b'<'), eq(v, b'>')), eq(v, b'&'));
            let m = _mm_or_si128(_mm_or_si128(a, b), eq(v, 0xE2));
            _mm_movemask_epi8(m) as u32 & 0xFFFF
        }
    }
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
mod block {
    use super::{ESCAPE_STOP, STRING_STOP};

    /// (controls, `"` or `\\`; bytes ≥ 0x80).
    #[inline(always)]
    pub fn string_masks(c: &[u8; 16]) -> (u32, u32) {
        let (mut stop, mut hi) = (0u32, 0u32);
        for (k, &x) in c.iter().enumerate() {
            stop |= (STRING_STOP[x as usize] as u32) << k;
            hi |= ((x >> 7) as u32) << k;
        }
        (stop, hi)
    }

    /// Controls, `"`, `\\`, `<`, `>`, `&` and 0xE2.
    #[inline(always)]
    pub fn escape_mask(c: &[u8; 16]) -> u32 {
        let mut m = 0u32;
        for (k, &x) in c.iter().enumerate() {
            m |= (ESCAPE_STOP[x as usize] as u32) << k;
        }
        m
    }
}

#[inline(always)]
fn block_at(b: &[u8], i: usize) -> Option<&[u8; 16]> {
    b.get(i..i + 16).and_then(|s| s.try_into().ok())
}

#[inline]
fn hexval(c: u8) -> Option<u32> {
    match c {
        b'0'..=b'9' => Some((c - b'0') as u32),
        b'a'..=b'f' => Some((c - b'a' + 10) as u32),
        b'A'..=b'F' => Some((c - b'A' + 10) as u32),
        _ => None,
    }
}

/// Go's `utf8.DecodeRune`: the rune and its length, or `None` for an invalid
/// sequence (Go then consumes exactly one byte).
#[inline]
fn decode_rune(b: &[u8]) -> Option<(char, usize)> {
    let c0 = b[0];
    let cont = |i: usize, lo: u8, hi: u8| b.get(i).filter(|&&c| c >= lo && c <= hi).copied();
    let (n, lo1, hi1) = match c0 {
        0xC2..=0xDF => (2, 0x80, 0xBF),
        0xE0 => (3, 0xA0, 0xBF),
        0xE1..=0xEC | 0xEE..=0xEF => (3, 0x80, 0xBF),
        0xED => (3, 0x80, 0x9F),
        0xF0 => (4, 0x90, 0xBF),
        0xF1..=0xF3 => (4, 0x80, 0xBF),
        0xF4 => (4, 0x80, 0x8F),
        _ => return None,
    };
    cont(1, lo1, hi1)?;
    for i in 2..n {
        cont(i, 0x80, 0xBF)?;
    }
    let s = std::str::from_utf8(&b[..n]).ok()?;
    s.chars().next().map(|c| (c, n))
}

impl<'a> Reader<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Reader { b, i: 0 }
    }

    #[inline]
    pub fn skip_ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if c == b' ' || c == b'\n' || c == b'\r' || c == b'\t' {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    #[inline]
    pub fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// After an object member: `,` (another member follows: `true`) or `}` (the object ends: `false`),
    /// consumed; anything else is encoding/json's syntax error "after object key:value pair".
    pub fn member_end(&mut self) -> Result<bool, JsonError> {
        self.skip_ws();
        match self.peek() {
            Some(b',') => {
                self.i += 1;
                Ok(true)
            }
            Some(b'}') => {
                self.i += 1;
                Ok(false)
            }
            _ => Err(self.err_here("after object key:value pair")),
        }
    }

    pub fn err_here(&self, ctx: &str) -> JsonError {
        match self.peek() {
            None => JsonError("unexpected end of JSON input".to_string()),
            Some(c) => JsonError(format!(
                "invalid character {} {ctx} (offset {})",
                describe(c),
                self.i
            )),
        }
    }

    /// Consumes `c` (after whitespace) or fails.
    #[inline]
    pub fn expect(&mut self, c: u8, ctx: &str) -> Result<(), JsonError> {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err_here(ctx))
        }
    }

    /// Consumes a literal `true`, `false` or `null`.
    pub fn literal(&mut self) -> Result<Val<'a>, JsonError> {
        let rest = &self.b[self.i..];
        let (v, n) = if rest.starts_with(b"true") {
            (Val::Bool(true), 4)
        } else if rest.starts_with(b"false") {
            (Val::Bool(false), 5)
        } else if rest.starts_with(b"null") {
            (Val::Null, 4)
        } else {
            // Find the first mismatching byte for the message.
            let word: &[u8] = match rest.first() {
                Some(b't') => b"true",
                Some(b'f') => b"false",
                _ => b"null",
            };
            let k = rest.iter().zip(word).take_while(|(a, b)| a == b).count();
            self.i += k;
            return Err(self.err_here("in literal"));
        };
        self.i += n;
        Ok(v)
    }

    /// Scans a number in Go's JSON grammar and returns its text.
    pub fn number_text(&mut self) -> Result<&'a str, JsonError> {
        let b = self.b;
        let start = self.i;
        let mut i = self.i;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                i += 1;
                while matches!(b.get(i), Some(b'0'..=b'9')) {
                    i += 1;
                }
            }
            _ => {
                self.i = i;
                return Err(self.err_here("in numeric literal"));
            }
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            if !matches!(b.get(i), Some(b'0'..=b'9')) {
                self.i = i;
                return Err(self.err_here("after decimal point in numeric literal"));
            }
            while matches!(b.get(i), Some(b'0'..=b'9')) {
                i += 1;
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if !matches!(b.get(i), Some(b'0'..=b'9')) {
                self.i = i;
                return Err(self.err_here("in exponent of numeric literal"));
            }
            while matches!(b.get(i), Some(b'0'..=b'9')) {
                i += 1;
            }
        }
        self.i = i;
        // The text is ASCII by construction.
        Ok(std::str::from_utf8(&b[start..i]).unwrap_or("0"))
    }

    /// A JSON number converted like Go's `convertNumber` (`ParseFloat`).
    pub fn number(&mut self) -> Result<f64, JsonError> {
        let t = self.number_text()?;
        let f: f64 = t.parse().map_err(|_| {
            JsonError(format!(
                "json: cannot unmarshal number {t} into Go value of type float64"
            ))
        })?;
        if f.is_infinite() {
            return Err(JsonError(format!(
                "json: cannot unmarshal number {t} into Go value of type float64"
            )));
        }
        Ok(f)
    }

    /// Validates a string starting at the opening quote (Go's scanner rules)
    /// and moves past it. Returns the raw content and, when it has no escapes
    /// and is valid UTF-8, the same content as `&str`.
    fn scan_string(&mut self) -> Result<(&'a [u8], Option<&'a str>), JsonError> {
        let b = self.b;
        let start = self.i + 1;
        let mut i = start;
        let mut escapes = false;
        // Whether a byte ≥ 0x80 was passed (then UTF-8 must be checked).
        let mut high = false;
        loop {
            // Skip plain content: 16 bytes at a time, then byte by byte.
            loop {
                match block_at(b, i) {
                    Some(blk) => {
                        let (stop, hi) = block::string_masks(blk);
                        if stop != 0 {
                            let p = stop.trailing_zeros();
                            high |= hi & ((1u32 << p) - 1) != 0;
                            i += p as usize;
                            break;
                        }
                        high |= hi != 0;
                        i += 16;
                    }
                    None => {
                        while let Some(&c) = b.get(i) {
                            if STRING_STOP[c as usize] {
                                break;
                            }
                            high |= c >= 0x80;
                            i += 1;
                        }
                        break;
                    }
                }
            }
            match b.get(i) {
                None => {
                    self.i = i;
                    return Err(self.err_here("in string literal"));
                }
                Some(b'"') => break,
                Some(b'\\') => {
                    escapes = true;
                    match b.get(i + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                        Some(b'u') => {
                            for k in 0..4 {
                                match b.get(i + 2 + k) {
                                    Some(&h) if hexval(h).is_some() => {}
                                    _ => {
                                        self.i = i + 2 + k;
                                        return Err(
                                            self.err_here("in \\u hexadecimal character escape")
                                        );
                                    }
                                }
                            }
                            i += 6;
                        }
                        _ => {
                            self.i = i + 1;
                            return Err(self.err_here("in string escape code"));
                        }
                    }
                }
                Some(_) => {
                    self.i = i;
                    return Err(self.err_here("in string literal"));
                }
            }
        }
        let raw = &b[start..i];
        self.i = i + 1;
        let simple = if escapes {
            None
        } else if !high {
            // SAFETY: every byte of `raw` is below 0x80 (`high` is false and
            // there was no escape, so the scan above passed each byte once),
            // and ASCII is valid UTF-8.
            Some(unsafe { std::str::from_utf8_unchecked(raw) })
        } else {
            std::str::from_utf8(raw).ok()
        };
        Ok((raw, simple))
    }

    /// Skips a string (the reader is at its opening quote).
    pub fn skip_string(&mut self) -> Result<(), JsonError> {
        self.scan_string().map(|_| ())
    }

    /// Decodes a string (the reader is at its opening quote) like Go's
    /// `unquote`: borrowed when it has no escapes and is valid UTF-8.
    pub fn string(&mut self) -> Result<Cow<'a, str>, JsonError> {
        let (raw, simple) = self.scan_string()?;
        Ok(match simple {
            Some(s) => Cow::Borrowed(s),
            None => Cow::Owned(unquote_slow(raw)),
        })
    }

    /// Reads any value (`interface{}`), building containers in `arena`.
    /// `depth` is the number of containers already open around it.
    pub fn value(&mut self, depth: usize, arena: &mut Arena<'a>) -> Result<Val<'a>, JsonError> {
        let mut stack: Vec<Frame<'a>> = Vec::new();
        'value: loop {
            self.skip_ws();
            let mut v = match self.peek() {
                Some(b'{') | Some(b'[') => {
                    if depth + stack.len() + 1 > MAX_DEPTH {
                        return Err(JsonError("exceeded max depth".to_string()));
                    }
                    let is_obj = self.peek() == Some(b'{');
                    self.i += 1;
                    self.skip_ws();
                    if is_obj {
                        if self.peek() == Some(b'}') {
                            self.i += 1;
                            arena.push(Node::Obj(Vec::new()));
                            Val::Node((arena.len() - 1) as u32)
                        } else {
                            let key = self.key()?;
                            stack.push(Frame::Obj(Vec::new(), key));
                            continue 'value;
                        }
                    } else if self.peek() == Some(b']') {
                        self.i += 1;
                        arena.push(Node::Arr(Vec::new()));
                        Val::Node((arena.len() - 1) as u32)
                    } else {
                        stack.push(Frame::Arr(Vec::new()));
                        continue 'value;
                    }
                }
                Some(b'"') => Val::Str(self.string()?),
                Some(b't' | b'f' | b'n') => self.literal()?,
                Some(b'-' | b'0'..=b'9') => Val::Num(self.number()?),
                _ => return Err(self.err_here("looking for beginning of value")),
            };
            // Attach the completed value, closing containers as they end.
            loop {
                match stack.last_mut() {
                    None => return Ok(v),
                    Some(Frame::Arr(items)) => {
                        items.push(v);
                        self.skip_ws();
                        match self.peek() {
                            Some(b',') => {
                                self.i += 1;
                                continue 'value;
                            }
                            Some(b']') => {
                                self.i += 1;
                                let Some(Frame::Arr(items)) = stack.pop() else {
                                    unreachable!()
                                };
                                arena.push(Node::Arr(items));
                                v = Val::Node((arena.len() - 1) as u32);
                            }
                            _ => return Err(self.err_here("after array element")),
                        }
                    }
                    Some(Frame::Obj(items, key)) => {
                        let k = std::mem::take(key);
                        items.push((k, v));
                        self.skip_ws();
                        match self.peek() {
                            Some(b',') => {
                                self.i += 1;
                                self.skip_ws();
                                let nk = self.key()?;
                                if let Some(Frame::Obj(_, key)) = stack.last_mut() {
                                    *key = nk;
                                }
                                continue 'value;
                            }
                            Some(b'}') => {
                                self.i += 1;
                                let Some(Frame::Obj(mut items, _)) = stack.pop() else {
                                    unreachable!()
                                };
                                dedupe_last(&mut items);
                                arena.push(Node::Obj(items));
                                v = Val::Node((arena.len() - 1) as u32);
                            }
                            _ => return Err(self.err_here("after object key:value pair")),
                        }
                    }
                }
            }
        }
    }

    /// Reads an object key and the following `:` (reader at the key's quote,
    /// whitespace already skipped).
    pub fn key(&mut self) -> Result<Cow<'a, str>, JsonError> {
        if self.peek() != Some(b'"') {
            return Err(self.err_here("looking for beginning of object key string"));
        }
        let k = self.string()?;
        self.expect(b':', "after object key")?;
        Ok(k)
    }

    /// Validates and skips any value without decoding it (Go skips values of
    /// unknown fields; only the scanner's syntax and depth checks apply).
    pub fn skip_value(&mut self, depth: usize) -> Result<(), JsonError> {
        // true = object, false = array
        let mut stack: Vec<bool> = Vec::new();
        'value: loop {
            self.skip_ws();
            match self.peek() {
                Some(c @ (b'{' | b'[')) => {
                    if depth + stack.len() + 1 > MAX_DEPTH {
                        return Err(JsonError("exceeded max depth".to_string()));
                    }
                    self.i += 1;
                    self.skip_ws();
                    let close = if c == b'{' { b'}' } else { b']' };
                    if self.peek() == Some(close) {
                        self.i += 1;
                    } else {
                        stack.push(c == b'{');
                        if c == b'{' {
                            self.key()?;
                        }
                        continue 'value;
                    }
                }
                Some(b'"') => self.skip_string()?,
                Some(b't' | b'f' | b'n') => {
                    self.literal()?;
                }
                Some(b'-' | b'0'..=b'9') => {
                    self.number_text()?;
                }
                _ => return Err(self.err_here("looking for beginning of value")),
            }
            loop {
                let Some(&is_obj) = stack.last() else {
                    return Ok(());
                };
                self.skip_ws();
                match self.peek() {
                    Some(b',') => {
                        self.i += 1;
                        if is_obj {
                            self.skip_ws();
                            self.key()?;
                        }
                        continue 'value;
                    }
                    Some(b'}') if is_obj => {
                        self.i += 1;
                        stack.pop();
                    }
                    Some(b']') if !is_obj => {
                        self.i += 1;
                        stack.pop();
                    }
                    _ => return Err(self.err_here("after value")),
                }
            }
        }
    }
}

fn describe(c: u8) -> String {
    match c {
        b'\'' => "'\\''".to_string(),
        b'"' => "'\"'".to_string(),
        0x20..=0x7e => format!("'{}'", c as char),
        _ => format!("{c:#04x}"),
    }
}

/// Go's `unquote` for string content containing escapes or non-UTF-8 bytes
/// (already validated by the scanner).
fn unquote_slow(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len() + 8);
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        if c == b'\\' {
            let e = raw[i + 1];
            match e {
                b'u' => {
                    let r = get_u4(&raw[i..]).unwrap_or(0xFFFD);
                    i += 6;
                    if (0xD800..0xE000).contains(&r) {
                        // Try to combine with a following \uXXXX low surrogate.
                        if let Some(r2) = get_u4(&raw[i..])
                            && (0xD800..0xDC00).contains(&r)
                            && (0xDC00..0xE000).contains(&r2)
                        {
                            let cp = 0x10000 + ((r - 0xD800) << 10) + (r2 - 0xDC00);
                            out.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
                            i += 6;
                            continue;
                        }
                        out.push('\u{FFFD}');
                    } else {
                        out.push(char::from_u32(r).unwrap_or('\u{FFFD}'));
                    }
                    continue;
                }
                b'b' => out.push('\u{08}'),
                b'f' => out.push('\u{0C}'),
                b'n' => out.push('\n'),
                b'r' => out.push('\r'),
                b't' => out.push('\t'),
                other => out.push(other as char), // '"', '\\', '/'
            }
            i += 2;
        } else if c < 0x80 {
            // Copy a run of ASCII.
            let start = i;
            while i < raw.len() && raw[i] < 0x80 && raw[i] != b'\\' {
                i += 1;
            }
            out.push_str(std::str::from_utf8(&raw[start..i]).unwrap_or_default());
        } else {
            match decode_rune(&raw[i..]) {
                Some((ch, n)) => {
                    out.push(ch);
                    i += n;
                }
                None => {
                    out.push('\u{FFFD}');
                    i += 1;
                }
            }
        }
    }
    out
}

/// Go's `getu4`: the value of a `\uXXXX` escape at the start of `s`.
fn get_u4(s: &[u8]) -> Option<u32> {
    if s.len() < 6 || s[0] != b'\\' || s[1] != b'u' {
        return None;
    }
    let mut r = 0;
    for &c in &s[2..6] {
        r = r * 16 + hexval(c)?;
    }
    Some(r)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `s` as a JSON string the way Go's `encoding/json` writes it
/// (HTML-safe: `<`, `>`, `&` as `\u003c` …; U+2028/U+2029 escaped; `\b \f \n
/// \r \t` short; other controls `\u00XX`; everything else raw UTF-8).
pub fn write_string(out: &mut String, s: &str) {
    let b = s.as_bytes();
    out.reserve(b.len() + 2);
    out.push('"');
    let mut start = 0;
    let mut i = 0;
    loop {
        // Find the next byte that may need escaping.
        loop {
            match block_at(b, i) {
                Some(blk) => {
                    let m = block::escape_mask(blk);
                    if m != 0 {
                        i += m.trailing_zeros() as usize;
                        break;
                    }
                    i += 16;
                }
                None => {
                    let rest = &b[i..];
                    if rest.is_empty() {
                        break;
                    }
                    // Pad the tail to a block; padding bits are masked off.
                    let mut blk = [0u8; 16];
                    blk[..rest.len()].copy_from_slice(rest);
                    let m = block::escape_mask(&blk) & ((1u32 << rest.len()) - 1);
                    i += if m != 0 {
                        m.trailing_zeros() as usize
                    } else {
                        rest.len()
                    };
                    break;
                }
            }
        }
        let Some(&c) = b.get(i) else {
            break;
        };
        let esc: Option<&str> = match c {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x08 => Some("\\b"),
            0x0C => Some("\\f"),
            b'<' | b'>' | b'&' | 0x00..=0x1F => None,
            0xE2 if b.get(i + 1) == Some(&0x80) && matches!(b.get(i + 2), Some(0xA8 | 0xA9)) => {
                out.push_str(&s[start..i]);
                out.push_str(if b[i + 2] == 0xA8 {
                    "\\u2028"
                } else {
                    "\\u2029"
                });
                i += 3;
                start = i;
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        };
        out.push_str(&s[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                out.push_str("\\u00");
                out.push(HEX[(c >> 4) as usize] as char);
                out.push(HEX[(c & 0xF) as usize] as char);
            }
        }
        i += 1;
        start = i;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Go's `json.Marshal` of a decoded value (iterative, any depth).
pub fn marshal(v: &Val<'_>, arena: &Arena<'_>, out: &mut String) {
    let mut stack: Vec<(u32, usize)> = Vec::new();
    let mut cur: Option<&Val<'_>> = Some(v);
    loop {
        if let Some(v) = cur.take() {
            match v {
                Val::Null => out.push_str("null"),
                Val::Bool(true) => out.push_str("true"),
                Val::Bool(false) => out.push_str("false"),
                Val::Num(f) => fmt_json(out, *f),
                Val::Str(s) => write_string(out, s),
                Val::Node(n) => {
                    match &arena[*n as usize] {
                        Node::Arr(_) => out.push('['),
                        Node::Obj(_) => out.push('{'),
                    }
                    stack.push((*n, 0));
                }
            }
        }
        let Some(top) = stack.last_mut() else {
            return;
        };
        let (n, pos) = *top;
        match &arena[n as usize] {
            Node::Arr(items) => {
                if pos == items.len() {
                    out.push(']');
                    stack.pop();
                } else {
                    if pos > 0 {
                        out.push(',');
                    }
                    top.1 += 1;
                    cur = Some(&items[pos]);
                }
            }
            Node::Obj(items) => {
                if pos == items.len() {
                    out.push('}');
                    stack.pop();
                } else {
                    if pos > 0 {
                        out.push(',');
                    }
                    write_string(out, &items[pos].0);
                    out.push(':');
                    top.1 += 1;
                    cur = Some(&items[pos].1);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(s: &str) -> Result<String, JsonError> {
        let mut arena = Vec::new();
        let mut r = Reader::new(s.as_bytes());
        let v = r.value(0, &mut arena)?;
        r.skip_ws();
        assert_eq!(r.i, s.len());
        let mut out = String::new();
        marshal(&v, &arena, &mut out);
        Ok(out)
    }

    #[test]
    fn marshal_go_style() {
        assert_eq!(
            rt("[1e-7,0.000001,100000000,1e20,1e21]").unwrap(),
            "[1e-7,0.000001,100000000,100000000000000000000,1e+21]"
        );
        assert_eq!(rt("[1.0,2.50,-0]").unwrap(), "[1,2.5,-0]");
        assert_eq!(rt(r#"{"b":1,"a":2,"b":3}"#).unwrap(), r#"{"a":2,"b":3}"#);
        assert_eq!(
            rt(r#""<a&b>\u2028""#).unwrap(),
            r#""\u003ca\u0026b\u003e\u2028""#
        );
        assert_eq!(
            rt(r#""\ud800x\ud83d\ude00""#).unwrap(),
            "\"\u{FFFD}x\u{1F600}\""
        );
        assert_eq!(rt("\"\\u0001\\b\\f\"").unwrap(), "\"\\u0001\\b\\f\"");
        assert!(rt("1e309").is_err());
        assert_eq!(rt("1e-400").unwrap(), "0");
    }

    #[test]
    fn invalid_utf8_per_byte() {
        let mut r = Reader::new(b"\"a\xE2\x82b\xFF\"");
        assert_eq!(r.string().unwrap(), "a\u{FFFD}\u{FFFD}b\u{FFFD}");
    }

    #[test]
    fn depth_limit() {
        let deep = "[".repeat(100_000);
        let mut arena = Vec::new();
        assert!(Reader::new(deep.as_bytes()).value(0, &mut arena).is_err());
        assert!(Reader::new(deep.as_bytes()).skip_value(0).is_err());
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(Reader::new(ok.as_bytes()).skip_value(0).is_ok());
        assert!(Reader::new(ok.as_bytes()).value(0, &mut arena).is_ok());
        let bad = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(Reader::new(bad.as_bytes()).skip_value(0).is_err());
    }
}
