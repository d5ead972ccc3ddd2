//! PostgreSQL's `numeric` on-disk value, built from a JSON number's text exactly as
//! `numeric_in(text, typmod -1)` builds it (`src/backend/utils/adt/numeric.c`:
//! `set_var_from_str`, `strip_var`, `make_result`): base-10000 digits, weight, sign and display
//! scale, in the short header form when it fits. The datum is returned with its 4-byte varlena
//! header, as jsonb stores it inside its containers.

const NBASE_DIGITS: i32 = 4;
const NUMERIC_POS: u16 = 0x0000;
const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_SHORT: u16 = 0x8000;
const NUMERIC_SHORT_SIGN_MASK: u16 = 0x2000;
const NUMERIC_SHORT_DSCALE_SHIFT: u16 = 7;
const NUMERIC_SHORT_DSCALE_MAX: i32 = 63;
const NUMERIC_SHORT_WEIGHT_SIGN_MASK: u16 = 0x0040;
const NUMERIC_SHORT_WEIGHT_MASK: u16 = 0x003F;
const NUMERIC_SHORT_WEIGHT_MAX: i32 = 63;
const NUMERIC_SHORT_WEIGHT_MIN: i32 = -64;
const NUMERIC_DSCALE_MASK: i32 = 0x3FFF;

/// Why a number has no numeric datum built here (PostgreSQL decides then).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumericError {
    /// Not a JSON number.
    Syntax,
    /// Beyond what the on-disk format holds ("value overflows numeric format").
    Overflow,
}

/// The numeric datum (4-byte varlena header included, as `palloc`'d by `make_result`) for a
/// JSON number's text.
pub fn numeric_datum(text: &[u8]) -> Result<Vec<u8>, NumericError> {
    let mut out = Vec::with_capacity(16);
    numeric_datum_into(text, &mut out)?;
    Ok(out)
}

