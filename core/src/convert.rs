//! Conversions of single JSON values into PostgreSQL binary COPY field bytes, for the types
//! with a fast path. Each agrees with the type's input function on what it accepts; whatever a
//! fast path does not fully understand it leaves to the input function (`None`).

use crate::error::{sqlstate, RowError};
use crate::json::{self, Kind, UnescapeError, Value};

/// Seconds between 1970-01-01 and PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_UNIX_SECS: i128 = 946_684_800;
/// PostgreSQL's timestamp range, in microseconds since 2000-01-01 (`MIN_TIMESTAMP`, `END_TIMESTAMP`).
const MIN_TIMESTAMP: i128 = -211_813_488_000_000_000;
const END_TIMESTAMP: i128 = 9_223_371_331_200_000_000;
/// PostgreSQL's date range, in days since 2000-01-01.
const MIN_DATE: i128 = -2_451_545;
const END_DATE: i128 = 2_147_483_494 - 2_451_545;

/// The unit of JSON numbers given for timestamps and dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EpochUnit {
    #[default]
    Seconds,
    Millis,
    Micros,
}

impl EpochUnit {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "s" | "seconds" => Some(Self::Seconds),
            "ms" | "milliseconds" => Some(Self::Millis),
            "us" | "microseconds" => Some(Self::Micros),
            _ => None,
        }
    }

    fn micros_exponent(self) -> i32 {
        match self {
            Self::Seconds => 6,
            Self::Millis => 3,
            Self::Micros => 0,
        }
    }
}

/// The error PostgreSQL's json parser gives for strings it cannot turn into text.
pub fn unescape_error(e: UnescapeError) -> RowError {
    match e {
        UnescapeError::Nul => RowError::new(sqlstate::UNTRANSLATABLE_CHARACTER, "unsupported Unicode escape sequence")
            .with_detail("\\u0000 cannot be converted to text."),
        UnescapeError::LoneSurrogate => {
            RowError::new(sqlstate::INVALID_TEXT_REPRESENTATION, "invalid input syntax for type json")
                .with_detail("Unicode surrogate pairs must be complete (a high surrogate followed by a low one).")
        }
    }
}

/// The text PostgreSQL's input function would get for `v`: a string's decoded text, else the
/// value's JSON text (numbers exactly as written).
pub fn text_form<'a>(v: &Value<'a>) -> Result<std::borrow::Cow<'a, [u8]>, RowError> {
    match v.kind {
        Kind::String { .. } => v.string_text().map_err(unescape_error),
        _ => Ok(std::borrow::Cow::Borrowed(v.raw)),
    }
}

/// `-?[0-9]+`: the only integer spelling the fast path takes (int2in/int4in/int8in agree).
fn canonical_integer(t: &[u8]) -> bool {
    let digits = t.strip_prefix(b"-").unwrap_or(t);
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

/// The integer an integer value gets through the fast path (written as its `bytes` low-order
/// big-endian bytes), `Ok(None)` to leave it to the input function, or the input function's
/// out-of-range error.
pub fn integer(v: &Value, bytes: u8) -> Result<Option<i64>, RowError> {
    let t: &[u8] = match v.kind {
        Kind::Number => v.raw,
        Kind::String { escaped: false } => &v.raw[1..v.raw.len() - 1],
        _ => return Ok(None),
    };
    if !canonical_integer(t) {
        return Ok(None);
    }
    let (type_name, min, max) = match bytes {
        2 => ("smallint", i16::MIN as i64, i16::MAX as i64),
        4 => ("integer", i32::MIN as i64, i32::MAX as i64),
        _ => ("bigint", i64::MIN, i64::MAX),
    };
    match plain_integer(t) {
        Some(n) if n >= min && n <= max => Ok(Some(n)),
        _ => Err(RowError::new(
            sqlstate::NUMERIC_VALUE_OUT_OF_RANGE,
            format!("value \"{}\" is out of range for type {type_name}", String::from_utf8_lossy(t)),
        )),
    }
}

/// `-?[0-9]+` as an i64, `None` when it is not that or does not fit.
fn plain_integer(t: &[u8]) -> Option<i64> {
    let (neg, digits) = match t.strip_prefix(b"-") {
        Some(d) => (true, d),
        None => (false, t),
    };
    if digits.is_empty() {
        return None;
    }
    // accumulated negative: i64::MIN has no positive twin
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_sub((d - b'0') as i64)?;
    }
    if neg {
        Some(n)
    } else {
        n.checked_neg()
    }
}

