//! Date functions (`year`, `month`, `day_of_month`, …) on Unix timestamps in
//! seconds, in UTC, on the proleptic Gregorian calendar of
//! [`crate::model::calendar`].
//!
//! Upstream converts the float with `time.Unix(int64(v), 0).UTC()`: the
//! value is truncated toward zero to whole seconds. Go's float→int64
//! conversion of NaN, ±Inf or anything outside the int64 range is
//! platform-specific; on amd64 (Prometheus' reference platform) it yields
//! `math.MinInt64`, and so does [`go_int64`] here.

use crate::model::calendar::{civil_from_days, days_in_month, SECS_PER_DAY};

/// Go's `int64(v)` on amd64: truncation toward zero, with NaN and
/// out-of-range values (including ±Inf) becoming `i64::MIN` ("integer
/// indefinite" of CVTTSD2SQ) rather than Rust's saturating cast.
fn go_int64(v: f64) -> i64 {
    // 2^63 is exactly representable; every finite f64 in [-2^63, 2^63) fits.
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    // NaN is outside every range, so it lands in the first branch too.
    if !(-TWO_63..TWO_63).contains(&v) {
        i64::MIN
    } else {
        v as i64
    }
}

/// A UTC calendar breakdown of a Unix second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Civil {
    year: i64,
    /// 1..=12
    month: u32,
    /// 1..=31
    day: u32,
    /// 0 = Sunday .. 6 = Saturday (Go's `time.Weekday`).
    weekday: u32,
    /// 1..=366
    year_day: u32,
    hour: u32,
    minute: u32,
}

