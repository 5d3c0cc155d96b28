//! Proleptic Gregorian calendar arithmetic on days since 1970-01-01 (Howard
//! Hinnant's `civil_from_days` and `days_from_civil`: eras of 400 years,
//! March-based years) and RFC 3339 formatting in UTC. The one place for
//! dates: PromQL's date functions and annotations, the API's timestamps and
//! snapshot names all use it. Reads no clock and knows no time zone.

/// Seconds in a day.
pub const SECS_PER_DAY: i64 = 86_400;

/// Whether `year` has a February 29th.
pub fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// Days in `month` (1..=12) of `year`.
pub fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(year) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31). Valid for the
/// day count of every `i64` second.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32; // [1, 12]
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month 1..=12, day) → days since 1970-01-01. The date is not
/// checked (see [`days_in_month`]).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let (m, d) = (i64::from(month), i64::from(day));
    let y = if m <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z` for a Unix second and nanoseconds, as
/// Go formats `time.Time` in UTC with RFC 3339 (the fraction only when not
/// zero, trailing zeros trimmed; years outside 0..=9999 not padded
/// specially).
pub fn rfc3339_utc(unix_secs: i64, nanos: u32) -> String {
    let (days, secs) = (
        unix_secs.div_euclid(SECS_PER_DAY),
        unix_secs.rem_euclid(SECS_PER_DAY),
    );
    let (year, month, day) = civil_from_days(days);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// [`rfc3339_utc`] of a millisecond Unix timestamp.
pub fn rfc3339_utc_ms(ms: i64) -> String {
    rfc3339_utc(
        ms.div_euclid(1000),
        (ms.rem_euclid(1000) * 1_000_000) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        for days in (-800_000..800_000).step_by(97) {
            let (y, m, d) = civil_from_days(days);
            assert!(d <= days_in_month(y, m));
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
    }

    #[test]
    fn rfc3339_formats_like_go() {
        assert_eq!(rfc3339_utc(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(1_136_239_445, 0), "2006-01-02T22:04:05Z");
        assert_eq!(rfc3339_utc(-1, 0), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339_utc(1, 120_000_000), "1970-01-01T00:00:01.12Z");
    }

    #[test]
    fn leap_years() {
        assert!(is_leap(2000) && is_leap(2024) && !is_leap(1900) && !is_leap(2023));
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(2023, 2), 28);
    }
}
