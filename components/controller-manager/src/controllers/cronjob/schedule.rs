//! Standard 5-field cron schedules as upstream's CronJobs read them (robfig/cron's standard
//! parser): ranges, steps, lists, month and weekday names, `?`, the `@hourly`-style macros,
//! and a `CRON_TZ=`/`TZ=` prefix naming the time zone.

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error("expected exactly 5 fields, found {0}: {1:?}")]
    Fields(usize, String),
    #[error("unrecognized descriptor: {0}")]
    Descriptor(String),
    #[error("failed to parse {field} field {text:?}")]
    Field { field: &'static str, text: String },
    #[error("provided bad location {0}: unknown time zone")]
    TimeZone(String),
}

/// A parsed schedule: the allowed values of each field as bit sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    days_of_week: u64,
    /// Day-of-month or day-of-week was `*`/`?`: then both must match, else either.
    day_star: bool,
    /// The time zone named by a `CRON_TZ=`/`TZ=` prefix.
    pub time_zone: Option<String>,
}

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY_OF_MONTH: Field = Field {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DAY_OF_WEEK: Field = Field {
    name: "day-of-week",
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

impl Field {
    fn value(&self, text: &str) -> Option<u32> {
        if let Some(i) = self.names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
            return Some(self.min + i as u32);
        }
        text.parse().ok()
    }

    /// The bits of one field: comma-separated `*`, `?`, `a`, `a-b`, each with an optional `/step`.
    fn parse(&self, text: &str) -> Result<(u64, bool), ScheduleError> {
        let bad = || ScheduleError::Field {
            field: self.name,
            text: text.to_string(),
        };
        let mut bits = 0u64;
        let mut star = false;
        for part in text.split(',') {
            let (range, step) = match part.split_once('/') {
                Some((range, step)) => (range, Some(step.parse::<u32>().map_err(|_| bad())?)),
                None => (part, None),
            };
            let (low, high) = if range == "*" || range == "?" {
                star = star || step.is_none();
                (self.min, self.max)
            } else if let Some((a, b)) = range.split_once('-') {
                (
                    self.value(a).ok_or_else(bad)?,
                    self.value(b).ok_or_else(bad)?,
                )
            } else {
                let a = self.value(range).ok_or_else(bad)?;
                // `a/n` runs from a to the end of the range.
                (a, if step.is_some() { self.max } else { a })
            };
            let step = step.unwrap_or(1);
            if low < self.min || high > self.max || low > high || step == 0 {
                return Err(bad());
            }
            let mut v = low;
            while v <= high {
                bits |= 1 << v;
                v += step;
            }
        }
        Ok((bits, star))
    }
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Schedule, ScheduleError> {
        let mut text = text.trim();
        let mut time_zone = None;
        for prefix in ["CRON_TZ=", "TZ="] {
            if let Some(rest) = text.strip_prefix(prefix) {
                let (zone, rest) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                time_zone = Some(zone.to_string());
                text = rest.trim();
            }
        }
        let expanded = if text.starts_with('@') {
            match text {
                "@yearly" | "@annually" => "0 0 1 1 *",
                "@monthly" => "0 0 1 * *",
                "@weekly" => "0 0 * * 0",
                "@daily" | "@midnight" => "0 0 * * *",
                "@hourly" => "0 * * * *",
                other => return Err(ScheduleError::Descriptor(other.to_string())),
            }
        } else {
            text
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(ScheduleError::Fields(fields.len(), text.to_string()));
        }
        let (minutes, _) = MINUTE.parse(fields[0])?;
        let (hours, _) = HOUR.parse(fields[1])?;
        let (days_of_month, dom_star) = DAY_OF_MONTH.parse(fields[2])?;
        let (months, _) = MONTH.parse(fields[3])?;
        let (days_of_week, dow_star) = DAY_OF_WEEK.parse(fields[4])?;
        Ok(Schedule {
            minutes,
            hours,
            days_of_month,
            months,
            days_of_week,
            day_star: dom_star || dow_star,
            time_zone,
        })
    }

    fn day_matches(&self, date: Date) -> bool {
        let dom = self.days_of_month & (1 << date.day()) != 0;
        let dow = self.days_of_week & (1 << date.weekday().to_sunday_zero_offset()) != 0;
        if self.day_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first time after `after` (strictly) the schedule fires in `zone`; None if it never
    /// does within five years (such as February 30th).
    pub fn next_after(&self, after: Timestamp, zone: &TimeZone) -> Option<Timestamp> {
        let start = zone.to_datetime(after);
        // The next whole minute.
        let mut t = start
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(1.minute())
            .ok()?;
        let limit = start.year() + 5;
        while t.year() <= limit {
            if self.months & (1 << t.month()) == 0 {
                t = DateTime::from_parts(
                    t.date().first_of_month().checked_add(1.month()).ok()?,
                    Time::midnight(),
                );
                continue;
            }
            if !self.day_matches(t.date()) {
                t = DateTime::from_parts(t.date().tomorrow().ok()?, Time::midnight());
                continue;
            }
            if self.hours & (1 << t.hour()) == 0 {
                t = t
                    .with()
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(1.hour())
                    .ok()?;
                continue;
            }
            if self.minutes & (1 << t.minute()) == 0 {
                t = t.checked_add(1.minute()).ok()?;
                continue;
            }
            let instant = zone.to_ambiguous_timestamp(t).compatible().ok()?;
            if instant > after {
                return Some(instant);
            }
            t = t.checked_add(1.minute()).ok()?;
        }
        None
    }
}

/// The time zone a CronJob's schedule runs in: its `spec.timeZone`, else the schedule's
/// prefix, else UTC (this controller manager's local zone is UTC).
pub fn time_zone(spec_zone: Option<&str>, schedule: &Schedule) -> Result<TimeZone, ScheduleError> {
    match spec_zone.or(schedule.time_zone.as_deref()) {
        None | Some("UTC") | Some("Etc/UTC") => Ok(TimeZone::UTC),
        Some(name) => TimeZone::get(name).map_err(|_| ScheduleError::TimeZone(name.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn next(schedule: &str, after: &str) -> String {
        let s = Schedule::parse(schedule).unwrap();
        let zone = time_zone(None, &s).unwrap();
        s.next_after(at(after), &zone).unwrap().to_string()
    }

    #[test]
    fn every_minute_fires_on_the_next_minute() {
        assert_eq!(
            next("* * * * *", "2024-03-01T10:00:00Z"),
            "2024-03-01T10:01:00Z"
        );
        assert_eq!(
            next("* * * * *", "2024-03-01T10:00:30Z"),
            "2024-03-01T10:01:00Z"
        );
    }

    #[test]
    fn steps_ranges_and_lists() {
        assert_eq!(
            next("*/15 * * * *", "2024-03-01T10:16:00Z"),
            "2024-03-01T10:30:00Z"
        );
        assert_eq!(
            next("5-10/5 * * * *", "2024-03-01T10:05:00Z"),
            "2024-03-01T10:10:00Z"
        );
        assert_eq!(
            next("5-10/5 * * * *", "2024-03-01T10:10:00Z"),
            "2024-03-01T11:05:00Z"
        );
        assert_eq!(
            next("0 9,17 * * *", "2024-03-01T10:00:00Z"),
            "2024-03-01T17:00:00Z"
        );
        assert_eq!(
            next("30/10 * * * *", "2024-03-01T10:55:00Z"),
            "2024-03-01T11:30:00Z"
        );
    }

    #[test]
    fn names_and_macros() {
        // 2024-03-01 is a Friday.
        assert_eq!(
            next("0 0 * * mon", "2024-03-01T10:00:00Z"),
            "2024-03-04T00:00:00Z"
        );
        assert_eq!(
            next("0 0 1 jan *", "2024-03-01T10:00:00Z"),
            "2025-01-01T00:00:00Z"
        );
        assert_eq!(
            next("0 0 * * MON-FRI", "2024-03-01T10:00:00Z"),
            "2024-03-04T00:00:00Z"
        );
        assert_eq!(
            next("@hourly", "2024-03-01T10:00:00Z"),
            "2024-03-01T11:00:00Z"
        );
        assert_eq!(
            next("@daily", "2024-03-01T10:00:00Z"),
            "2024-03-02T00:00:00Z"
        );
        assert_eq!(
            next("@weekly", "2024-03-01T10:00:00Z"),
            "2024-03-03T00:00:00Z"
        );
        assert_eq!(
            next("@monthly", "2024-03-01T10:00:00Z"),
            "2024-04-01T00:00:00Z"
        );
        assert_eq!(
            next("@yearly", "2024-03-01T10:00:00Z"),
            "2025-01-01T00:00:00Z"
        );
    }

    #[test]
    fn day_of_month_or_day_of_week_when_both_restricted() {
        // The 15th, or any Monday.
        assert_eq!(
            next("0 0 15 * 1", "2024-03-05T00:00:00Z"),
            "2024-03-11T00:00:00Z"
        );
        assert_eq!(
            next("0 0 15 * 1", "2024-03-12T00:00:00Z"),
            "2024-03-15T00:00:00Z"
        );
        // With a star, both must hold: the 29th of February.
        assert_eq!(
            next("0 0 29 2 *", "2024-03-01T00:00:00Z"),
            "2028-02-29T00:00:00Z"
        );
    }

    #[test]
    fn impossible_dates_never_fire() {
        let s = Schedule::parse("0 0 30 2 *").unwrap();
        assert_eq!(
            s.next_after(at("2024-01-01T00:00:00Z"), &TimeZone::UTC),
            None
        );
    }

    #[test]
    fn invalid_schedules_are_refused() {
        for bad in [
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 7",
            "*/0 * * * *",
            "5-1 * * * *",
            "@every 5m",
            "x * * * *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn time_zones_from_the_prefix_or_the_spec() {
        let s = Schedule::parse("CRON_TZ=Europe/Berlin 0 9 * * *").unwrap();
        assert_eq!(s.time_zone.as_deref(), Some("Europe/Berlin"));
        assert_eq!(
            time_zone(Some("No/Such_Zone"), &s),
            Err(ScheduleError::TimeZone("No/Such_Zone".into()))
        );
        // Needs the system's zoneinfo; winter in Berlin is UTC+1.
        if let Ok(zone) = time_zone(None, &s) {
            let fired = s.next_after(at("2024-01-10T00:00:00Z"), &zone).unwrap();
            assert_eq!(fired.to_string(), "2024-01-10T08:00:00Z");
        }
        let tz = Schedule::parse("TZ=UTC @hourly").unwrap();
        assert_eq!(tz.time_zone.as_deref(), Some("UTC"));
    }
}
