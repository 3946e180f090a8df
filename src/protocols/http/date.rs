//! HTTP dates (RFC 9110 §5.6.7): `Date` and `Last-Modified` are written as
//! IMF-fixdate, and `If-Modified-Since` / `If-Range` are read in all three
//! formats a recipient must accept. Pure civil-date arithmetic on Unix
//! seconds: no clock, no time zone, no date crate.

/// Length of an IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`.
pub const IMF_FIXDATE_LEN: usize = 29;

/// The last second [`format()`] can write: 9999-12-31 23:59:59 GMT. The
/// formats have four-digit years; later times are written as this one.
pub const MAX_SECS: u64 = 253_402_300_799;

const DAYS: [&[u8; 3]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
const LONG_DAYS: [&[u8]; 7] = [
    b"Monday",
    b"Tuesday",
    b"Wednesday",
    b"Thursday",
    b"Friday",
    b"Saturday",
    b"Sunday",
];
const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Writes `unix_secs` as an IMF-fixdate (RFC 9110 §5.6.7), the only format
/// a sender may generate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`. Times after
/// [`MAX_SECS`] are written as [`MAX_SECS`].
pub fn format(unix_secs: u64, out: &mut [u8; IMF_FIXDATE_LEN]) {
    let secs = unix_secs.min(MAX_SECS);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    // 1970-01-01 was a Thursday (index 3 from Monday).
    let weekday = ((days + 3) % 7) as usize;
    out[0..3].copy_from_slice(DAYS[weekday]);
    out[3..5].copy_from_slice(b", ");
    two(&mut out[5..7], day);
    out[7] = b' ';
    out[8..11].copy_from_slice(MONTHS[month as usize - 1]);
    out[11] = b' ';
    two(&mut out[12..14], year / 100);
    two(&mut out[14..16], year % 100);
    out[16] = b' ';
    two(&mut out[17..19], (rem / 3600) as u32);
    out[19] = b':';
    two(&mut out[20..22], (rem / 60 % 60) as u32);
    out[22] = b':';
    two(&mut out[23..25], (rem % 60) as u32);
    out[25..29].copy_from_slice(b" GMT");
}

fn two(out: &mut [u8], n: u32) {
    out[0] = b'0' + (n / 10) as u8;
    out[1] = b'0' + (n % 10) as u8;
}

/// Reads an HTTP-date in any of the three formats RFC 9110 §5.6.7 says a
/// recipient must accept, returning Unix seconds:
///
/// - IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`
/// - RFC 850: `Sunday, 06-Nov-94 08:49:37 GMT`. Its two-digit year is
///   read as 1970–2069 (`70`..`99` → 19xx, `00`..`69` → 20xx): a fixed
///   window rather than the RFC's "no more than 50 years ahead of now", so
///   no clock is needed; the format is long obsolete, and a cache
///   validator from before 1970 or after 2069 is not a case that matters.
/// - asctime: `Sun Nov  6 08:49:37 1994` (day padded with a space).
///
/// The date is case-sensitive, as the RFC says, and must be the whole
/// input (trim it first). Refused (`None`): a bad day or month name, a day
/// the month does not have (Feb 29 of a common year, Apr 31), hours over
/// 23, minutes over 59, seconds over 60 (60 is a leap second and reads as
/// the next minute's :00), and years before 1970 (Unix time is unsigned
/// here). The weekday name must be a real one but need not match the date:
/// it is redundant, and other servers ignore it too.
pub fn parse(input: &[u8]) -> Option<u64> {
    match input.len() {
        IMF_FIXDATE_LEN => parse_imf(input),
        24 => parse_asctime(input),
        _ => parse_rfc850(input),
    }
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`
fn parse_imf(s: &[u8]) -> Option<u64> {
    day_name(&s[0..3])?;
    expect(&s[3..5], b", ")?;
    let day = digits(&s[5..7])?;
    expect(&s[7..8], b" ")?;
    let month = month(&s[8..11])?;
    expect(&s[11..12], b" ")?;
    let year = digits(&s[12..16])?;
    expect(&s[16..17], b" ")?;
    let secs = time(&s[17..25])?;
    expect(&s[25..29], b" GMT")?;
    to_unix(year, month, day, secs)
}

/// `Sun Nov  6 08:49:37 1994`
fn parse_asctime(s: &[u8]) -> Option<u64> {
    day_name(&s[0..3])?;
    expect(&s[3..4], b" ")?;
    let month = month(&s[4..7])?;
    expect(&s[7..8], b" ")?;
    let day = if s[8] == b' ' {
        digits(&s[9..10])?
    } else {
        digits(&s[8..10])?
    };
    expect(&s[10..11], b" ")?;
    let secs = time(&s[11..19])?;
    expect(&s[19..20], b" ")?;
    let year = digits(&s[20..24])?;
    to_unix(year, month, day, secs)
}

/// `Sunday, 06-Nov-94 08:49:37 GMT`
fn parse_rfc850(s: &[u8]) -> Option<u64> {
    let comma = s.iter().position(|&b| b == b',')?;
    if !LONG_DAYS.contains(&&s[..comma]) {
        return None;
    }
    let s = &s[comma..];
    // ", 06-Nov-94 08:49:37 GMT"
    if s.len() != 24 {
        return None;
    }
    expect(&s[0..2], b", ")?;
    let day = digits(&s[2..4])?;
    expect(&s[4..5], b"-")?;
    let month = month(&s[5..8])?;
    expect(&s[8..9], b"-")?;
    let yy = digits(&s[9..11])?;
    let year = if yy >= 70 { 1900 + yy } else { 2000 + yy };
    expect(&s[11..12], b" ")?;
    let secs = time(&s[12..20])?;
    expect(&s[20..24], b" GMT")?;
    to_unix(year, month, day, secs)
}

fn expect(got: &[u8], want: &[u8]) -> Option<()> {
    (got == want).then_some(())
}

fn day_name(s: &[u8]) -> Option<()> {
    DAYS.iter().any(|d| d.as_slice() == s).then_some(())
}

/// 1..=12
fn month(s: &[u8]) -> Option<u32> {
    let i = MONTHS.iter().position(|m| m.as_slice() == s)?;
    Some(i as u32 + 1)
}

/// All ASCII digits, as a number (at most 4 here, so no overflow).
fn digits(s: &[u8]) -> Option<u32> {
    s.iter().try_fold(0u32, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
    })
}

/// `08:49:37` as seconds into the day.
fn time(s: &[u8]) -> Option<u64> {
    let h = digits(&s[0..2])?;
    expect(&s[2..3], b":")?;
    let m = digits(&s[3..5])?;
    expect(&s[5..6], b":")?;
    let sec = digits(&s[6..8])?;
    if h > 23 || m > 59 || sec > 60 {
        return None;
    }
    Some(u64::from(h * 3600 + m * 60 + sec))
}

fn is_leap(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn to_unix(year: u32, month: u32, day: u32, secs: u64) -> Option<u64> {
    if year < 1970 || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let days = days_from_civil(year as i64, month, day);
    u64::try_from(days).ok().map(|d| d * 86_400 + secs)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`, eras of 400 years).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month 1..=12, day 1..=31) of a day number since 1970-01-01
