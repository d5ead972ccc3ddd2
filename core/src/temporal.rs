//! ISO 8601 / RFC 3339 date and time strings, read as PostgreSQL's `timestamptz_in`,
//! `timestamp_in` and `date_in` read them (`src/backend/utils/adt/datetime.c`:
//! `ParseDateTime`, `DecodeDateTime`, `ParseFractionalSecond`, `date2j`), for the one spelling
//! event logs use: `YYYY-MM-DD`, then `T` or a space and `HH:MM[:SS[.fraction]]`, then `Z` or
//! `±HH[[:]MM]`. Anything else (other spellings, whitespace, BC, `infinity`, `24:00`, leap
//! seconds, years outside 1–9999) is not read here: PostgreSQL decides.

/// Days from 4714-11-24 BC (Julian day 0) to 2000-01-01, PostgreSQL's epoch.
const POSTGRES_EPOCH_JDATE: i64 = 2_451_545;
const USECS_PER_SEC: i64 = 1_000_000;
const USECS_PER_DAY: i64 = 86_400 * USECS_PER_SEC;

/// A date and time as written, and its UTC offset if it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    /// Days since 2000-01-01.
    pub days: i32,
    /// Microseconds since midnight (may reach 86 400 000 000 when a fraction rounds up, as
    /// PostgreSQL lets it).
    pub time_us: i64,
    /// Whether a time was written (else midnight).
    pub has_time: bool,
    /// Seconds east of UTC, when written.
    pub offset_secs: Option<i32>,
    /// The fraction rounded up to a whole second: PostgreSQL then holds the second written
    /// plus 1 000 000 µs, and places it in a time zone by the second written.
    pub fraction_carried: bool,
}

impl DateTime {
    /// Microseconds since 2000-01-01 of the wall-clock time, ignoring any offset (what
    /// `timestamp_in` stores).
    pub fn local_us(&self) -> i64 {
        self.days as i64 * USECS_PER_DAY + self.time_us
    }

    /// Microseconds since 2000-01-01 UTC, for a string with an offset (what `timestamptz_in`
    /// stores, in every session).
    pub fn utc_us(&self) -> Option<i64> {
        Some(self.local_us() - self.offset_secs? as i64 * USECS_PER_SEC)
    }
}

/// PostgreSQL's `date2j`: the Julian day of a proleptic Gregorian date.
pub fn date2j(year: i32, month: i32, day: i32) -> i64 {
    let (mut y, mut m) = (year as i64, month as i64);
    if m > 2 {
        m += 1;
        y += 4800;
    } else {
        m += 13;
        y += 4799;
    }
    let century = y / 100;
    let mut julian = y * 365 - 32167;
    julian += y / 4 - century + century / 4;
    julian += 7834 * m / 256 + day as i64;
    julian
}

fn is_leap(y: i32) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i32, m: i32) -> i32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn digits(s: &[u8], at: usize, n: usize) -> Option<i32> {
    let d = s.get(at..at + n)?;
    let mut v = 0i32;
    for &b in d {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (b - b'0') as i32;
    }
    Some(v)
}

/// `YYYY-MM-DD` alone.
pub fn parse_date(s: &[u8]) -> Option<i32> {
    if s.len() != 10 {
        return None;
    }
    date_part(s)
}

fn date_part(s: &[u8]) -> Option<i32> {
    let (y, m, d) = (digits(s, 0, 4)?, digits(s, 5, 2)?, digits(s, 8, 2)?);
    if s[4] != b'-' || s[7] != b'-' || y < 1 || !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    Some((date2j(y, m, d) - POSTGRES_EPOCH_JDATE) as i32)
}

