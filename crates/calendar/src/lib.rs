//! Calendar arithmetic shared by every crate that reads or writes a date: days since
//! 1970-01-01 to a proleptic Gregorian date and back (the well-known era-based method:
//! 400-year cycles of 146,097 days), and RFC 3339 UTC times (JMAP's `UTCDate`, the
//! backup manifest). No time zones but UTC, no clock: callers give Unix seconds.

/// Days from 1970-01-01 to `year`-`month`-`day` (month 1 to 12); negative before.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date `days` after 1970-01-01: (year, month 1 to 12, day 1 to 31). Days are
/// clamped to ±2^40 (some three billion years), so that no input overflows.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days.clamp(-(1 << 40), 1 << 40) + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The RFC 3339 UTC time of Unix seconds: `2026-12-01T09:30:00Z`.
pub fn rfc3339(unix_s: u64) -> String {
    let (year, month, day) = civil_from_days((unix_s / 86_400) as i64);
    let seconds = unix_s % 86_400;
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", seconds / 3600, seconds / 60 % 60, seconds % 60)
}

/// Unix seconds of an RFC 3339 time in UTC (`Z`, as JMAP's `UTCDate`; a fraction of a
/// second is dropped); `None` for any other shape, another zone, an impossible date, or
/// a time before 1970.
pub fn parse_rfc3339_utc(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 || !text.ends_with(['Z', 'z']) {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = text.get(range)?;
        part.bytes().all(|b| b.is_ascii_digit()).then(|| part.parse().ok())?
    };
    let separators = bytes[4] == b'-'
        && bytes[7] == b'-'
        && matches!(bytes[10], b'T' | b't')
        && bytes[13] == b':'
        && bytes[16] == b':';
    if !separators {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    // Bytes 17 and 18 are digits and the last is `Z`: both ends are character boundaries.
    let fraction = &text[19..text.len() - 1];
    let fraction_ok =
        fraction.len() > 1 && fraction.starts_with('.') && fraction[1..].bytes().all(|b| b.is_ascii_digit());
    if !fraction.is_empty() && !fraction_ok {
        return None;
    }
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => return None,
    };
    if day == 0 || day > days_in_month || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = u64::try_from(days_from_civil(i64::from(year), month, day)).ok()?;
    Some(days * 86_400 + u64::from(hour) * 3600 + u64::from(minute) * 60 + u64::from(second.min(59)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_go_there_and_back() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        for days in [-800_000, -1, 0, 59, 60, 11_016, 20_000, 2_932_896] {
            let (year, month, day) = civil_from_days(days);
            assert_eq!(days_from_civil(year, month, day), days, "{year}-{month}-{day}");
        }
    }

    #[test]
    fn rfc3339_times_are_written_and_read() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(parse_rfc3339_utc("2026-11-18T11:06:40Z"), Some(1_795_000_000));
        assert_eq!(parse_rfc3339_utc("2026-11-18T11:06:40.250Z"), Some(1_795_000_000));
        assert_eq!(parse_rfc3339_utc("2024-02-29T00:00:00Z").map(rfc3339).as_deref(), Some("2024-02-29T00:00:00Z"));
        for wrong in [
            "",
            "2026-11-18T06:26:40",
            "2026-11-18T06:26:40+01:00",
            "2026-13-18T06:26:40Z",
            "2023-02-29T00:00:00Z",
            "2026-11-18T24:00:00Z",
            "2026-11-18 06:26:40Z",
            "2026-11-18T06:26:40.Z",
            "1969-12-31T23:59:59Z",
            "+026-11-18T06:26:40Z",
            "2026-11-18T06:26:4éZ",
            "2026-11-18T06:26:40éZ",
        ] {
            assert_eq!(parse_rfc3339_utc(wrong), None, "{wrong}");
        }
    }
}
