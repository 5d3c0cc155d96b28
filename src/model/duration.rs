//! Prometheus durations (`model.ParseDuration`): `<digits><unit>` terms with
//! units `y w d h m s ms`, largest first and each at most once, or `0`.
//! Shared by flags, HTTP parameters and the PromQL pre-pass.

/// The units with their length in milliseconds, largest first.
pub const DURATION_UNITS: [(&str, i64); 7] = [
    ("y", 31_536_000_000),
    ("w", 604_800_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Length in milliseconds of one `unit`, if it is a duration unit.
pub fn unit_ms(unit: &str) -> Option<i64> {
    DURATION_UNITS
        .iter()
        .find(|(u, _)| *u == unit)
        .map(|(_, ms)| *ms)
}

/// Parses a Prometheus duration to milliseconds; `None` if it is not one
/// (empty, signed, fractional, unknown or repeated or out-of-order units,
/// overflow).
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    if s == "0" {
        return Some(0);
    }
    if s.is_empty() {
        return None;
    }
    let mut rest = s;
    let mut total: i64 = 0;
    let mut last_unit = usize::MAX;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = DURATION_UNITS
            .iter()
            .position(|(u, _)| *u == &rest[..unit_len])?;
        if last_unit != usize::MAX && unit <= last_unit {
            return None;
        }
        last_unit = unit;
        rest = &rest[unit_len..];
        total = total.checked_add(n.checked_mul(DURATION_UNITS[unit].1)?)?;
    }
    Some(total)
}

/// Formats milliseconds as Prometheus prints a duration (`2m`, `1h30m`,
/// `250ms`, `0s`, `15d`, `2w`). As Prometheus's `model.Duration`, years and
/// weeks are used only when they divide the whole duration: `15d`, not
/// `2w1d`.
pub fn format_duration_ms(ms: u64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut rest = ms;
    let mut out = String::new();
    for (unit, len) in DURATION_UNITS {
        let len = len as u64;
        let exact_only = unit == "y" || unit == "w";
        if exact_only && !rest.is_multiple_of(len) {
            continue;
        }
        if rest >= len {
            out.push_str(&format!("{}{unit}", rest / len));
            rest %= len;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_format_table() {
        let ok = [
            ("0", 0),
            ("1s", 1_000),
            ("250ms", 250),
            ("1h30m", 5_400_000),
            ("2d", 172_800_000),
            ("1m30s500ms", 90_500),
        ];
        for (s, ms) in ok {
            assert_eq!(parse_duration_ms(s), Some(ms), "{s}");
        }
        for bad in [
            "",
            "1",
            "s",
            "1x",
            "-1s",
            "1.5s",
            "30s1m",
            "1s1s",
            "99999999999999999999y",
        ] {
            assert_eq!(parse_duration_ms(bad), None, "{bad}");
        }
        assert_eq!(format_duration_ms(5_400_250), "1h30m250ms");
        assert_eq!(format_duration_ms(0), "0s");
        assert_eq!(format_duration_ms(15 * 86_400_000), "15d");
        assert_eq!(format_duration_ms(14 * 86_400_000), "2w");
        assert_eq!(format_duration_ms(365 * 86_400_000 + 3_600_000), "365d1h");
        assert_eq!(format_duration_ms(379 * 86_400_000), "379d");
        assert_eq!(format_duration_ms(730 * 86_400_000), "2y");
        assert_eq!(unit_ms("w"), Some(604_800_000));
    }
}