/// (Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (u32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as u32;
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(secs: u64) -> String {
        let mut out = [0; IMF_FIXDATE_LEN];
        format(secs, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn the_rfc_example_in_all_three_formats() {
        let t = 784_111_777;
        assert_eq!(fmt(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(parse(b"Sun, 06 Nov 1994 08:49:37 GMT"), Some(t));
        assert_eq!(parse(b"Sunday, 06-Nov-94 08:49:37 GMT"), Some(t));
        assert_eq!(parse(b"Sun Nov  6 08:49:37 1994"), Some(t));
    }

    #[test]
    fn known_instants() {
        let cases: &[(u64, &str)] = &[
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
            (1_078_012_799, "Sat, 28 Feb 2004 23:59:59 GMT"),
            (1_234_567_890, "Fri, 13 Feb 2009 23:31:30 GMT"),
            (2_147_483_647, "Tue, 19 Jan 2038 03:14:07 GMT"),
            (4_107_542_400, "Mon, 01 Mar 2100 00:00:00 GMT"),
            (MAX_SECS, "Fri, 31 Dec 9999 23:59:59 GMT"),
        ];
        for &(secs, text) in cases {
            assert_eq!(fmt(secs), text, "{secs}");
            assert_eq!(parse(text.as_bytes()), Some(secs), "{text}");
        }
        assert_eq!(fmt(u64::MAX), fmt(MAX_SECS));
    }

    #[test]
    fn round_trips_1970_to_2100() {
        // Every day's midnight and a moving time of day, 1970..=2100:
        // every leap year, century rule (2000 is, 2100 is not) and month end.
        let end = 4_133_980_799; // 2100-12-31 23:59:59
        let mut secs = 0u64;
        let mut n = 0u64;
        while secs <= end {
            for t in [secs, secs + (n * 7919) % 86_400] {
                let text = fmt(t);
                assert_eq!(parse(text.as_bytes()), Some(t), "{text}");
                // The same instant in asctime form reads back the same.
                let b = text.as_bytes();
                let day = if b[5] == b'0' { b' ' } else { b[5] };
                let asc = format!(
                    "{} {} {}{} {} {}",
                    &text[0..3],
                    &text[8..11],
                    day as char,
                    &text[6..7],
                    &text[17..25],
                    &text[12..16]
                );
                assert_eq!(parse(asc.as_bytes()), Some(t), "{asc}");
            }
            secs += 86_400;
            n += 1;
        }
        assert!(n > 47_000);
    }

    #[test]
    fn weekday_comes_out_right() {
        assert!(fmt(951_782_400).starts_with("Tue")); // 2000-02-29
        assert!(fmt(4_107_456_000).starts_with("Sun")); // 2100-02-28
        assert!(fmt(1_700_000_000).starts_with("Tue")); // 2023-11-14
    }

    #[test]
    fn rfc850_two_digit_years() {
        assert_eq!(
            parse(b"Thursday, 01-Jan-70 00:00:00 GMT"),
            parse(b"Thu, 01 Jan 1970 00:00:00 GMT")
        );
        assert_eq!(
            parse(b"Monday, 31-Dec-69 23:59:59 GMT"),
            parse(b"Mon, 31 Dec 2069 23:59:59 GMT")
        );
        assert_eq!(
            parse(b"Tuesday, 29-Feb-00 12:00:00 GMT"),
            parse(b"Tue, 29 Feb 2000 12:00:00 GMT")
        );
        assert!(parse(b"Tuesday, 29-Feb-00 12:00:00 GMT").is_some());
    }

    #[test]
    fn refuses_malformed_dates() {
        let bad: &[&[u8]] = &[
            b"",
            b"Sun, 06 Nov 1994 08:49:37 UTC",
            b"Sun, 06 Nov 1994 08:49:37 gmt",
            b"sun, 06 Nov 1994 08:49:37 GMT",
            b"Sun, 06 nov 1994 08:49:37 GMT",
            b"Xyz, 06 Nov 1994 08:49:37 GMT",
            b"Sun, 30 Feb 2000 00:00:00 GMT",
            b"Sun, 29 Feb 1900 00:00:00 GMT",
            b"Sun, 29 Feb 2001 00:00:00 GMT",
            b"Sun, 31 Apr 2001 00:00:00 GMT",
            b"Sun, 00 Jan 2001 00:00:00 GMT",
            b"Sun, 32 Jan 2001 00:00:00 GMT",
            b"Sun, 06 Nov 1994 24:00:00 GMT",
            b"Sun, 06 Nov 1994 23:60:00 GMT",
            b"Sun, 06 Nov 1994 23:59:61 GMT",
            b"Sun, 06 Nov 1969 08:49:37 GMT",
            b"Sun, 6 Nov 1994 08:49:37 GMT ",
            b"Sun,  6 Nov 1994 08:49:37 GMT",
            b"Sun, 06 Nov 1994 08:49:37 GMT ",
            b" Sun, 06 Nov 1994 08:49:37 GMT",
            b"Sun, 06 Nov 1994 08-49-37 GMT",
            b"Sun, 06 Nov +994 08:49:37 GMT",
            b"Sun, 06 Nov 1994 8:49:37 GMT",
            b"Sunday, 06-Nov-1994 08:49:37 GMT",
            b"Sundae, 06-Nov-94 08:49:37 GMT",
            b"Sun, 06-Nov-94 08:49:37 GMT",
            b"Sunday, 06 Nov 94 08:49:37 GMT",
            b"Sunday, 31-Nov-94 08:49:37 GMT",
            b"Sun Nov 06 08:49:37 1994 ", // 25 bytes
            b"Sun Nov 6  08:49:37 1994",
            b"Sun Nov  0 08:49:37 1994",
            b"Sun Nov  6 08:49:37 94  ",
            b"Sun Nov \x006 08:49:37 1994",
            b"1994-11-06T08:49:37Z",
            "Sun, 06 Nov 1994 08:49:37 G\u{e9}".as_bytes(),
        ];
        for input in bad {
            assert_eq!(parse(input), None, "{:?}", String::from_utf8_lossy(input));
        }
        // Zero-padded asctime day is fine; a leap second reads as :00 next.
        assert_eq!(parse(b"Sun Nov 06 08:49:37 1994"), Some(784_111_777));
        assert_eq!(
            parse(b"Sun, 06 Nov 1994 08:49:60 GMT"),
            Some(784_111_777 + 23)
        );
        // The weekday must be a name, not the right one.
        assert_eq!(parse(b"Mon, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
    }

    #[test]
    fn parse_never_panics_on_any_short_input() {
        let alphabet = b"SunMo, 0123456789:-GMT \xff";
        let mut state = 0x2545_f491_u32;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let len = (state % 40) as usize;
            let input: Vec<u8> = (0..len)
                .map(|i| alphabet[(state as usize >> (i % 24)) % alphabet.len()])
                .collect();
            if let Some(t) = parse(&input) {
                assert!(t <= MAX_SECS);
            }
        }
    }
}
