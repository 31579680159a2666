//! The mapping itself: decoding into the reference's `BentoInput` shape and
//! building the event (`TransformBentoToEvent`).

use std::borrow::Cow;

use super::go_json::{Arena, JsonError, Node, Reader, Val, dedupe_last, marshal, write_string};
use super::go_strconv::{IntParse, exact_decimal_int, fmt_f6, fmt_v, parse_float, parse_int};
use super::go_strings::{key_matches, push_lower_trim, trim_space};
use super::go_time::parse_rfc3339;
use super::{DropReason, ErrorStage, Event, Outcome, TransformError};

// String fields of `BentoInput`, in declaration order.
const ORG_ID: usize = 0;
const METHOD_NAME: usize = 1;
const PROVIDER_NAME: usize = 2;
const SERVICE_NAME: usize = 3;
const ID: usize = 4;
const CREATED_AT: usize = 5;
const TARGET_ITEM_ID: usize = 6;
const DATA_INTERFACE: usize = 7;
const TARGET_ITEM_TYPE: usize = 8;
const REFERENCE_TYPE: usize = 9;
const REFERENCE_ID: usize = 10;
const STARTED_AT: usize = 11;
const UPDATED_AT: usize = 12;
const ENDED_AT: usize = 13;
const NSTR: usize = 14;

#[derive(Clone, Copy)]
enum Field {
    Str(usize),
    Byok,
    ReferenceCost,
    Data,
}

const FIELDS: [(&str, Field); 17] = [
    ("orgId", Field::Str(ORG_ID)),
    ("methodName", Field::Str(METHOD_NAME)),
    ("providerName", Field::Str(PROVIDER_NAME)),
    ("serviceName", Field::Str(SERVICE_NAME)),
    ("data", Field::Data),
    ("id", Field::Str(ID)),
    ("createdAt", Field::Str(CREATED_AT)),
    ("targetItemId", Field::Str(TARGET_ITEM_ID)),
    ("byok", Field::Byok),
    ("dataInterface", Field::Str(DATA_INTERFACE)),
    ("referenceCost", Field::ReferenceCost),
    ("targetItemType", Field::Str(TARGET_ITEM_TYPE)),
    ("referenceType", Field::Str(REFERENCE_TYPE)),
    ("referenceId", Field::Str(REFERENCE_ID)),
    ("startedAt", Field::Str(STARTED_AT)),
    ("updatedAt", Field::Str(UPDATED_AT)),
    ("endedAt", Field::Str(ENDED_AT)),
];

fn field_of(key: &str) -> Option<Field> {
    // Folding never changes the number of runes, and all field names are
    // ASCII; a quick length filter (a folded key may be longer in bytes).
    if key.is_ascii() {
        let k = key.as_bytes();
        // Dispatch on the length and the first letter: at most one candidate.
        let idx = match (k.len(), k.first().map(u8::to_ascii_lowercase)) {
            (5, Some(b'o')) => 0,
            (10, Some(b'm')) => 1,
            (12, Some(b'p')) => 2,
            (11, Some(b's')) => 3,
            (4, Some(b'd')) => 4,
            (2, Some(b'i')) => 5,
            (9, Some(b'c')) => 6,
            (12, Some(b't')) => 7,
            (4, Some(b'b')) => 8,
            (13, Some(b'd')) => 9,
            // referenceCost / referenceType: same length and first letter.
            (13, Some(b'r')) => {
                if k[9].eq_ignore_ascii_case(&b'c') {
                    10
                } else {
                    12
                }
            }
            (14, Some(b't')) => 11,
            (11, Some(b'r')) => 13,
            (9, Some(b's')) => 14,
            (9, Some(b'u')) => 15,
            (7, Some(b'e')) => 16,
            _ => return None,
        };
        let (name, f) = FIELDS[idx];
        return k.eq_ignore_ascii_case(name.as_bytes()).then_some(f);
    }
    FIELDS
        .iter()
        .find(|(name, _)| key.len() >= name.len() && key_matches(key, name))
        .map(|&(_, f)| f)
}

