//! Times on the command line: RFC 3339 in UTC, or an age such as `15m`.

use anyhow::{bail, Context};

/// Milliseconds since the Unix epoch for `text`, given the current time.
pub fn parse_time(flag: &str, text: &str, now_ms: u64) -> anyhow::Result<u64> {
    if let Some(age) = parse_age(text) {
        return Ok(now_ms.saturating_sub(age));
    }
    parse_rfc3339(text).with_context(|| {
        format!("--{flag} {text:?}: expected RFC 3339 UTC (2026-11-22T10:00:00Z) or an age (90s, 15m, 2h, 7d)")
    })
}

/// A time to come: RFC 3339 in UTC, or a duration from `now_ms` (30d, 12h).
pub fn parse_future_time(flag: &str, text: &str, now_ms: u64) -> anyhow::Result<u64> {
    if let Some(ahead) = parse_age(text) {
        return Ok(now_ms.saturating_add(ahead));
    }
    parse_rfc3339(text).with_context(|| {
        format!("--{flag} {text:?}: expected RFC 3339 UTC (2027-01-31T00:00:00Z) or a duration from now (12h, 30d)")
    })
}

/// A duration flag: bare seconds, or with a unit (500ms, 30s, 2m, 1h).
pub fn parse_duration(flag: &str, text: &str) -> anyhow::Result<std::time::Duration> {
    let ms = match text.parse::<u64>() {
        Ok(secs) => secs.checked_mul(1000),
        Err(_) => match text.strip_suffix("ms") {
            Some(n) => n.parse::<u64>().ok(),
            None => parse_age(text),
        },
    };
    ms.map(std::time::Duration::from_millis).with_context(|| {
        format!("--{flag} {text:?}: expected seconds or a duration (500ms, 30s, 2m)")
    })
}

fn parse_age(text: &str) -> Option<u64> {
    let (num, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = num.parse().ok()?;
    let ms = match unit {
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(ms)
}

fn parse_rfc3339(text: &str) -> anyhow::Result<u64> {
    let t = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix("+00:00"))
        .context("only UTC (Z) times")?;
    let (date, time) = t.split_once('T').context("no T between date and time")?;
    let d: Vec<i64> = date
        .split('-')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context("bad date")?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let h: Vec<i64> = hms
        .split(':')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context("bad time")?;
    if d.len() != 3 || h.len() != 3 {
        bail!("expected YYYY-MM-DDTHH:MM:SS");
    }
    let (y, m, day) = (d[0], d[1], d[2]);
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        bail!("date out of range");
    }
    if !(0..24).contains(&h[0]) || !(0..60).contains(&h[1]) || !(0..61).contains(&h[2]) {
        bail!("time out of range");
    }
    // Days from civil (H. Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let millis: u64 = format!("{frac:0<3}")[..3].parse().context("bad fraction")?;
    Ok((days * 86_400 + h[0] * 3600 + h[1] * 60 + h[2]) as u64 * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_rfc3339() {
        assert_eq!(parse_time("since", "15m", 1_000_000).unwrap(), 100_000);
        assert_eq!(
            parse_time("since", "1970-01-02T00:00:01Z", 0).unwrap(),
            86_401_000
        );
        assert_eq!(
            parse_time("since", "2026-11-22T10:00:00.250Z", 0).unwrap(),
            1_795_341_600_250
        );
        let e = parse_time("since", "yesterday", 0).unwrap_err();
        assert!(format!("{e:#}").contains("--since"), "{e:#}");
        assert!(parse_time("since", "2026-13-01T00:00:00Z", 0).is_err());
    }

    #[test]
    fn durations_in_seconds_or_with_a_unit() {
        use std::time::Duration;
        assert_eq!(parse_duration("x", "30").unwrap(), Duration::from_secs(30));
        assert_eq!(
            parse_duration("x", "500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(parse_duration("x", "2m").unwrap(), Duration::from_secs(120));
        let e = parse_duration("max-auth-staleness", "soon").unwrap_err();
        assert!(format!("{e:#}").contains("--max-auth-staleness"), "{e:#}");
    }
}