/// [`numeric_datum`], appended to `out` (left as it was on an error); no allocation for
/// numbers of up to 100 digits.
pub fn numeric_datum_into(text: &[u8], out: &mut Vec<u8>) -> Result<(), NumericError> {
    const STACK: usize = 112;
    let mut i = 0;
    let negative = text.first() == Some(&b'-');
    if negative {
        i += 1;
    }
    // decimal digits, with NBASE_DIGITS zeros of padding at the front (as set_var_from_str)
    // and NBASE_DIGITS - 1 at the end
    let mut stack = [0u8; STACK];
    let mut heap = Vec::new();
    let dec: &mut [u8] = if text.len() + 8 <= STACK {
        &mut stack[..]
    } else {
        heap.resize(text.len() + 8, 0);
        &mut heap[..]
    };
    let mut n = NBASE_DIGITS as usize;
    let (mut dweight, mut dscale, mut have_dp, mut any) = (-1i64, 0i64, false, false);
    while i < text.len() {
        match text[i] {
            c @ b'0'..=b'9' => {
                dec[n] = c - b'0';
                n += 1;
                any = true;
                if have_dp {
                    dscale += 1;
                } else {
                    dweight += 1;
                }
            }
            b'.' if !have_dp => have_dp = true,
            _ => break,
        }
        i += 1;
    }
    if !any {
        return Err(NumericError::Syntax);
    }
    let ddigits = n as i64 - NBASE_DIGITS as i64;
    if i < text.len() {
        if text[i] != b'e' && text[i] != b'E' {
            return Err(NumericError::Syntax);
        }
        let exponent = exponent(&text[i + 1..])?;
        if exponent >= i32::MAX as i64 / 2 || exponent <= -(i32::MAX as i64 / 2) {
            return Err(NumericError::Overflow);
        }
        dweight += exponent;
        dscale -= exponent;
        if dscale < 0 {
            dscale = 0;
        }
    }
    // (the NBASE_DIGITS - 1 zeros at the end are already there)

    // to base-10000 digits, leading and trailing zero digits dropped as make_result drops them
    let nd = NBASE_DIGITS as i64;
    let mut weight = if dweight >= 0 { (dweight + 1 + nd - 1) / nd - 1 } else { -((-dweight - 1) / nd + 1) };
    let offset = (weight + 1) * nd - (dweight + 1);
    let ndigits = ((ddigits + offset + nd - 1) / nd).max(0) as usize;
    let digit = |k: usize| -> i16 {
        let at = (nd - offset) as usize + k * NBASE_DIGITS as usize;
        dec[at] as i16 * 1000 + dec[at + 1] as i16 * 100 + dec[at + 2] as i16 * 10 + dec[at + 3] as i16
    };
    let mut start = 0;
    while start < ndigits && digit(start) == 0 {
        start += 1;
        weight -= 1;
    }
    let mut end = ndigits;
    while end > start && digit(end - 1) == 0 {
        end -= 1;
    }
    let mut sign = if negative { NUMERIC_NEG } else { NUMERIC_POS };
    if start == end {
        weight = 0;
        sign = NUMERIC_POS;
    }
    let count = end - start;
    let short = dscale <= NUMERIC_SHORT_DSCALE_MAX as i64
        && weight <= NUMERIC_SHORT_WEIGHT_MAX as i64
        && weight >= NUMERIC_SHORT_WEIGHT_MIN as i64;
    if short {
        out.extend_from_slice(&varlena_header(4 + 2 + 2 * count));
        let header = (if sign == NUMERIC_NEG { NUMERIC_SHORT | NUMERIC_SHORT_SIGN_MASK } else { NUMERIC_SHORT })
            | ((dscale as u16) << NUMERIC_SHORT_DSCALE_SHIFT)
            | (if weight < 0 { NUMERIC_SHORT_WEIGHT_SIGN_MASK } else { 0 })
            | (weight as i16 as u16 & NUMERIC_SHORT_WEIGHT_MASK);
        out.extend_from_slice(&header.to_ne_bytes());
    } else {
        // the int16 fields must hold weight and dscale
        if weight != weight as i16 as i64 || dscale != (dscale as i32 & NUMERIC_DSCALE_MASK) as i64 {
            return Err(NumericError::Overflow);
        }
        out.extend_from_slice(&varlena_header(4 + 4 + 2 * count));
        let sign_dscale = sign | (dscale as i32 & NUMERIC_DSCALE_MASK) as u16;
        out.extend_from_slice(&sign_dscale.to_ne_bytes());
        out.extend_from_slice(&(weight as i16).to_ne_bytes());
    }
    for k in start..end {
        out.extend_from_slice(&digit(k).to_ne_bytes());
    }
    Ok(())
}