/// The decoded payload (`BentoInput`).
struct Input<'a> {
    strs: [Cow<'a, str>; NSTR],
    byok: Option<Val<'a>>,
    reference_cost: Option<Val<'a>>,
    /// Whether `data` is a map (not absent or `null`); its members are in the
    /// separate `data` vector.
    has_data: bool,
}

/// Members of the payload's `data` map.
type Data<'a> = Vec<(Cow<'a, str>, Val<'a>)>;

fn type_error(what: &str, field: &str, ty: &str) -> JsonError {
    JsonError(format!(
        "json: cannot unmarshal {what} into Go struct field BentoInput.{field} of type {ty}"
    ))
}

fn kind_name(c: Option<u8>) -> &'static str {
    match c {
        Some(b'{') => "object",
        Some(b'[') => "array",
        Some(b'"') => "string",
        Some(b't' | b'f') => "bool",
        _ => "number",
    }
}

/// `json.Unmarshal(payload, &input)`.
fn decode<'a>(
    payload: &'a [u8],
    arena: &mut Arena<'a>,
    data: &mut Data<'a>,
) -> Result<Input<'a>, JsonError> {
    let mut input = Input {
        strs: Default::default(),
        byok: None,
        reference_cost: None,
        has_data: false,
    };
    let mut r = Reader::new(payload);
    r.skip_ws();
    match r.peek() {
        Some(b'{') => {}
        Some(b'n') => {
            r.literal()?;
            r.skip_ws();
            if r.peek().is_some() {
                return Err(r.err_here("after top-level value"));
            }
            // A JSON null leaves the struct untouched.
            return Ok(input);
        }
        c => {
            // Go validates the whole input first: report syntax errors as such.
            let kind = kind_name(c);
            r.skip_value(0)?;
            r.skip_ws();
            if r.peek().is_some() {
                return Err(r.err_here("after top-level value"));
            }
            return Err(JsonError(format!(
                "json: cannot unmarshal {kind} into Go value of type transform.BentoInput"
            )));
        }
    }
    r.i += 1;
    r.skip_ws();
    if r.peek() == Some(b'}') {
        r.i += 1;
    } else {
        loop {
            r.skip_ws();
            let key = r.key()?;
            r.skip_ws();
            match field_of(&key) {
                Some(Field::Str(k)) => match r.peek() {
                    Some(b'"') => input.strs[k] = r.string()?,
                    Some(b'n') => {
                        // null leaves a string field as it was.
                        r.literal()?;
                    }
                    c => {
                        // Go reports a syntax error in the value before the type mismatch.
                        r.skip_value(1)?;
                        return Err(type_error(kind_name(c), FIELDS[field_index(k)].0, "string"));
                    }
                },
                Some(f @ (Field::Byok | Field::ReferenceCost)) => {
                    let v = r.value(1, arena)?;
                    let slot = if matches!(f, Field::Byok) {
                        &mut input.byok
                    } else {
                        &mut input.reference_cost
                    };
                    *slot = if v == Val::Null { None } else { Some(v) };
                }
                Some(Field::Data) => match r.peek() {
                    Some(b'{') => {
                        r.i += 1;
                        // A second "data" object merges into the same map.
                        input.has_data = true;
                        r.skip_ws();
                        if r.peek() == Some(b'}') {
                            r.i += 1;
                        } else {
                            loop {
                                r.skip_ws();
                                let k = r.key()?;
                                let v = r.value(2, arena)?;
                                data.push((k, v));
                                if !r.member_end()? {
                                    break;
                                }
                            }
                        }
                    }
                    Some(b'n') => {
                        r.literal()?;
                        input.has_data = false;
                        data.clear();
                    }
                    c => {
                        r.skip_value(1)?;
                        return Err(type_error(kind_name(c), "data", "map[string]interface {}"));
                    }
                },
                None => r.skip_value(1)?,
            }
            if !r.member_end()? {
                break;
            }
        }
    }
    r.skip_ws();
    if r.peek().is_some() {
        return Err(r.err_here("after top-level value"));
    }
    dedupe_last(data);
    Ok(input)
}

