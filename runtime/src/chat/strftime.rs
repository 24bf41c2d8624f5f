//! `strftime_now(format)`, which templates call to put today's date in the system prompt.
//!
//! transformers formats the local time with Python's `datetime.now().strftime`. Tern has no
//! time-zone database, so this formats the current UTC time, with the C locale's English names;
//! an app that wants the local date passes its local time in `RenderOptions::now` (tests pass a
//! fixed one).

use std::fmt::Write;
use std::string::String;
use std::time::{SystemTime, UNIX_EPOCH};

const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// A broken-down UTC time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DateTime {
    pub year: i64,
    /// 1..=12.
    pub month: u32,
    /// 1..=31.
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// 0 = Monday.
    pub weekday: u32,
    /// 1..=366.
    pub yday: u32,
}

impl DateTime {
    /// The UTC time `secs` seconds after the Unix epoch.
    pub fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        let jan1 = days_from_civil(year, 1, 1);
        DateTime {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem / 60 % 60,
            second: rem % 60,
            // 1970-01-01 was a Thursday (3 with Monday = 0).
            weekday: (days + 3).rem_euclid(7) as u32,
            yday: (days - jan1 + 1) as u32,
        }
    }

    /// Now, in UTC.
    pub fn now() -> Self {
        let secs = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        };
        Self::from_unix(secs)
    }

    /// Formats like C `strftime` (glibc flavour: `%-d` drops the padding). Unknown directives
    /// are copied as they are, as glibc does.
    pub fn format(&self, fmt: &str) -> String {
        let mut out = String::new();
        let mut chars = fmt.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let unpadded = chars.peek() == Some(&'-');
            if unpadded {
                chars.next();
            }
            let Some(d) = chars.next() else {
                out.push('%');
                break;
            };
            let num = |out: &mut String, v: i64, width: usize| {
                if unpadded {
                    let _ = write!(out, "{v}");
                } else {
                    let _ = write!(out, "{v:0width$}");
                }
            };
            let hour12 = match self.hour % 12 {
                0 => 12,
                h => h,
            };
            match d {
                'Y' => {
                    let _ = write!(out, "{}", self.year);
                }
                'y' => num(&mut out, self.year.rem_euclid(100), 2),
                'm' => num(&mut out, self.month.into(), 2),
                'd' => num(&mut out, self.day.into(), 2),
                'e' => {
                    let _ = write!(out, "{:2}", self.day);
                }
                'H' => num(&mut out, self.hour.into(), 2),
                'I' => num(&mut out, hour12.into(), 2),
                'M' => num(&mut out, self.minute.into(), 2),
                'S' => num(&mut out, self.second.into(), 2),
                'j' => num(&mut out, self.yday.into(), 3),
                'p' => out.push_str(if self.hour < 12 { "AM" } else { "PM" }),
                'A' => out.push_str(DAYS[self.weekday as usize]),
                'a' => out.push_str(&DAYS[self.weekday as usize][..3]),
                'B' => out.push_str(MONTHS[self.month as usize - 1]),
                'b' | 'h' => out.push_str(&MONTHS[self.month as usize - 1][..3]),
                'u' => {
                    let _ = write!(out, "{}", self.weekday + 1);
                }
                'w' => {
                    let _ = write!(out, "{}", (self.weekday + 1) % 7);
                }
                'F' => {
                    let _ = write!(out, "{}-{:02}-{:02}", self.year, self.month, self.day);
                }
                'T' => {
                    let _ = write!(
                        out,
                        "{:02}:{:02}:{:02}",
                        self.hour, self.minute, self.second
                    );
                }
                'Z' => out.push_str("UTC"),
                'z' => out.push_str("+0000"),
                'n' => out.push('\n'),
                't' => out.push('\t'),
                '%' => out.push('%'),
                other => {
                    out.push('%');
                    if unpadded {
                        out.push('-');
                    }
                    out.push(other);
                }
            }
        }
        out
    }
}

/// (year, month, day) of the day `z` days after 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Days from 1970-01-01 to (y, m, d).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        let t = DateTime::from_unix(0);
        assert_eq!(
            t.format("%Y-%m-%d %H:%M:%S %A %j"),
            "1970-01-01 00:00:00 Thursday 001"
        );
        // 2024-02-29T13:05:09Z, a leap day (`date -u -d @1709211909`).
        let t = DateTime::from_unix(1_709_211_909);
        assert_eq!(t.format("%d %b %Y"), "29 Feb 2024");
        assert_eq!(
            t.format("%-d %B %Y, %I:%M %p (%a) %j"),
            "29 February 2024, 01:05 PM (Thu) 060"
        );
        // 2000-12-31T23:59:59Z: last day of a leap year.
        let t = DateTime::from_unix(978_307_199);
        assert_eq!(
            t.format("%F %T %y %u %w %Z%z"),
            "2000-12-31 23:59:59 00 7 0 UTC+0000"
        );
        assert_eq!(t.yday, 366);
        // Before the epoch.
        assert_eq!(
            DateTime::from_unix(-1).format("%F %T"),
            "1969-12-31 23:59:59"
        );
    }

    #[test]
    fn unknown_and_trailing_directives_are_kept() {
        let t = DateTime::from_unix(0);
        assert_eq!(t.format("%Q %-Q 100%% %"), "%Q %-Q 100% %");
    }

    #[test]
    fn every_day_round_trips() {
        for days in -800_000..800_000i64 {
            if days % 997 != 0 {
                continue;
            }
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
