//! Text forms Go gives `metav1.Time`, `metav1.MicroTime` and
//! `metav1.Duration` in JSON.

/// Unix seconds of Go's zero `time.Time` (0001-01-01T00:00:00Z), which
/// `metav1.Time` renders as JSON `null`.
pub(super) const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day)
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// RFC 3339 in UTC, `2024-01-01T00:00:00Z`, or with `micros` set
/// `2024-01-01T00:00:00.000000Z`. `None` when the year does not fit in four
/// digits (RFC 3339 cannot express it).
pub(super) fn rfc3339(seconds: i64, micros: Option<u32>) -> Option<String> {
    let days = seconds.div_euclid(86_400);
    let secs_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let (h, m, s) = (secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60);
    let mut out = format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}");
    if let Some(us) = micros {
        out.push_str(&format!(".{us:06}"));
    }
    out.push('Z');
    Some(out)
}

/// `v / 10^prec` with the fraction appended without trailing zeros, as Go's
/// `fmtFrac` + `fmtInt` do.
fn int_and_frac(v: u64, prec: u32) -> String {
    let scale = 10u64.pow(prec);
    let (int, frac) = (v / scale, v % scale);
    if frac == 0 {
        return int.to_string();
    }
    let digits = format!("{frac:0width$}", width = prec as usize);
    format!("{int}.{}", digits.trim_end_matches('0'))
}

/// Go's `time.Duration.String()`: `1h0m0s`, `5m0s`, `1.5s`, `1.5ms`, `0s`.
pub(super) fn go_duration(nanos: i64) -> String {
    let u = nanos.unsigned_abs();
    let sign = if nanos < 0 { "-" } else { "" };
    if u == 0 {
        return "0s".to_string();
    }
    if u < 1_000_000_000 {
        // Below a second Go switches to the largest unit that keeps an integer part.
        let (prec, unit) = match u {
            0..1_000 => (0, "ns"),
            1_000..1_000_000 => (3, "µs"),
            _ => (6, "ms"),
        };
        return format!("{sign}{}{unit}", int_and_frac(u, prec));
    }
    let secs = int_and_frac(u % 60_000_000_000, 9);
    let minutes = u / 60_000_000_000;
    if minutes == 0 {
        return format!("{sign}{secs}s");
    }
    let hours = minutes / 60;
    if hours == 0 {
        return format!("{sign}{minutes}m{secs}s");
    }
    format!("{sign}{hours}h{}m{secs}s", minutes % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(rfc3339(0, None).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(1_704_067_200, None).unwrap(),
            "2024-01-01T00:00:00Z"
        );
        // Leap day and end of a leap year.
        assert_eq!(
            rfc3339(1_709_210_096, None).unwrap(),
            "2024-02-29T12:34:56Z"
        );
        assert_eq!(
            rfc3339(1_735_689_599, None).unwrap(),
            "2024-12-31T23:59:59Z"
        );
        assert_eq!(rfc3339(-1, None).unwrap(), "1969-12-31T23:59:59Z");
        assert_eq!(
            rfc3339(951_782_400, Some(42)).unwrap(),
            "2000-02-29T00:00:00.000042Z"
        );
        assert_eq!(
            rfc3339(GO_ZERO_TIME_SECONDS, None).unwrap(),
            "0001-01-01T00:00:00Z"
        );
        assert_eq!(
            rfc3339(253_402_300_799, None).unwrap(),
            "9999-12-31T23:59:59Z"
        );
        assert_eq!(rfc3339(253_402_300_800, None), None);
        assert_eq!(rfc3339(i64::MIN, None), None);
        assert_eq!(rfc3339(i64::MAX, None), None);
    }

    #[test]
    fn duration_matches_go() {
        let cases = [
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1µs"),
            (2_200_000, "2.2ms"),
            (1_500_000_000, "1.5s"),
            (30_000_000_000, "30s"),
            (300_000_000_000, "5m0s"),
            (3_600_000_000_000, "1h0m0s"),
            (5_430_000_000_000, "1h30m30s"),
            (-1_500_000_000, "-1.5s"),
            (90_000_000_001, "1m30.000000001s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
            (i64::MAX, "2562047h47m16.854775807s"),
        ];
        for (nanos, want) in cases {
            assert_eq!(go_duration(nanos), want, "{nanos}");
        }
    }
}