fn field_index(k: usize) -> usize {
    FIELDS
        .iter()
        .position(|(_, f)| matches!(f, Field::Str(i) if *i == k))
        .unwrap_or(0)
}

/// A property value, borrowed; every variant is rendered as a JSON string.
#[derive(Debug, Clone, Copy)]
enum PVal<'s> {
    Str(&'s str),
    Num(f64),
    Bool(bool),
    /// A nested array or object: `json.Marshal` text.
    Json(u32),
    Int(i64),
}

/// `toString(v)` of the reference, lazily.
fn pval<'s>(v: &'s Val<'_>) -> PVal<'s> {
    match v {
        Val::Null => PVal::Str(""),
        Val::Bool(b) => PVal::Bool(*b),
        Val::Num(f) => PVal::Num(*f),
        Val::Str(s) => PVal::Str(s),
        Val::Node(n) => PVal::Json(*n),
    }
}

/// The property value of a `data` member: the `value` member of an object
/// that has one, else the value itself.
fn data_pval<'s>(v: &'s Val<'_>, arena: &'s Arena<'_>) -> PVal<'s> {
    if let Val::Node(n) = v
        && let Node::Obj(members) = &arena[*n as usize]
        && let Some((_, inner)) = members.iter().find(|(mk, _)| mk == "value")
    {
        return pval(inner);
    }
    pval(v)
}

/// Appends the text of a property value.
fn render(p: PVal<'_>, arena: &Arena<'_>, out: &mut String) {
    match p {
        PVal::Str(s) => out.push_str(s),
        PVal::Num(f) => fmt_v(out, f),
        PVal::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        PVal::Json(n) => marshal(&Val::Node(n), arena, out),
        PVal::Int(i) => out.push_str(itoa::Buffer::new().format(i)),
    }
}

/// The text of a property value, borrowing when it is a string.
fn view<'s>(p: PVal<'s>, arena: &Arena<'_>, tmp: &'s mut String) -> &'s str {
    match p {
        PVal::Str(s) => s,
        _ => {
            tmp.clear();
            render(p, arena, tmp);
            tmp
        }
    }
}

/// Appends a property value as a JSON string (Go escaping; nested JSON text
/// is escaped a second time, as the reference does).
fn write_pval(p: PVal<'_>, arena: &Arena<'_>, tmp: &mut String, out: &mut String) {
    match p {
        PVal::Str(s) => write_string(out, s),
        PVal::Num(_) | PVal::Int(_) | PVal::Bool(_) => {
            // Digits, signs, '.', 'e' and letters: nothing to escape.
            out.push('"');
            render(p, arena, out);
            out.push('"');
        }
        PVal::Json(_) => {
            tmp.clear();
            render(p, arena, tmp);
            write_string(out, tmp);
        }
    }
}

/// Token count as the reference reads it (`strconv.ParseInt`, 0 on a syntax
/// error, saturated on overflow), with the product fix: text that is not an
/// integer literal but whose exact decimal value is an integer within `i64`
/// (`1.5e+06`, `5e2`, `5.`) counts by that value.
fn tokens(s: &str, cached: bool) -> i64 {
    match parse_int(s) {
        IntParse::Ok(v) => v,
        IntParse::Range(v) => {
            if cached {
                0
            } else {
                v
            }
        }
        IntParse::Syntax => exact_decimal_int(s).unwrap_or(0),
    }
}

/// The properties the mapping adds to those of `data`, sorted by key (the
/// order they are written in). Each entry overrides a `data` member of the
/// same key.
const STATIC_KEYS: [&str; 20] = [
    "billablePromptTokens",
    "billable_unit",
    "billable_value",
    "byok",
    "createdAt",
    "dataInterface",
    "endedAt",
    "methodName",
    "providerName",
    "referenceCost",
    "referenceId",
    "referenceType",
    "resolvedMethodName",
    "resolvedModelName",
    "resolvedProviderName",
    "serviceName",
    "startedAt",
    "targetItemId",
    "targetItemType",
    "updatedAt",
];