/// A date, optionally with a time and an offset, in the one ISO 8601 spelling read here.
pub fn parse_datetime(s: &[u8]) -> Option<DateTime> {
    if s.len() < 10 {
        return None;
    }
    let days = date_part(&s[..10])?;
    let mut dt = DateTime { days, time_us: 0, has_time: false, offset_secs: None, fraction_carried: false };
    if s.len() == 10 {
        return Some(dt);
    }
    if !matches!(s[10], b'T' | b't' | b' ') {
        return None;
    }
    // HH:MM
    let (h, mi) = (digits(s, 11, 2)?, digits(s, 14, 2)?);
    if s.get(13) != Some(&b':') || h > 23 || mi > 59 {
        return None;
    }
    let mut at = 16;
    let mut sec = 0;
    let mut fsec = 0i64;
    if s.get(at) == Some(&b':') {
        sec = digits(s, at + 1, 2)?;
        if sec > 59 {
            return None;
        }
        at += 3;
        if s.get(at) == Some(&b'.') {
            let start = at;
            at += 1;
            while s.get(at).is_some_and(u8::is_ascii_digit) {
                at += 1;
            }
            if at == start + 1 {
                return None;
            }
            // ParseFractionalSecond: strtod of ".digits", times 10^6, rint (ties to even)
            let frac: f64 = std::str::from_utf8(&s[start..at]).ok()?.parse().ok()?;
            fsec = (frac * 1_000_000.0).round_ties_even() as i64;
        }
    }
    dt.has_time = true;
    dt.fraction_carried = fsec >= USECS_PER_SEC;
    dt.time_us = ((h as i64 * 60 + mi as i64) * 60 + sec as i64) * USECS_PER_SEC + fsec;
    let rest = &s[at..];
    dt.offset_secs = match rest {
        [] => None,
        [b'Z' | b'z'] => Some(0),
        [sign @ (b'+' | b'-'), tail @ ..] => {
            let (oh, om) = match tail.len() {
                2 => (digits(tail, 0, 2)?, 0),
                4 => (digits(tail, 0, 2)?, digits(tail, 2, 2)?),
                5 if tail[2] == b':' => (digits(tail, 0, 2)?, digits(tail, 3, 2)?),
                _ => return None,
            };
            if oh > 15 || om > 59 {
                return None;
            }
            let secs = (oh * 60 + om) * 60;
            Some(if *sign == b'-' { -secs } else { secs })
        }
        _ => return None,
    };
    Some(dt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_count_days_from_2000() {
        assert_eq!(parse_date(b"2000-01-01"), Some(0));
        assert_eq!(parse_date(b"1999-12-31"), Some(-1));
        assert_eq!(parse_date(b"2024-02-29"), Some(8825));
        assert_eq!(parse_date(b"2023-02-29"), None);
        assert_eq!(parse_date(b"1900-02-29"), None);
        assert_eq!(parse_date(b"0001-01-01"), Some((date2j(1, 1, 1) - POSTGRES_EPOCH_JDATE) as i32));
        assert_eq!(parse_date(b"0000-01-01"), None);
        assert_eq!(parse_date(b"2024-1-01"), None);
    }

    #[test]
    fn times_fractions_and_offsets() {
        let t = parse_datetime(b"2000-01-01T00:00:01.5Z").unwrap();
        assert_eq!(t.utc_us(), Some(1_500_000));
        let t = parse_datetime(b"2000-01-01 02:00:00+02:00").unwrap();
        assert_eq!(t.utc_us(), Some(0));
        assert_eq!(t.local_us(), 2 * 3600 * USECS_PER_SEC);
        let t = parse_datetime(b"2000-01-01T00:00-0130").unwrap();
        assert_eq!(t.offset_secs, Some(-5400));
        // past microseconds: rounded (rint of the double, as PostgreSQL does)
        assert_eq!(parse_datetime(b"2000-01-01T00:00:00.1234567").unwrap().time_us, 123_457);
        assert_eq!(parse_datetime(b"2000-01-01T23:59:59.9999999").unwrap().time_us, USECS_PER_DAY);
        for bad in [
            "2000-01-01T24:00:00",
            "2000-01-01T00:00:60",
            "2000-01-01T00:00:00.",
            "2000-01-01T00:00+16",
            "2000-01-01T00:00:00 Z",
            " 2000-01-01",
            "2000-01-01T0:00",
            "2000-01-01T00:00:00+2",
        ] {
            assert_eq!(parse_datetime(bad.as_bytes()), None, "{bad}");
        }
    }
}