/// The numeric datum `numeric_in(text, typmod)` makes for a column of type `numeric(p,s)`
/// (`typmod` < 0: plain numeric): rounded half away from zero to the scale, as `apply_typmod`
/// rounds. `Err` where PostgreSQL must decide: a spelling other than `-?digits[.digits][e±n]`,
/// or a value the typmod overflows (PostgreSQL raises its own error for it).
pub fn numeric_datum_typmod(text: &[u8], typmod: i32) -> Result<Vec<u8>, NumericError> {
    if typmod < 4 {
        return numeric_datum(text);
    }
    let precision = ((typmod - 4) >> 16) & 0xffff;
    let scale = (((typmod - 4) & 0x7ff) ^ 1024) - 1024;
    // sign, the digits, and where the decimal point falls among them
    let (negative, rest) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let mantissa_end = rest.iter().position(|b| *b == b'e' || *b == b'E').unwrap_or(rest.len());
    let (mantissa, exponent) = rest.split_at(mantissa_end);
    let mut digits: Vec<u8> = Vec::with_capacity(mantissa.len() + 1);
    let mut point: i64 = -1;
    for &b in mantissa {
        match b {
            b'0'..=b'9' => digits.push(b - b'0'),
            b'.' if point < 0 => point = digits.len() as i64,
            _ => return Err(NumericError::Syntax),
        }
    }
    if digits.is_empty() {
        return Err(NumericError::Syntax);
    }
    if point < 0 {
        point = digits.len() as i64;
    }
    if !exponent.is_empty() {
        let e = self::exponent(&exponent[1..])?;
        // far beyond any typmod (or any numeric): PostgreSQL decides
        if !(-2000..=2000).contains(&e) {
            return Err(NumericError::Overflow);
        }
        point += e;
    }
    // keep the digits up to `scale` places after the point, rounding on the next one
    let keep = point + scale as i64;
    let mut kept: Vec<u8> = if keep <= 0 {
        Vec::new()
    } else {
        let mut k = digits.get(..(keep as usize).min(digits.len())).unwrap_or(&[]).to_vec();
        k.resize(keep as usize, 0);
        k
    };
    let next = if keep < 0 { 0 } else { digits.get(keep as usize).copied().unwrap_or(0) };
    if next >= 5 {
        // add one unit of the last kept place; all nines (or nothing kept) carry into a new digit
        match kept.iter().rposition(|d| *d != 9) {
            Some(i) => {
                kept[i] += 1;
                kept[i + 1..].iter_mut().for_each(|d| *d = 0);
            }
            None => {
                kept.iter_mut().for_each(|d| *d = 0);
                kept.insert(0, 1);
                point += 1;
            }
        }
    }
    // the digits before the point, from the first nonzero one, must fit precision − scale
    match kept.iter().position(|d| *d != 0) {
        None => {
            let zero = if scale > 0 { format!("0.{}", "0".repeat(scale as usize)) } else { "0".into() };
            return numeric_datum(zero.as_bytes());
        }
        Some(first) if point - first as i64 > (precision - scale) as i64 => return Err(NumericError::Overflow),
        Some(_) => {}
    }
    // the rounded value as plain decimal text, `scale` places after the point
    let mut out = Vec::with_capacity(kept.len() + 3);
    if negative {
        out.push(b'-');
    }
    let int_len = point.max(0) as usize;
    let int_digits: Vec<u8> = (0..int_len).map(|i| kept.get(i).copied().unwrap_or(0)).collect();
    if int_digits.is_empty() {
        out.push(b'0');
    }
    out.extend(int_digits.iter().map(|d| d + b'0'));
    if scale > 0 {
        out.push(b'.');
        for i in 0..scale as i64 {
            let at = point + i;
            let d = if at < 0 { 0 } else { kept.get(at as usize).copied().unwrap_or(0) };
            out.push(d + b'0');
        }
    }
    numeric_datum(&out)
}

/// An exponent's digits after the `e`: an optional sign, then decimal digits only (a second
/// sign, spaces or anything else is for PostgreSQL); beyond i64, an overflow.
fn exponent(t: &[u8]) -> Result<i64, NumericError> {
    let (negative, digits) = match t.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, t),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(NumericError::Syntax);
    }
    let mut value: i64 = 0;
    for &d in digits {
        value = value.checked_mul(10).and_then(|v| v.checked_add((d - b'0') as i64)).ok_or(NumericError::Overflow)?;
    }
    Ok(if negative { -value } else { value })
}

