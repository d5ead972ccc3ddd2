//! Deterministic sample chat logs, in the shape users load: one JSON object per line.
//!
//! ```text
//! {"id":"msg-000000001","from":"user123","type":"message","site_id":"site-45","data":"…","timestamp":1542700001}
//! ```
//! About one line in seven carries a nested `meta` object; some `status` lines have no `data`
//! key (so the column's DEFAULT applies). The same `(lines, seed)` always gives the same bytes.

use std::io::{self, Write};

/// The table the sample lines are shaped for.
pub const CHAT_TABLE_DDL: &str = "CREATE TABLE chat_messages (id text PRIMARY KEY, \"from\" text NOT NULL, \
type text, site_id text NOT NULL, data text DEFAULT '', \"timestamp\" timestamptz NOT NULL, meta jsonb)";

/// First timestamp of a generated log (2018-11-20 07:46:41 UTC).
pub const FIRST_TIMESTAMP: i64 = 1_542_700_001;

const WORDS: &[&str] = &[
    "hello",
    "world",
    "the",
    "order",
    "shipped",
    "today",
    "thanks",
    "please",
    "check",
    "again",
    "café",
    "naïve",
    "über",
    "日本語",
    "テスト",
    "привет",
    "مرحبا",
    "🎉",
    "👍",
    "ok",
    "is",
    "it",
    "\"quoted\"",
    "back\\slash",
    "tab\there",
    "C:\\temp\\file",
    "<b>bold</b>",
    "a&b",
    "100%",
    "new",
    "user",
    "site",
    "support",
    "ticket",
    "#42",
    "refund",
    "delivery",
    "when",
    "will",
];
const CLIENTS: &[&str] = &["web", "ios", "android", "api"];
const TAGS: &[&str] = &["vip", "bug", "billing", "spam", "follow-up", "urgent"];

/// A small, fast, deterministic PRNG (SplitMix64): enough for sample data, no dependency.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0); the tiny modulo bias does not matter for sample data.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Generates sample chat lines one by one.
#[derive(Debug, Clone)]
pub struct ChatGenerator {
    rng: SplitMix64,
    next_no: u64,
    timestamp: i64,
}

impl ChatGenerator {
    pub fn new(seed: u64) -> Self {
        Self { rng: SplitMix64::new(seed), next_no: 1, timestamp: FIRST_TIMESTAMP }
    }