/// `"key":` for each of [`STATIC_KEYS`] (no key needs escaping).
const STATIC_PREFIXES: [&str; 20] = [
    "\"billablePromptTokens\":",
    "\"billable_unit\":",
    "\"billable_value\":",
    "\"byok\":",
    "\"createdAt\":",
    "\"dataInterface\":",
    "\"endedAt\":",
    "\"methodName\":",
    "\"providerName\":",
    "\"referenceCost\":",
    "\"referenceId\":",
    "\"referenceType\":",
    "\"resolvedMethodName\":",
    "\"resolvedModelName\":",
    "\"resolvedProviderName\":",
    "\"serviceName\":",
    "\"startedAt\":",
    "\"targetItemId\":",
    "\"targetItemType\":",
    "\"updatedAt\":",
];

const S_BILLABLE_PROMPT: usize = 0;
const S_BILLABLE_UNIT: usize = 1;
const S_BILLABLE_VALUE: usize = 2;
const S_BYOK: usize = 3;
const S_REFERENCE_COST: usize = 9;
const S_RESOLVED_METHOD: usize = 12;
const S_RESOLVED_MODEL: usize = 13;
const S_RESOLVED_PROVIDER: usize = 14;

/// String fields copied as properties when not empty: (static slot, field).
const STR_PROPS: [(usize, usize); 12] = [
    (4, CREATED_AT),
    (5, DATA_INTERFACE),
    (6, ENDED_AT),
    (7, METHOD_NAME),
    (8, PROVIDER_NAME),
    (10, REFERENCE_ID),
    (11, REFERENCE_TYPE),
    (15, SERVICE_NAME),
    (16, STARTED_AT),
    (17, TARGET_ITEM_ID),
    (18, TARGET_ITEM_TYPE),
    (19, UPDATED_AT),
];

/// Reusable buffers of [`transform`]; their contents never outlive a call.
#[derive(Default)]
struct Scratch {
    arena: Arena<'static>,
    data: Data<'static>,
    tmp: String,
    names: String,
    bvalue: String,
}

/// Buffers above these sizes are not kept for the next payload.
const KEEP_NODES: usize = 1024;
const KEEP_BYTES: usize = 1 << 16;

/// Empties `v` and hands back its allocation for elements of another
/// lifetime (an in-place collect over an empty iterator of a same-layout
/// type reuses the buffer).
fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

pub(super) fn transform(payload: &[u8], tenant_id: &str, environment_id: &str) -> Outcome {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut sc) => transform_with(&mut sc, payload, tenant_id, environment_id),
        Err(_) => transform_with(&mut Scratch::default(), payload, tenant_id, environment_id),
    })
}

fn transform_with(
    sc: &mut Scratch,
    payload: &[u8],
    tenant_id: &str,
    environment_id: &str,
) -> Outcome {
    let mut arena: Arena<'_> = recycle(std::mem::take(&mut sc.arena));
    let mut data: Data<'_> = recycle(std::mem::take(&mut sc.data));
    let out = run(
        payload,
        tenant_id,
        environment_id,
        &mut arena,
        &mut data,
        sc,
    );
    if arena.capacity() <= KEEP_NODES {
        sc.arena = recycle(arena);
    }
    if data.capacity() <= KEEP_NODES {
        sc.data = recycle(data);
    }
    for s in [&mut sc.tmp, &mut sc.names, &mut sc.bvalue] {
        if s.capacity() > KEEP_BYTES {
            *s = String::new();
        }
    }
    out
}