/// A uuid as `uuid_in` reads it (`string_to_uuid`): 32 hex digits, an optional hyphen after
/// any group of four but the last, optionally in braces. `None`: PostgreSQL decides.
pub fn uuid(t: &[u8]) -> Option<[u8; 16]> {
    let t = match t {
        [b'{', inner @ .., b'}'] => inner,
        _ => t,
    };
    let mut out = [0u8; 16];
    let mut at = 0;
    for (i, byte) in out.iter_mut().enumerate() {
        let hi = (*t.get(at)? as char).to_digit(16)?;
        let lo = (*t.get(at + 1)? as char).to_digit(16)?;
        *byte = (hi * 16 + lo) as u8;
        at += 2;
        if i % 2 == 1 && i < 15 && t.get(at) == Some(&b'-') {
            at += 1;
        }
    }
    (at == t.len()).then_some(out)
}

/// A bool as `boolin` reads the usual spellings; `None` for the rest (PostgreSQL decides).
pub fn bool_text(t: &[u8]) -> Option<bool> {
    match t {
        b"true" | b"t" => Some(true),
        b"false" | b"f" => Some(false),
        _ => None,
    }
}

/// A JSON number as float4/float8 bytes, or `None` (strings, overflow and underflow go to the
/// input function, which accepts or refuses them itself).
pub fn float(v: &Value, bytes: u8) -> Option<([u8; 8], usize)> {
    if v.kind != Kind::Number {
        return None;
    }
    let text = std::str::from_utf8(v.raw).ok()?;
    let mantissa_is_zero = || text.split(['e', 'E']).next().unwrap_or("").bytes().all(|b| !(b'1'..=b'9').contains(&b));
    if bytes == 4 {
        let f: f32 = text.parse().ok()?;
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&f.to_be_bytes());
        (f.is_finite() && (f != 0.0 || mantissa_is_zero())).then_some((b, 4))
    } else {
        let f: f64 = text.parse().ok()?;
        (f.is_finite() && (f != 0.0 || mantissa_is_zero())).then_some((f.to_be_bytes(), 8))
    }
}

/// A JSON number scaled by `10^scale` and rounded half to even, exactly; `None` when it does
/// not fit in an i128.
fn scaled_decimal(raw: &[u8], scale: i32) -> Option<i128> {
    // the usual case, a whole number of units: no exponent, no fraction
    if scale >= 0 {
        if let Some(n) = plain_integer(raw) {
            return (n as i128).checked_mul(10i128.checked_pow(scale as u32)?);
        }
    }
    let text = std::str::from_utf8(raw).ok()?;
    let (neg, body) = match text.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, text),
    };
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], body[i + 1..].parse::<i32>().ok()?),
        None => (body, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: String = format!("{int}{frac}").trim_start_matches('0').to_owned();
    let e10 = exp.checked_add(scale)?.checked_sub(frac.len() as i32)?;
    let mut value: i128 = 0;
    if e10 >= 0 {
        for d in digits.bytes() {
            value = value.checked_mul(10)?.checked_add((d - b'0') as i128)?;
        }
        for _ in 0..e10 {
            if value == 0 {
                break;
            }
            value = value.checked_mul(10)?;
        }
    } else {
        let cut = digits.len() as i64 + e10 as i64;
        if cut < 0 {
            return Some(0);
        }
        let (keep, dropped) = digits.split_at(cut as usize);
        for d in keep.bytes() {
            value = value.checked_mul(10)?.checked_add((d - b'0') as i128)?;
        }
        let first = dropped.bytes().next().map(|d| d - b'0').unwrap_or(0);
        let rest_nonzero = dropped.bytes().skip(1).any(|d| d != b'0');
        if first > 5 || (first == 5 && (rest_nonzero || value % 2 == 1)) {
            value = value.checked_add(1)?;
        }
    }
    Some(if neg { -value } else { value })
}