    /// Appends the next line, without its newline, to `out`.
    pub fn next_line(&mut self, out: &mut String) {
        let no = self.next_no;
        self.next_no += 1;
        let rng = &mut self.rng;
        let kind = if rng.below(5) == 0 { "status" } else { "message" };
        let from = format!("user{}", rng.below(1000));
        let site = format!("site-{}", rng.below(100));
        out.push_str(&format!(
            "{{\"id\":\"msg-{no:09}\",\"from\":{},\"type\":\"{kind}\",\"site_id\":{}",
            json_string(&from),
            json_string(&site)
        ));
        // status lines sometimes carry no text: the column default ('') applies
        if !(kind == "status" && rng.below(3) == 0) {
            let words = 8 + rng.below(18);
            let mut text = String::new();
            for i in 0..words {
                if i > 0 {
                    text.push(' ');
                }
                text.push_str(rng.pick(WORDS));
            }
            out.push_str(",\"data\":");
            out.push_str(&json_string(&text));
        }
        self.timestamp += rng.below(4) as i64;
        out.push_str(&format!(",\"timestamp\":{}", self.timestamp));
        if rng.below(7) == 0 {
            let client = rng.pick(CLIENTS);
            let (t1, t2) = (rng.pick(TAGS), rng.pick(TAGS));
            let reply = 1 + rng.below(no);
            out.push_str(&format!(
                ",\"meta\":{{\"client\":\"{client}\",\"tags\":[\"{t1}\",\"{t2}\"],\"reply_to\":\"msg-{reply:09}\",\"score\":{}.{}}}",
                rng.below(100),
                rng.below(10)
            ));
        }
        out.push('}');
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a str always serializes")
}

/// Writes `lines` sample lines, each ending in `\n`, and returns the number of bytes written.
pub fn write_chat_lines<W: Write>(w: W, lines: u64, seed: u64) -> io::Result<u64> {
    let mut generator = ChatGenerator::new(seed);
    write_lines(w, lines, |_, buf| generator.next_line(buf))
}

/// Writes `lines` lines made by `line(number, buffer)`, each ending in `\n`, in blocks of about
/// 64 kB; the bytes written.
fn write_lines<W: Write>(mut w: W, lines: u64, mut line: impl FnMut(u64, &mut String)) -> io::Result<u64> {
    let mut buf = String::with_capacity(128 * 1024);
    let mut written = 0u64;
    for no in 1..=lines {
        line(no, &mut buf);
        buf.push('\n');
        if buf.len() > 64 * 1024 {
            w.write_all(buf.as_bytes())?;
            written += buf.len() as u64;
            buf.clear();
        }
    }
    w.write_all(buf.as_bytes())?;
    written += buf.len() as u64;
    w.flush()?;
    Ok(written)
}

/// The table the JSON-heavy sample (tweet-shaped documents) is shaped for: nested objects and
/// arrays into jsonb, long texts, numbers, a timestamp as a string.
pub const TWEETS_TABLE_DDL: &str = "CREATE TABLE tweets (id bigint PRIMARY KEY, created_at timestamptz, \
text text, lang text, source text, retweet_count int, favorite_count int, \"user\" jsonb, entities jsonb, \
place jsonb, extended jsonb)";

const MONTHS: &[&str] = &["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const DAYS: &[&str] = &["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const LANGS: &[&str] = &["en", "ja", "es", "fr", "de", "ru", "ar", "und"];

fn words(rng: &mut SplitMix64, n: u64) -> String {
    let mut text = String::new();
    for i in 0..n {
        if i > 0 {
            text.push(' ');
        }
        text.push_str(rng.pick(WORDS));
    }
    text
}

/// Appends one tweet-shaped line (about 3–5 kB), without its newline.
pub fn tweet_line(rng: &mut SplitMix64, no: u64, out: &mut String) {
    let day = rng.pick(DAYS);
    let month = rng.pick(MONTHS);
    let created = format!(
        "{day} {month} {:02} {:02}:{:02}:{:02} +0000 20{}",
        1 + rng.below(28),
        rng.below(24),
        rng.below(60),
        rng.below(60),
        10 + rng.below(10)
    );
    let user_id = rng.below(1 << 40);
    let hashtags: Vec<String> = (0..rng.below(5))
        .map(|i| format!("{{\"text\":{},\"indices\":[{},{}]}}", json_string(rng.pick(TAGS)), i * 10, i * 10 + 8))
        .collect();
    let urls: Vec<String> = (0..rng.below(3))
        .map(|i| {
            format!(
                "{{\"url\":\"https://t.co/{:x}\",\"expanded_url\":\"https://example.com/{}/{}\",\"display_url\":\"example.com/{}\",\"indices\":[{},{}]}}",
                rng.next_u64(),
                rng.pick(TAGS),
                rng.below(1_000_000),
                rng.below(1000),
                40 + i * 23,
                63 + i * 23
            )
        })
        .collect();
    let mentions: Vec<String> = (0..rng.below(4))
        .map(|_| {
            let id = rng.below(1 << 40);
            format!(
                "{{\"screen_name\":\"user{id}\",\"name\":{},\"id\":{id},\"id_str\":\"{id}\",\"indices\":[0,12]}}",
                json_string(&words(rng, 2))
            )
        })
        .collect();
    let place = if rng.below(4) == 0 {
        format!(
            "{{\"id\":\"{:x}\",\"place_type\":\"city\",\"name\":{},\"country_code\":\"{}\",\"bounding_box\":{{\"type\":\"Polygon\",\"coordinates\":[[[{}.{},{}.{}],[{}.{},{}.{}],[{}.{},{}.{}],[{}.{},{}.{}]]]}}}}",
            rng.next_u64(),
            json_string(&words(rng, 2)),
            rng.pick(&["US", "JP", "FR", "DE", "BR"]),
            rng.below(180), rng.below(1_000_000), rng.below(90), rng.below(1_000_000),
            rng.below(180), rng.below(1_000_000), rng.below(90), rng.below(1_000_000),
            rng.below(180), rng.below(1_000_000), rng.below(90), rng.below(1_000_000),
            rng.below(180), rng.below(1_000_000), rng.below(90), rng.below(1_000_000)
        )
    } else {
        "null".to_owned()
    };
    let text_words = 20 + rng.below(30);
    out.push_str(&format!(
        "{{\"created_at\":\"{created}\",\"id\":{no},\"id_str\":\"{no}\",\"text\":{},\"source\":\"<a href=\\\"https://example.com/app\\\" rel=\\\"nofollow\\\">{}</a>\",\"truncated\":false,\"lang\":\"{}\",\"retweet_count\":{},\"favorite_count\":{},",
        json_string(&words(rng, text_words)),
        rng.pick(CLIENTS),
        rng.pick(LANGS),
        rng.below(100_000),
        rng.below(1_000_000)
    ));
    out.push_str(&format!(
        "\"user\":{{\"id\":{user_id},\"id_str\":\"{user_id}\",\"name\":{},\"screen_name\":\"user{user_id}\",\"location\":{},\"description\":{},\"url\":null,\"protected\":false,\"followers_count\":{},\"friends_count\":{},\"listed_count\":{},\"created_at\":\"{} {} {:02} 12:00:00 +0000 2012\",\"favourites_count\":{},\"utc_offset\":null,\"time_zone\":null,\"geo_enabled\":{},\"verified\":{},\"statuses_count\":{},\"lang\":\"{}\",\"profile_background_color\":\"C0DEED\",\"profile_image_url_https\":\"https://pbs.example.com/profile_images/{}/photo_normal.jpg\",\"default_profile\":{},\"score\":{}.{}}},",
        json_string(&words(rng, 2)),
        json_string(&words(rng, 3)),
        {
            let n = 10 + rng.below(30);
            json_string(&words(rng, n))
        },
        rng.below(10_000_000),
        rng.below(5000),
        rng.below(1000),
        rng.pick(DAYS),
        rng.pick(MONTHS),
        1 + rng.below(28),
        rng.below(100_000),
        rng.below(2) == 0,
        rng.below(50) == 0,
        rng.below(500_000),
        rng.pick(LANGS),
        rng.next_u64(),
        rng.below(2) == 0,
        rng.below(100),
        rng.below(1000)
    ));
    out.push_str(&format!(
        "\"entities\":{{\"hashtags\":[{}],\"symbols\":[],\"urls\":[{}],\"user_mentions\":[{}]}},\"place\":{place},",
        hashtags.join(","),
        urls.join(","),
        mentions.join(",")
    ));
    // a long nested document: what JSON-heavy rows carry
    let blocks: Vec<String> = (0..6 + rng.below(10))
        .map(|i| {
            format!(
                "{{\"kind\":\"{}\",\"seq\":{i},\"weight\":{}.{:03},\"ratio\":{}e-{},\"tags\":[{},{}],\"body\":{},\"flags\":{{\"seen\":{},\"pinned\":{},\"level\":{}}}}}",
                rng.pick(&["text", "media", "poll", "quote"]),
                rng.below(1000),
                rng.below(1000),
                1 + rng.below(9),
                1 + rng.below(12),
                json_string(rng.pick(TAGS)),
                json_string(rng.pick(TAGS)),
                {
                    let n = 5 + rng.below(25);
                    json_string(&words(rng, n))
                },
                rng.below(2) == 0,
                rng.below(5) == 0,
                rng.below(10)
            )
        })
        .collect();
    out.push_str(&format!("\"extended\":{{\"blocks\":[{}],\"version\":3}}}}", blocks.join(",")));
}

/// Writes `lines` tweet-shaped lines, each ending in `\n`; the bytes written.
pub fn write_tweet_lines<W: Write>(w: W, lines: u64, seed: u64) -> io::Result<u64> {
    let mut rng = SplitMix64::new(seed);
    write_lines(w, lines, |no, buf| tweet_line(&mut rng, no, buf))
}

/// The table the event-log sample is shaped for: a uuid key, an ISO 8601 timestamp with an
/// offset, a decimal amount (as a string or a number), an id as a string under a nested key,
/// and two nested objects into jsonb. `user_id` takes `user.id` (`columns => EVENTS_COLUMNS`).
pub const EVENTS_TABLE_DDL: &str = "CREATE TABLE events (event_id uuid, ts timestamptz, amount numeric(12,2), \
type text, user_id bigint, props jsonb, context jsonb)";
/// The `columns` mapping of the event-log sample.
pub const EVENTS_COLUMNS: &str = r#"{"user_id": "user.id"}"#;

const EVENT_TYPES: &[&str] = &["page_view", "page_view", "click", "purchase", "signup", "login", "refund"];
const COUNTRIES: &[&str] = &["DE", "US", "FR", "IN", "BR", "JP", "GB", "NG"];
const OFFSETS: &[&str] = &["Z", "+00:00", "+02:00", "-05:00", "+05:30", "-08:00"];

/// One event-log line.
pub fn event_line(rng: &mut SplitMix64, no: u64, out: &mut String) {
    let (a, b) = (rng.next_u64(), rng.next_u64());
    let uuid = format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | (b >> 48) & 0x3fff,
        b & 0xffff_ffff_ffff
    );
    let secs = FIRST_TIMESTAMP + 86_400 * 365 * 5 + no as i64 / 4;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let frac = match rng.below(3) {
        0 => format!(".{:03}", rng.below(1000)),
        1 => format!(".{:06}", rng.below(1_000_000)),
        _ => String::new(),
    };
    let ts = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{frac}{}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        rng.pick(OFFSETS)
    );
    let kind = rng.pick(EVENT_TYPES);
    let amount = match rng.below(3) {
        0 => format!("\"{}.{:03}\"", rng.below(100_000), rng.below(1000)),
        1 => format!("{}.{}", rng.below(100_000), rng.below(10)),
        _ => format!("{}", rng.below(1000)),
    };
    out.push_str(&format!(
        "{{\"event_id\":\"{uuid}\",\"ts\":\"{ts}\",\"type\":\"{kind}\",\"amount\":{amount},\
         \"user\":{{\"id\":\"{}\",\"country\":\"{}\"}},\
         \"props\":{{\"path\":\"/products/{}\",\"qty\":{},\"price\":{}.{:02},\"tags\":[\"{}\",\"{}\"]}},\
         \"context\":{{\"ip\":\"10.{}.{}.{}\",\"locale\":\"en-{}\",\"app\":{{\"version\":\"5.{}.{}\",\"build\":{}}}}}}}",
        1_000_000 + rng.below(9_000_000),
        rng.pick(COUNTRIES),
        rng.below(100_000),
        1 + rng.below(5),
        rng.below(500),
        rng.below(100),
        rng.pick(TAGS),
        rng.pick(TAGS),
        rng.below(256),
        rng.below(256),
        rng.below(256),
        rng.pick(COUNTRIES),
        rng.below(30),
        rng.below(10),
        rng.below(100_000)
    ));
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + (m <= 2) as i64, m, d)
}