/// A 4-byte varlena header for `len` bytes in all (SET_VARSIZE on a little-endian machine).
pub fn varlena_header(len: usize) -> [u8; 4] {
    #[cfg(target_endian = "little")]
    {
        ((len as u32) << 2).to_ne_bytes()
    }
    #[cfg(target_endian = "big")]
    {
        ((len as u32) & 0x3FFF_FFFF).to_ne_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(text: &str) -> (u16, Vec<i16>) {
        let d = numeric_datum(text.as_bytes()).unwrap();
        let header = u16::from_ne_bytes([d[4], d[5]]);
        let digits = d[6..].chunks(2).map(|c| i16::from_ne_bytes([c[0], c[1]])).collect();
        (header, digits)
    }

    #[test]
    fn digits_weight_and_scale_as_numeric_in_makes_them() {
        // 12345.678 = 1|2345.6780 : weight 1, dscale 3
        let (h, d) = parts("12345.678");
        assert_eq!(d, [1, 2345, 6780]);
        assert_eq!(h, NUMERIC_SHORT | (3 << 7) | 1);
        // zero is positive, weight 0, and keeps its scale
        assert_eq!(parts("-0.00"), (NUMERIC_SHORT | (2 << 7), vec![]));
        // exponents move the weight and lower the scale (never below 0)
        assert_eq!(parts("1e8"), (NUMERIC_SHORT | 2, vec![1]));
        assert_eq!(
            parts("1.5E-3").0,
            NUMERIC_SHORT | (4 << 7) | NUMERIC_SHORT_WEIGHT_SIGN_MASK | (-1i16 as u16 & 0x3F)
        );
        assert_eq!(parts("-7").0, NUMERIC_SHORT | NUMERIC_SHORT_SIGN_MASK);
        // beyond the short form: a long header
        let d = numeric_datum(b"1e300").unwrap();
        assert_eq!(u16::from_ne_bytes([d[4], d[5]]), 0);
        assert_eq!(i16::from_ne_bytes([d[6], d[7]]), 75);
        assert_eq!(numeric_datum(b"1e99999999999"), Err(NumericError::Overflow));
        assert_eq!(numeric_datum(b"1e-99999"), Err(NumericError::Overflow));
    }

    fn typmod(p: i32, s: i32) -> i32 {
        ((p << 16) | (s & 0x7ff)) + 4
    }

    #[test]
    fn typmods_round_half_away_from_zero_and_overflow_as_apply_typmod() {
        let same = |text: &str, p, s, as_: &str| {
            assert_eq!(numeric_datum_typmod(text.as_bytes(), typmod(p, s)), numeric_datum(as_.as_bytes()), "{text}")
        };
        same("72754.666", 12, 2, "72754.67");
        same("96822.8", 12, 2, "96822.80");
        same("-0.005", 12, 2, "-0.01");
        same("-0.004", 12, 2, "0.00");
        same("9.995", 4, 2, "10.00");
        same("99.995", 12, 2, "100.00");
        same("1.5e3", 12, 2, "1500.00");
        same("15e-4", 5, 3, "0.002");
        same("0.0005", 5, 3, "0.001");
        same("0.00049", 5, 3, "0.000");
        same("1234", 5, -2, "1200");
        same("1250", 5, -2, "1300");
        same("49", 5, -2, "0");
        same("0.012", 2, 3, "0.012");
        assert_eq!(numeric_datum_typmod(b"99.995", typmod(4, 2)), Err(NumericError::Overflow));
        assert_eq!(numeric_datum_typmod(b"0.12", typmod(2, 3)), Err(NumericError::Overflow));
        assert_eq!(numeric_datum_typmod(b"1e2001", typmod(4, 2)), Err(NumericError::Overflow));
        assert_eq!(numeric_datum_typmod(b"+1", typmod(4, 2)), Err(NumericError::Syntax));
        assert_eq!(numeric_datum_typmod(b" 1", typmod(4, 2)), Err(NumericError::Syntax));
        assert_eq!(numeric_datum_typmod(b".", typmod(4, 2)), Err(NumericError::Syntax));
        // exponents: one sign at most, and no wrapping however large
        for bad in ["1e++5", "1e+-5", "1e-+5", "1e 5", "1e", "1e-"] {
            assert_eq!(numeric_datum_typmod(bad.as_bytes(), typmod(10, 2)), Err(NumericError::Syntax), "{bad}");
            assert_eq!(numeric_datum(bad.as_bytes()), Err(NumericError::Syntax), "{bad}");
        }
        for huge in
            [".5e-9223372036854775808", "1e-9223372036854775808", "1e9223372036854775807", "1e99999999999999999999"]
        {
            assert_eq!(numeric_datum_typmod(huge.as_bytes(), typmod(3, -1)), Err(NumericError::Overflow), "{huge}");
            assert_eq!(numeric_datum_typmod(huge.as_bytes(), typmod(10, 2)), Err(NumericError::Overflow), "{huge}");
            assert_eq!(numeric_datum(huge.as_bytes()), Err(NumericError::Overflow), "{huge}");
        }
    }
}
