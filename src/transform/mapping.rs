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
        return FIELDS
            .iter()
            .find(|(name, _)| name.len() == k.len() && k.eq_ignore_ascii_case(name.as_bytes()))
            .map(|&(_, f)| f);
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
    data: Option<Vec<(Cow<'a, str>, Val<'a>)>>,
}

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
fn decode<'a>(payload: &'a [u8], arena: &mut Arena<'a>) -> Result<Input<'a>, JsonError> {
    let mut input = Input {
        strs: Default::default(),
        byok: None,
        reference_cost: None,
        data: None,
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
                    c => return Err(type_error(kind_name(c), FIELDS[field_index(k)].0, "string")),
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
                        let data = input.data.get_or_insert_with(Vec::new);
                        r.skip_ws();
                        if r.peek() == Some(b'}') {
                            r.i += 1;
                        } else {
                            loop {
                                r.skip_ws();
                                let k = r.key()?;
                                let v = r.value(2, arena)?;
                                data.push((k, v));
                                r.skip_ws();
                                match r.peek() {
                                    Some(b',') => r.i += 1,
                                    Some(b'}') => {
                                        r.i += 1;
                                        break;
                                    }
                                    _ => return Err(r.err_here("after object key:value pair")),
                                }
                            }
                        }
                    }
                    Some(b'n') => {
                        r.literal()?;
                        input.data = None;
                    }
                    c => {
                        return Err(type_error(kind_name(c), "data", "map[string]interface {}"));
                    }
                },
                None => r.skip_value(1)?,
            }
            r.skip_ws();
            match r.peek() {
                Some(b',') => r.i += 1,
                Some(b'}') => {
                    r.i += 1;
                    break;
                }
                _ => return Err(r.err_here("after object key:value pair")),
            }
        }
    }
    r.skip_ws();
    if r.peek().is_some() {
        return Err(r.err_here("after top-level value"));
    }
    if let Some(d) = input.data.as_mut() {
        dedupe_last(d);
    }
    Ok(input)
}

fn field_index(k: usize) -> usize {
    FIELDS
        .iter()
        .position(|(_, f)| matches!(f, Field::Str(i) if *i == k))
        .unwrap_or(0)
}

/// A property value; every variant is rendered as a JSON string.
#[derive(Debug, Clone)]
enum PVal<'a> {
    Str(Cow<'a, str>),
    Num(f64),
    Bool(bool),
    Json(Val<'a>),
    Int(i64),
}

/// `toString(v)` of the reference, lazily.
fn pval<'a>(v: &Val<'a>) -> PVal<'a> {
    match v {
        Val::Null => PVal::Str(Cow::Borrowed("")),
        Val::Bool(b) => PVal::Bool(*b),
        Val::Num(f) => PVal::Num(*f),
        Val::Str(s) => PVal::Str(s.clone()),
        Val::Node(_) => PVal::Json(v.clone()),
    }
}

/// Appends the text of a property value.
fn render(p: &PVal<'_>, arena: &Arena<'_>, out: &mut String) {
    match p {
        PVal::Str(s) => out.push_str(s),
        PVal::Num(f) => fmt_v(out, *f),
        PVal::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        PVal::Json(v) => marshal(v, arena, out),
        PVal::Int(i) => out.push_str(itoa::Buffer::new().format(*i)),
    }
}

/// The text of a property value, borrowing when it is a string.
fn view<'s>(p: &'s PVal<'_>, arena: &Arena<'_>, tmp: &'s mut String) -> &'s str {
    match p {
        PVal::Str(s) => s,
        _ => {
            tmp.clear();
            render(p, arena, tmp);
            tmp
        }
    }
}

