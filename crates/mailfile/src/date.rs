//! The date of an mbox `From ` line: C's `asctime` form (`Thu Jan  1 00:00:00 2015`),
//! as RFC 4155 §2 describes it, with the variations found in real files (a time zone
//! after the year, or before it; no seconds; an RFC 5322 date). The date has no zone in
//! the usual form: it is read as UTC, as mutt and Dovecot write it.

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

/// The date found after the sender of a `From ` line (the text after `From `), in
/// seconds since the Unix epoch. `None` unless a month, a day, a time and a year are all
/// there, as mutt requires of a separator.
pub fn parse_from_line(rest: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(rest).ok()?;
    let mut tokens = text.split([' ', '\t', ',']).filter(|t| !t.is_empty());
    // The sender is the first token; the date is looked for after it.
    tokens.next()?;
    let (mut month, mut day, mut time, mut year, mut zone) = (None, None, None, None, 0i64);
    for token in tokens.take(12) {
        if month.is_none() {
            if let Some(index) = MONTHS.iter().position(|m| token.eq_ignore_ascii_case(m)) {
                month = Some(index as u32 + 1);
            } else if day.is_none() && token.len() <= 2 {
                // RFC 5322 order: the day before the month.
                day = token.parse::<u32>().ok();
            }
            continue;
        }
        if token.contains(':') {
            time = time.or_else(|| parse_time(token));
        } else if let Some(offset) = parse_zone(token) {
            zone = offset;
        } else if let Ok(number) = token.parse::<u32>() {
            if day.is_none() && token.len() <= 2 {
                day = Some(number);
            } else if year.is_none() && token.len() == 4 {
                year = Some(number);
            }
        }
    }
    let (month, day, time, year) = (month?, day?, time?, year?);
    if !(1..=31).contains(&day) || !(1970..=9999).contains(&year) {
        return None;
    }
    let days = hameau_calendar::days_from_civil(i64::from(year), month, day);
    let seconds = days * 86_400 + time as i64 - zone;
    u64::try_from(seconds).ok()
}

/// `hh:mm[:ss]` in seconds of the day.
fn parse_time(token: &str) -> Option<u32> {
    let mut parts = token.split(':');
    let hours: u32 = parts.next()?.parse().ok()?;
    let minutes: u32 = parts.next()?.parse().ok()?;
    let seconds: u32 = match parts.next() {
        Some(s) => s.parse().ok()?,
        None => 0,
    };
    if parts.next().is_some() || hours > 23 || minutes > 59 || seconds > 60 {
        return None;
    }
    Some(hours * 3600 + minutes * 60 + seconds.min(59))
}

/// `+hhmm` or `-hhmm` in seconds east of UTC.
fn parse_zone(token: &str) -> Option<i64> {
    let (sign, digits) = match token.as_bytes().first()? {
        b'+' => (1, &token[1..]),
        b'-' => (-1, &token[1..]),
        _ => return None,
    };
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: i64 = digits.parse().ok()?;
    Some(sign * ((value / 100) * 3600 + (value % 100) * 60))
}

/// `Thu Jan  1 00:00:00 1970`, UTC: what an mbox `From ` line carries.
pub fn asctime(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let of_day = seconds % 86_400;
    let (year, month, day) = hameau_calendar::civil_from_days(days);
    format!(
        "{} {} {:>2} {:02}:{:02}:{:02} {}",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        day,
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        year
    )
}