/// Writes `lines` event-log lines, each ending in `\n`; the bytes written.
pub fn write_event_lines<W: Write>(w: W, lines: u64, seed: u64) -> io::Result<u64> {
    let mut rng = SplitMix64::new(seed);
    write_lines(w, lines, |no, buf| event_line(&mut rng, no, buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn lines(n: u64, seed: u64) -> Vec<String> {
        let mut out = Vec::new();
        write_chat_lines(&mut out, n, seed).unwrap();
        String::from_utf8(out).unwrap().lines().map(str::to_owned).collect()
    }

    #[test]
    fn event_lines_are_valid_json_of_about_300_bytes() {
        let mut out = Vec::new();
        let bytes = write_event_lines(&mut out, 1000, 3).unwrap();
        assert!((250_000..350_000).contains(&bytes), "{bytes}");
        for line in String::from_utf8(out).unwrap().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["event_id"].as_str().unwrap().len(), 36);
            assert!(v["user"]["id"].as_str().unwrap().parse::<i64>().is_ok());
            assert!(v["ts"].as_str().unwrap().starts_with("2023-"), "{line}");
        }
    }

    #[test]
    fn tweet_lines_are_valid_json_of_a_few_kilobytes() {
        let mut out = Vec::new();
        let bytes = write_tweet_lines(&mut out, 200, 7).unwrap();
        let text = String::from_utf8(out).unwrap();
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            assert!(v["user"].is_object() && v["extended"]["blocks"].is_array());
        }
        let avg = bytes / 200;
        assert!((2000..6000).contains(&avg), "{avg} bytes a line");
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        assert_eq!(lines(500, 7), lines(500, 7));
        assert_ne!(lines(500, 7), lines(500, 8));
    }

    #[test]
    fn every_line_is_a_chat_object() {
        let all = lines(7000, 1);
        assert_eq!(all.len(), 7000);
        let (mut with_meta, mut without_data, mut statuses) = (0, 0, 0);
        let mut last_ts = 0;
        for (i, line) in all.iter().enumerate() {
            assert!(!line.contains('\n'));
            let v: Value = serde_json::from_str(line).unwrap();
            let o = v.as_object().unwrap();
            assert_eq!(o["id"], format!("msg-{:09}", i + 1));
            assert!(o["from"].as_str().unwrap().starts_with("user"));
            assert!(o["site_id"].as_str().unwrap().starts_with("site-"));
            let ts = o["timestamp"].as_i64().unwrap();
            assert!(ts >= last_ts && ts >= FIRST_TIMESTAMP);
            last_ts = ts;
            match o["type"].as_str().unwrap() {
                "status" => statuses += 1,
                "message" => assert!(o.contains_key("data")),
                other => panic!("unexpected type {other}"),
            }
            if !o.contains_key("data") {
                without_data += 1;
            }
            if let Some(meta) = o.get("meta") {
                assert!(meta.is_object());
                with_meta += 1;
            }
        }
        // about one in seven has meta; some statuses lack data
        assert!((800..1200).contains(&with_meta), "{with_meta}");
        assert!(statuses > 1000 && without_data > 200, "{statuses} {without_data}");
    }

    #[test]
    fn text_has_unicode_quotes_backslashes_and_tabs() {
        let texts: Vec<String> = lines(2000, 3)
            .iter()
            .filter_map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                v.get("data").map(|d| d.as_str().unwrap().to_owned())
            })
            .collect();
        for needle in ["\"", "\\", "\t", "日本語", "🎉"] {
            assert!(texts.iter().any(|t| t.contains(needle)), "no {needle:?}");
        }
    }

    #[test]
    fn byte_count_matches_output() {
        let mut out = Vec::new();
        let n = write_chat_lines(&mut out, 3000, 9).unwrap();
        assert_eq!(n, out.len() as u64);
        // about 220 bytes a line, like the logs this is modelled on
        let per_line = n / 3000;
        assert!((150..300).contains(&per_line), "{per_line}");
    }
}