/// A JSON number of Unix epoch units as timestamp(tz) bytes: microseconds since 2000-01-01.
pub fn epoch_timestamp(v: &Value, unit: EpochUnit) -> Result<[u8; 8], RowError> {
    let out_of_range = || {
        RowError::new(
            sqlstate::DATETIME_FIELD_OVERFLOW,
            format!("timestamp out of range: \"{}\"", String::from_utf8_lossy(v.raw)),
        )
    };
    // the usual case, whole units well inside the range, in i64
    if let Some(us) = plain_integer(v.raw).and_then(|n| n.checked_mul(10i64.pow(unit.micros_exponent() as u32))) {
        if let Some(pg) = us.checked_sub((PG_EPOCH_UNIX_SECS * 1_000_000) as i64) {
            if (MIN_TIMESTAMP as i64..END_TIMESTAMP as i64).contains(&pg) {
                return Ok(pg.to_be_bytes());
            }
        }
    }
    let micros = scaled_decimal(v.raw, unit.micros_exponent()).ok_or_else(out_of_range)?;
    let pg = micros.checked_sub(PG_EPOCH_UNIX_SECS * 1_000_000).ok_or_else(out_of_range)?;
    if !(MIN_TIMESTAMP..END_TIMESTAMP).contains(&pg) {
        return Err(out_of_range());
    }
    Ok((pg as i64).to_be_bytes())
}

/// A JSON number of Unix epoch units as date bytes: the UTC day, days since 2000-01-01.
pub fn epoch_date(v: &Value, unit: EpochUnit) -> Result<[u8; 4], RowError> {
    let out_of_range = || {
        RowError::new(
            sqlstate::DATETIME_FIELD_OVERFLOW,
            format!("date out of range: \"{}\"", String::from_utf8_lossy(v.raw)),
        )
    };
    let micros = scaled_decimal(v.raw, unit.micros_exponent()).ok_or_else(out_of_range)?;
    let days = micros.div_euclid(86_400_000_000) - PG_EPOCH_UNIX_SECS / 86_400;
    if !(MIN_DATE..END_DATE).contains(&days) {
        return Err(out_of_range());
    }
    Ok((days as i32).to_be_bytes())
}

/// PostgreSQL allows at most this many array dimensions (`MAXDIM`).
const MAX_ARRAY_DIMS: usize = 6;

/// A JSON array as a PostgreSQL array literal (`{1,"a b",NULL,{2,3}}`) for `array_in`.
/// With `json_elements` (json[]/jsonb[] columns) every element, arrays included, is one JSON
/// value; otherwise nested arrays are dimensions.
pub fn array_literal(v: &Value, json_elements: bool, out: &mut Vec<u8>) -> Result<(), RowError> {
    array_literal_at(v, json_elements, out, 1)
}