fn lookup<'p, 'a>(props: &'p [(Cow<'a, str>, PVal<'a>)], key: &str) -> Option<&'p PVal<'a>> {
    props.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
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

pub(super) fn transform(payload: &[u8], tenant_id: &str, environment_id: &str) -> Outcome {
    let mut arena: Arena<'_> = Vec::new();
    let input = match decode(payload, &mut arena) {
        Ok(i) => i,
        Err(e) => {
            return Outcome::Error(TransformError {
                stage: ErrorStage::Decode,
                message: e.0,
            });
        }
    };
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

    let mut props: Vec<(Cow<'_, str>, PVal<'_>)> = Vec::with_capacity(32);
    if let Some(data) = &input.data {
        for (k, v) in data {
            let p = match v {
                Val::Node(n) => match &arena[*n as usize] {
                    Node::Obj(members) => match members.iter().find(|(mk, _)| mk == "value") {
                        Some((_, inner)) => pval(inner),
                        None => pval(v),
                    },
                    Node::Arr(_) => pval(v),
                },
                _ => pval(v),
            };
            props.push((k.clone(), p));
        }
    }

    let mut tmp = String::new();
    // Resolved names.
    let mut provider = String::new();
    if !s[PROVIDER_NAME].is_empty() {
        push_lower_trim(&mut provider, &s[PROVIDER_NAME]);
    } else if !s[SERVICE_NAME].is_empty() {
        push_lower_trim(&mut provider, &s[SERVICE_NAME]);
    }
    let mut model = String::new();
    let model_prop = lookup(&props, "modelName").map(|p| view(p, &arena, &mut tmp).to_owned());
    match model_prop {
        Some(m) if !m.is_empty() => {
            model.push('-');
            push_lower_trim(&mut model, &m);
        }
        _ => {
            if let Some(data) = &input.data
                && let Some((_, raw)) = data.iter().rev().find(|(k, _)| k == "modelName")
            {
                tmp.clear();
                render(&pval(raw), &arena, &mut tmp);
                if !tmp.is_empty() {
                    model.push('-');
                    push_lower_trim(&mut model, &tmp);
                }
            }
        }
    }
    let mut method = String::new();
    if !s[METHOD_NAME].is_empty() {
        if s[METHOD_NAME] == "BEDROCK_LLM" {
            method.push_str("-modeling");
        } else {
            method.push('-');
            push_lower_trim(&mut method, &s[METHOD_NAME]);
        }
    }
    let mut event_name = String::with_capacity(provider.len() + method.len() + model.len());
    event_name.push_str(&provider);
    event_name.push_str(&method);
    event_name.push_str(&model);
    let event_name = {
        let t = trim_space(&event_name);
        if t.len() == event_name.len() {
            event_name
        } else {
            t.to_owned()
        }
    };

    props.push((
        Cow::Borrowed("resolvedProviderName"),
        PVal::Str(Cow::Owned(provider)),
    ));
    props.push((
        Cow::Borrowed("resolvedModelName"),
        PVal::Str(Cow::Owned(model)),
    ));
    props.push((
        Cow::Borrowed("resolvedMethodName"),
        PVal::Str(Cow::Owned(method)),
    ));
    if let Some(b) = &input.byok {
        props.push((Cow::Borrowed("byok"), pval(b)));
    }
    let optional = |key: &'static str, idx: usize| {
        (!s[idx].is_empty()).then(|| (Cow::Borrowed(key), PVal::Str(s[idx].clone())))
    };
    props.extend(optional("dataInterface", DATA_INTERFACE));
    props.extend(optional("serviceName", SERVICE_NAME));
    props.extend(optional("providerName", PROVIDER_NAME));
    if let Some(c) = &input.reference_cost {
        props.push((Cow::Borrowed("referenceCost"), pval(c)));
    }
    for (key, idx) in [
        ("methodName", METHOD_NAME),
        ("targetItemType", TARGET_ITEM_TYPE),
        ("targetItemId", TARGET_ITEM_ID),
        ("referenceType", REFERENCE_TYPE),
        ("referenceId", REFERENCE_ID),
        ("startedAt", STARTED_AT),
        ("createdAt", CREATED_AT),
        ("updatedAt", UPDATED_AT),
        ("endedAt", ENDED_AT),
    ] {
        props.extend(optional(key, idx));
    }

    // billablePromptTokens = promptTokens − cachedPromptTokens (wrapping, as Go).
    if let Some(p) = lookup(&props, "promptTokens") {
        let prompt = tokens(view(p, &arena, &mut tmp), false);
        let cached = match lookup(&props, "cachedPromptTokens") {
            Some(c) => {
                let t = view(c, &arena, &mut tmp);
                if t.is_empty() { 0 } else { tokens(t, true) }
            }
            None => 0,
        };
        props.push((
            Cow::Borrowed("billablePromptTokens"),
            PVal::Int(prompt.wrapping_sub(cached)),
        ));
    }

    // billable_value / billable_unit.
    let (mut bvalue, bunit): (String, &str) = if let Some(n) = lookup(&props, "numCharacters") {
        (view(n, &arena, &mut tmp).to_owned(), "characters")
    } else if let Some(d) = lookup(&props, "durationMS") {
        (view(d, &arena, &mut tmp).to_owned(), "milliseconds")
    } else {
        (String::new(), "")
    };
    if !bvalue.is_empty()
        && let Some(ch) = lookup(&props, "channels")
        && let (Ok(c), Ok(b)) = (
            parse_float(view(ch, &arena, &mut tmp)),
            parse_float(&bvalue),
        )
        && c > 0.0
        && b > 0.0
    {
        bvalue.clear();
        fmt_f6(&mut bvalue, b * c);
    }
    props.push((
        Cow::Borrowed("billable_value"),
        PVal::Str(Cow::Owned(bvalue)),
    ));
    props.push((
        Cow::Borrowed("billable_unit"),
        PVal::Str(Cow::Borrowed(bunit)),
    ));

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

    dedupe_last(&mut props);

    // Serialize like json.Marshal(events.Event).
    let mut json = String::with_capacity(payload.len() + 512);
    json.push_str("{\"id\":");
    write_string(&mut json, &s[ID]);
    json.push_str(",\"tenant_id\":");
    write_string(&mut json, tenant_id);
    json.push_str(",\"environment_id\":");
    write_string(&mut json, environment_id);
    json.push_str(",\"event_name\":");
    write_string(&mut json, &event_name);
    json.push_str(",\"properties\":{");
    for (i, (k, v)) in props.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        write_string(&mut json, k);
        json.push(':');
        match v {
            PVal::Str(s) => write_string(&mut json, s),
            PVal::Num(_) | PVal::Int(_) | PVal::Bool(_) => {
                // Digits, signs, '.', 'e' and letters: nothing to escape.
                json.push('"');
                render(v, &arena, &mut json);
                json.push('"');
            }
            PVal::Json(_) => {
                tmp.clear();
                render(v, &arena, &mut tmp);
                write_string(&mut json, &tmp);
            }
        }
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