fn run<'a>(
    payload: &'a [u8],
    tenant_id: &str,
    environment_id: &str,
    arena: &mut Arena<'a>,
    data: &mut Data<'a>,
    sc: &mut Scratch,
) -> Outcome {
    let input = match decode(payload, arena, data) {
        Ok(i) => i,
        Err(e) => {
            return Outcome::Error(TransformError {
                stage: ErrorStage::Decode,
                message: e.0,
            });
        }
    };
    let arena: &Arena<'a> = arena;
    let data: &Data<'a> = data;
    let s = &input.strs;
    // Validation (drop), in the reference's order.
    let drop = if s[ORG_ID].is_empty() {
        Some(DropReason::MissingOrgId)
    } else if s[METHOD_NAME].is_empty() {
        Some(DropReason::MissingMethodName)
    } else if s[PROVIDER_NAME].is_empty() && s[SERVICE_NAME].is_empty() {
        Some(DropReason::MissingProviderName)
    } else if s[ID].is_empty() {
        Some(DropReason::MissingId)
    } else if s[CREATED_AT].is_empty() {
        Some(DropReason::MissingCreatedAt)
    } else {
        None
    };
    if let Some(d) = drop {
        return Outcome::Dropped(d);
    }

    // The data members the rules read (every lookup of the reference only
    // ever finds a `data` member: no added property has these keys).
    let (mut model_at, mut prompt_at, mut cached_at) = (None, None, None);
    let (mut chars_at, mut duration_at, mut channels_at) = (None, None, None);
    if input.has_data {
        for (i, (k, _)) in data.iter().enumerate() {
            let slot = match k.as_ref() {
                "modelName" => &mut model_at,
                "promptTokens" => &mut prompt_at,
                "cachedPromptTokens" => &mut cached_at,
                "numCharacters" => &mut chars_at,
                "durationMS" => &mut duration_at,
                "channels" => &mut channels_at,
                _ => continue,
            };
            *slot = Some(i);
        }
    }
    let prop = |at: Option<usize>| at.map(|i| data_pval(&data[i].1, arena));

    let Scratch {
        tmp, names, bvalue, ..
    } = sc;

    // Resolved names: provider | method | model in one buffer.
    names.clear();
    if !s[PROVIDER_NAME].is_empty() {
        push_lower_trim(names, &s[PROVIDER_NAME]);
    } else if !s[SERVICE_NAME].is_empty() {
        push_lower_trim(names, &s[SERVICE_NAME]);
    }
    let provider_end = names.len();
    if !s[METHOD_NAME].is_empty() {
        if s[METHOD_NAME] == "BEDROCK_LLM" {
            names.push_str("-modeling");
        } else {
            names.push('-');
            push_lower_trim(names, &s[METHOD_NAME]);
        }
    }
    let method_end = names.len();
    if let Some(i) = model_at {
        let m = view(data_pval(&data[i].1, arena), arena, tmp);
        if !m.is_empty() {
            names.push('-');
            push_lower_trim(names, m);
        } else {
            // The fallback: the raw member (e.g. the whole `{"value":null}`).
            let m = view(pval(&data[i].1), arena, tmp);
            if !m.is_empty() {
                names.push('-');
                push_lower_trim(names, m);
            }
        }
    }
    let names: &str = names;
    let event_name = trim_space(names).to_owned();

    let mut statics: [Option<PVal<'_>>; 20] = [None; 20];
    statics[S_RESOLVED_PROVIDER] = Some(PVal::Str(&names[..provider_end]));
    statics[S_RESOLVED_METHOD] = Some(PVal::Str(&names[provider_end..method_end]));
    statics[S_RESOLVED_MODEL] = Some(PVal::Str(&names[method_end..]));
    if let Some(b) = &input.byok {
        statics[S_BYOK] = Some(pval(b));
    }
    if let Some(c) = &input.reference_cost {
        statics[S_REFERENCE_COST] = Some(pval(c));
    }
    for (slot, idx) in STR_PROPS {
        if !s[idx].is_empty() {
            statics[slot] = Some(PVal::Str(&s[idx]));
        }
    }

    // billablePromptTokens = promptTokens − cachedPromptTokens (wrapping, as Go).
    if let Some(p) = prop(prompt_at) {
        let prompt = tokens(view(p, arena, tmp), false);
        let cached = match prop(cached_at) {
            Some(c) => {
                let t = view(c, arena, tmp);
                if t.is_empty() { 0 } else { tokens(t, true) }
            }
            None => 0,
        };
        statics[S_BILLABLE_PROMPT] = Some(PVal::Int(prompt.wrapping_sub(cached)));
    }

    // billable_value / billable_unit.
    bvalue.clear();
    let bunit = if let Some(n) = prop(chars_at) {
        bvalue.push_str(view(n, arena, tmp));
        "characters"
    } else if let Some(d) = prop(duration_at) {
        bvalue.push_str(view(d, arena, tmp));
        "milliseconds"
    } else {
        ""
    };
    if !bvalue.is_empty()
        && let Some(ch) = prop(channels_at)
        && let (Ok(c), Ok(b)) = (parse_float(view(ch, arena, tmp)), parse_float(bvalue))
        && c > 0.0
        && b > 0.0
    {
        bvalue.clear();
        fmt_f6(bvalue, b * c);
    }
    let bvalue: &str = bvalue;
    statics[S_BILLABLE_VALUE] = Some(PVal::Str(bvalue));
    statics[S_BILLABLE_UNIT] = Some(PVal::Str(bunit));

    // Timestamp.
    let created = &s[CREATED_AT];
    let ts = match parse_rfc3339(created) {
        Ok(t) => t,
        Err(e) => {
            let mut m = String::from("parsing time ");
            write_string(&mut m, created);
            m.push_str(": ");
            m.push_str(e.0);
            return Outcome::Error(TransformError {
                stage: ErrorStage::Timestamp,
                message: m,
            });
        }
    };
    let mut timestamp = String::with_capacity(36);
    if let Err(e) = ts.write_rfc3339(&mut timestamp) {
        return Outcome::Error(TransformError {
            stage: ErrorStage::Encode,
            message: format!("json: error calling MarshalJSON for type time.Time: {e}"),
        });
    }

    // Serialize like json.Marshal(events.Event).
    let mut json = String::with_capacity(payload.len() + 640);
    json.push_str("{\"id\":");
    write_string(&mut json, &s[ID]);
    json.push_str(",\"tenant_id\":");
    write_string(&mut json, tenant_id);
    json.push_str(",\"environment_id\":");
    write_string(&mut json, environment_id);
    json.push_str(",\"event_name\":");
    write_string(&mut json, &event_name);
    json.push_str(",\"properties\":{");
    // Merge the sorted `data` members with the sorted added properties; an
    // added property replaces a member of the same key.
    let members: &[(Cow<'_, str>, Val<'_>)] = if input.has_data { data } else { &[] };
    let mut first = true;
    let mut di = 0;
    for (slot, value) in statics.iter().enumerate() {
        let Some(value) = *value else {
            continue;
        };
        let key = STATIC_KEYS[slot].as_bytes();
        while let Some(m) = members.get(di) {
            match m.0.as_bytes().cmp(key) {
                std::cmp::Ordering::Less => {
                    write_member(m, arena, tmp, &mut json, &mut first);
                    di += 1;
                }
                std::cmp::Ordering::Equal => {
                    di += 1;
                    break;
                }
                std::cmp::Ordering::Greater => break,
            }
        }
        if !std::mem::take(&mut first) {
            json.push(',');
        }
        json.push_str(STATIC_PREFIXES[slot]);
        write_pval(value, arena, tmp, &mut json);
    }
    for m in &members[di..] {
        write_member(m, arena, tmp, &mut json, &mut first);
    }
    json.push_str("},\"source\":");
    write_string(&mut json, &s[TARGET_ITEM_ID]);
    json.push_str(",\"timestamp\":\"");
    json.push_str(&timestamp);
    json.push_str("\",\"ingested_at\":\"0001-01-01T00:00:00Z\",\"customer_id\":\"\",\"external_customer_id\":");
    write_string(&mut json, &s[ORG_ID]);
    json.push('}');

    Outcome::Event(Event {
        id: s[ID].clone().into_owned(),
        external_customer_id: s[ORG_ID].clone().into_owned(),
        event_name,
        timestamp,
        json,
    })
}

/// Appends `,"key":"value"` (no comma before the first) for a `data` member.
fn write_member(
    (k, v): &(Cow<'_, str>, Val<'_>),
    arena: &Arena<'_>,
    tmp: &mut String,
    json: &mut String,
    first: &mut bool,
) {
    if !std::mem::take(first) {
        json.push(',');
    }
    write_string(json, k);
    json.push(':');
    write_pval(data_pval(v, arena), arena, tmp, json);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_in_a_field_value_come_before_type_errors() {
        let msg = |p: &str| match crate::transform::transform(p.as_bytes(), "t", "e") {
            crate::transform::Outcome::Error(e) => e.message,
            other => panic!("{p}: {other:?}"),
        };
        assert_eq!(
            msg(r#"{"id":"x","orgId": "#),
            "unexpected end of JSON input"
        );
        assert!(msg(r#"{"orgId": @}"#).starts_with("invalid character '@'"));
        assert!(msg(r#"{"data": [1,}"#).starts_with("invalid character '}'"));
        assert_eq!(
            msg(r#"{"id": 5}"#),
            "json: cannot unmarshal number into Go struct field BentoInput.id of type string"
        );
    }

    #[test]
    fn static_keys_sorted_and_prefixed() {
        assert!(STATIC_KEYS.windows(2).all(|w| w[0] < w[1]));
        for (k, p) in STATIC_KEYS.iter().zip(STATIC_PREFIXES) {
            assert_eq!(p, format!("\"{k}\":"));
        }
        for (slot, idx) in STR_PROPS {
            assert_eq!(STATIC_KEYS[slot], FIELDS[field_index(idx)].0);
        }
        assert_eq!(STATIC_KEYS[S_BYOK], "byok");
        assert_eq!(STATIC_KEYS[S_REFERENCE_COST], "referenceCost");
        assert_eq!(STATIC_KEYS[S_RESOLVED_METHOD], "resolvedMethodName");
        assert_eq!(STATIC_KEYS[S_RESOLVED_MODEL], "resolvedModelName");
        assert_eq!(STATIC_KEYS[S_RESOLVED_PROVIDER], "resolvedProviderName");
        assert_eq!(STATIC_KEYS[S_BILLABLE_PROMPT], "billablePromptTokens");
        assert_eq!(STATIC_KEYS[S_BILLABLE_UNIT], "billable_unit");
        assert_eq!(STATIC_KEYS[S_BILLABLE_VALUE], "billable_value");
    }

    #[test]
    fn field_dispatch_matches_linear_search() {
        let linear = |key: &str| {
            FIELDS
                .iter()
                .position(|(name, _)| key.len() == name.len() && key.eq_ignore_ascii_case(name))
        };
        let index = |f: Option<Field>| {
            f.map(|f| {
                FIELDS
                    .iter()
                    .position(|(_, g)| match (f, *g) {
                        (Field::Str(a), Field::Str(b)) => a == b,
                        (Field::Byok, Field::Byok)
                        | (Field::ReferenceCost, Field::ReferenceCost)
                        | (Field::Data, Field::Data) => true,
                        _ => false,
                    })
                    .unwrap()
            })
        };
        for (name, _) in FIELDS {
            for k in [
                name.to_string(),
                name.to_ascii_uppercase(),
                name.to_ascii_lowercase(),
                format!("{name}x"),
                name[1..].to_string(),
                format!("x{}", &name[1..]),
            ] {
                assert_eq!(index(field_of(&k)), linear(&k), "{k}");
            }
        }
        for k in [
            "",
            "x",
            "referenceXost",
            "referenceTypf",
            "dataInterfacE",
            "DATA",
        ] {
            assert_eq!(index(field_of(k)), linear(k), "{k}");
        }
    }

    #[test]
    fn scratch_buffers_are_reused() {
        let v: Vec<(Cow<'static, str>, Val<'static>)> = Vec::with_capacity(16);
        let w: Data<'_> = recycle(v);
        assert!(w.capacity() >= 16);
    }
}