fn civil(unix_secs: i64) -> Civil {
    let days = unix_secs.div_euclid(SECS_PER_DAY);
    let secs_of_day = unix_secs.rem_euclid(SECS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let year_day = (1..month).map(|m| days_in_month(year, m)).sum::<u32>() + day;
    Civil {
        year,
        month,
        day,
        // 1970-01-01 was a Thursday (4).
        weekday: (days + 4).rem_euclid(7) as u32,
        year_day,
        hour: (secs_of_day / 3600) as u32,
        minute: (secs_of_day % 3600 / 60) as u32,
    }
}

fn civil_of(v: f64) -> Civil {
    civil(go_int64(v))
}

/// `year(v)`.
pub(crate) fn year(v: f64) -> f64 {
    civil_of(v).year as f64
}

/// `month(v)`: 1..=12.
pub(crate) fn month(v: f64) -> f64 {
    f64::from(civil_of(v).month)
}

/// `day_of_month(v)`: 1..=31.
pub(crate) fn day_of_month(v: f64) -> f64 {
    f64::from(civil_of(v).day)
}

/// `day_of_week(v)`: 0 = Sunday .. 6 = Saturday.
pub(crate) fn day_of_week(v: f64) -> f64 {
    f64::from(civil_of(v).weekday)
}

/// `day_of_year(v)`: 1..=366.
pub(crate) fn day_of_year(v: f64) -> f64 {
    f64::from(civil_of(v).year_day)
}

/// `days_in_month(v)`: 28..=31.
pub(crate) fn days_in_month_of(v: f64) -> f64 {
    let c = civil_of(v);
    f64::from(days_in_month(c.year, c.month))
}

/// `hour(v)`: 0..=23.
pub(crate) fn hour(v: f64) -> f64 {
    f64::from(civil_of(v).hour)
}

/// `minute(v)`: 0..=59.
pub(crate) fn minute(v: f64) -> f64 {
    f64::from(civil_of(v).minute)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(name: &str, v: f64) -> f64 {
        match crate::promql::functions::table::lookup(name).map(|f| f.eval) {
            Some(crate::promql::functions::table::Eval::DatePart(f)) => f(v),
            _ => panic!("{name} is not a date function"),
        }
    }

    #[test]
    fn date_part_functions_test_cases() {
        // functions.test expectations.
        let cases: &[(&str, f64, f64)] = &[
            ("year", 0.0, 1970.0),
            ("year", 1136239445.0, 2006.0),
            ("month", 0.0, 1.0),
            ("month", 1136239445.0, 1.0),
            ("day_of_month", 0.0, 1.0),
            ("day_of_month", 1136239445.0, 2.0),
            ("day_of_year", 0.0, 1.0),
            ("day_of_year", 1136239445.0, 2.0),
            ("day_of_week", 0.0, 4.0),
            ("day_of_week", 1136239445.0, 1.0),
            ("hour", 0.0, 0.0),
            ("hour", 1136239445.0, 22.0),
            ("minute", 0.0, 0.0),
            ("minute", 1136239445.0, 4.0),
            ("year", 1230767999.0, 2008.0),
            ("year", 1230768000.0, 2009.0),
            ("month", 1456790399.0, 2.0),
            ("day_of_month", 1456790399.0, 29.0),
            ("month", 1456790400.0, 3.0),
            ("day_of_month", 1456790400.0, 1.0),
            ("day_of_year", 1483191420.0, 366.0),
            ("day_of_year", 1672493820.0, 365.0),
            ("days_in_month", 1454284800.0, 29.0),
            ("days_in_month", 1485907200.0, 28.0),
        ];
        for (name, v, want) in cases {
            assert_eq!(part(name, *v), *want, "{name}({v})");
        }
        assert!(!matches!(
            crate::promql::functions::table::lookup("time").map(|f| f.eval),
            Some(crate::promql::functions::table::Eval::DatePart(_))
        ));
    }

    #[test]
    fn date_part_truncates_toward_zero_and_handles_negatives() {
        // -0.5 s truncates to 0 (1970-01-01 00:00), not -1 s.
        assert_eq!(part("year", -0.5), 1970.0);
        // -1 s is 1969-12-31 23:59:59, a Wednesday.
        assert_eq!(part("year", -1.0), 1969.0);
        assert_eq!(part("day_of_year", -1.0), 365.0);
        assert_eq!(part("hour", -1.0), 23.0);
        assert_eq!(part("minute", -1.0), 59.0);
        assert_eq!(part("day_of_week", -1.0), 3.0);
        // 2000 was a leap year, 1900 was not.
        assert_eq!(part("days_in_month", 951_782_400.0), 29.0); // 2000-02-29
        assert_eq!(part("days_in_month", -2_206_310_400.0), 28.0); // 1900-02-01
    }

    #[test]
    fn date_part_nan_and_inf_map_to_min_int64_as_go_amd64() {
        // NaN, ±Inf and out-of-range values all become i64::MIN seconds,
        // like Go's int64() conversion on amd64; the date is then computed
        // on the proleptic Gregorian calendar (Go's exact output for such
        // far-away instants is not pinned here).
        let min = civil(i64::MIN);
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e300, -1e300] {
            assert_eq!(civil_of(v), min, "{v}");
        }
        assert_eq!(go_int64(-9_223_372_036_854_775_808.0), i64::MIN);
        assert_eq!(
            go_int64(9_223_372_036_854_774_784.0),
            9_223_372_036_854_774_784
        );
        assert_eq!(go_int64(-1.9), -1);
    }

    #[test]
    fn civil_round_trips_every_day_over_a_few_centuries() {
        // Walk day by day from 1600-01-01 and check the calendar advances
        // exactly like a hand-rolled counter.
        let first_day = -135_140; // 1600-01-01
        let (mut y, mut m, mut d) = (1600i64, 1u32, 1u32);
        let mut yday = 1;
        for days in first_day..first_day + 400 * 366 {
            let c = civil(days * SECS_PER_DAY);
            assert_eq!(
                (c.year, c.month, c.day, c.year_day),
                (y, m, d, yday),
                "days={days}"
            );
            d += 1;
            yday += 1;
            if d > days_in_month(y, m) {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                    yday = 1;
                }
            }
        }
    }
}