fn array_literal_at(v: &Value, json_elements: bool, out: &mut Vec<u8>, depth: usize) -> Result<(), RowError> {
    if depth > MAX_ARRAY_DIMS {
        return Err(RowError::new(
            sqlstate::PROGRAM_LIMIT_EXCEEDED,
            format!("number of array dimensions ({depth}) exceeds the maximum allowed ({MAX_ARRAY_DIMS})"),
        ));
    }
    out.push(b'{');
    for (i, e) in json::array_elements(v.raw).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match e.kind {
            Kind::Null => out.extend_from_slice(b"NULL"),
            Kind::Array if !json_elements => array_literal_at(&e, json_elements, out, depth + 1)?,
            Kind::Number | Kind::Bool(_) => out.extend_from_slice(e.raw),
            Kind::String { .. } | Kind::Object | Kind::Array => {
                let text: std::borrow::Cow<[u8]> = if json_elements { e.raw.into() } else { text_form(&e)? };
                out.push(b'"');
                for &b in text.iter() {
                    if b == b'"' || b == b'\\' {
                        out.push(b'\\');
                    }
                    out.push(b);
                }
                out.push(b'"');
            }
        }
    }
    out.push(b'}');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse_value;

    fn v(s: &str) -> Value<'_> {
        parse_value(s.as_bytes()).unwrap()
    }

    #[test]
    fn integers_exact_and_range_checked() {
        assert_eq!(integer(&v("505874924095815681"), 8).unwrap(), Some(505874924095815681));
        assert_eq!(integer(&v("\"-42\""), 4).unwrap(), Some(-42));
        assert_eq!(integer(&v("-0"), 2).unwrap(), Some(0));
        assert_eq!(integer(&v("-9223372036854775808"), 8).unwrap(), Some(i64::MIN));
        assert!(integer(&v("9223372036854775808"), 8).is_err());
        let e = integer(&v("2147483648"), 4).unwrap_err();
        assert_eq!(
            (e.sqlstate, e.message.as_str()),
            ("22003", "value \"2147483648\" is out of range for type integer")
        );
        assert_eq!(integer(&v("32768"), 2).unwrap_err().message, "value \"32768\" is out of range for type smallint");
        assert_eq!(
            integer(&v("99999999999999999999"), 8).unwrap_err().message,
            "value \"99999999999999999999\" is out of range for type bigint"
        );
        // not canonical: left to the input function
        for s in ["1.5", "1e3", "\" 7\"", "\"+7\"", "true", "\"\\u0037\""] {
            assert_eq!(integer(&v(s), 4).unwrap(), None, "{s}");
        }
    }

    #[test]
    fn floats_exact_or_left_to_postgres() {
        let bytes = |f: Option<([u8; 8], usize)>| f.map(|(b, len)| b[..len].to_vec());
        assert_eq!(bytes(float(&v("0.1"), 8)), Some(0.1f64.to_be_bytes().to_vec()));
        assert_eq!(bytes(float(&v("0.1"), 4)), Some(0.1f32.to_be_bytes().to_vec()));
        assert_eq!(bytes(float(&v("-0.0"), 8)), Some((-0.0f64).to_be_bytes().to_vec()));
        assert_eq!(float(&v("1e400"), 8), None, "overflow: float8in says out of range");
        assert_eq!(float(&v("1e-400"), 8), None, "underflow: float8in says out of range");
        assert_eq!(float(&v("1e39"), 4), None);
        assert_eq!(float(&v("\"NaN\""), 8), None);
    }

    #[test]
    fn epoch_numbers() {
        let ts = |s: &str, u| i64::from_be_bytes(epoch_timestamp(&v(s), u).unwrap());
        assert_eq!(ts("946684800", EpochUnit::Seconds), 0);
        assert_eq!(ts("1542700001", EpochUnit::Seconds), (1542700001 - 946684800) * 1_000_000);
        assert_eq!(ts("1542700001.5", EpochUnit::Seconds), (1542700001 - 946684800) * 1_000_000 + 500_000);
        assert_eq!(ts("1542700001123", EpochUnit::Millis), (1542700001 - 946684800) * 1_000_000 + 123_000);
        assert_eq!(ts("1542700001123456", EpochUnit::Micros), (1542700001 - 946684800) * 1_000_000 + 123_456);
        assert_eq!(ts("1.5427e9", EpochUnit::Seconds), (1542700000 - 946684800) * 1_000_000);
        assert_eq!(ts("0.0000005", EpochUnit::Seconds), -946684800 * 1_000_000, "half to even");
        assert_eq!(ts("0.0000015", EpochUnit::Seconds), -946684800 * 1_000_000 + 2);
        assert_eq!(ts("-1", EpochUnit::Seconds), (-1 - 946684800) * 1_000_000);
        let e = epoch_timestamp(&v("1e300"), EpochUnit::Seconds).unwrap_err();
        assert_eq!((e.sqlstate, e.message.as_str()), ("22008", "timestamp out of range: \"1e300\""));
        assert!(epoch_timestamp(&v("9224318016000"), EpochUnit::Seconds).is_err());
        let d = |s: &str| i32::from_be_bytes(epoch_date(&v(s), EpochUnit::Seconds).unwrap());
        assert_eq!(d("946684800"), 0);
        assert_eq!(d("946684799"), -1);
        assert_eq!(d("1542700001"), 17855 - 10957, "2018-11-20");
    }

    #[test]
    fn array_literals() {
        let lit = |s: &str| {
            let mut out = Vec::new();
            array_literal(&v(s), false, &mut out).map(|_| String::from_utf8(out).unwrap())
        };
        assert_eq!(lit("[1, 2.5, -3]").unwrap(), "{1,2.5,-3}");
        assert_eq!(
            lit(r#"["a b", "q\"uote", "back\\slash", null, "NULL"]"#).unwrap(),
            r#"{"a b","q\"uote","back\\slash",NULL,"NULL"}"#
        );
        assert_eq!(lit("[[1,2],[3,4]]").unwrap(), "{{1,2},{3,4}}");
        assert_eq!(lit("[]").unwrap(), "{}");
        assert_eq!(lit(r#"[{"a":1}]"#).unwrap(), r#"{"{\"a\":1}"}"#);
        assert_eq!(lit("[[[[[[[1]]]]]]]").unwrap_err().sqlstate, "54000");
        assert_eq!(lit(r#"["\u0000"]"#).unwrap_err().sqlstate, "22P05");
        let mut out = Vec::new();
        array_literal(&v(r#"[{"a": 1}, [2, "x"], "s", 3]"#), true, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"{\"a\": 1}","[2, \"x\"]","\"s\"",3}"#);
    }
}
