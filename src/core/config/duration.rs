//! Durations as the configuration writes them: `"5s"`, `"1.5s"`, `"500ms"`, `"10m"`, `"1h"`.

use std::time::Duration;

use super::error::{err, ConfigError};
use super::reader::Obj;

/// Parses `"5s"`, `"1.5s"`, `"500ms"`, `"10m"`, `"1h"` (protobuf JSON durations use `s`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (number, unit_ms) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1_000.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3_600_000.0)
    } else {
        return None;
    };
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let ms = value * unit_ms;
    if !ms.is_finite() || !(0.0..=1.0e12).contains(&ms) {
        return None;
    }
    Some(Duration::from_millis(ms.round() as u64))
}

/// Reads the duration field `key`: `default` when absent, an error when shorter than `min`.
/// Having a default, it is checked as it is read (see [`Obj::finish`]).
pub(super) fn duration_at_least(
    o: &mut Obj,
    key: &'static str,
    default: Duration,
    min: Duration,
) -> Result<Duration, ConfigError> {
    let d = match o.string(key)? {
        None => return Ok(default),
        Some(v) => parse_duration(&v).ok_or_else(|| {
            err(
                o.at(key),
                format!("{v:?} is not a duration such as \"5s\", \"500ms\", \"10m\""),
            )
        })?,
    };
    if d < min {
        return Err(err(
            o.at(key),
            format!("must be at least {}ms", min.as_millis()),
        ));
    }
    Ok(d)
}

/// Reads the optional duration field `key` (no default): an error when shorter than `min`.
pub(super) fn optional_duration(
    o: &mut Obj,
    key: &'static str,
    min: Duration,
) -> Result<Option<Duration>, ConfigError> {
    if o.string(key)?.is_none() {
        return Ok(None);
    }
    duration_at_least(o, key, Duration::ZERO, min).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        for bad in ["", "s", "5", "-1s", "1e3s", "5 s", "abc"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_bounded_duration_has_a_default_and_a_minimum() {
        let doc = json!({"short": "50ms", "bad": "soon", "ok": "2s"});
        let mut o = Obj::root(&doc).unwrap();
        let min = Duration::from_millis(100);
        let default = Duration::from_secs(7);
        assert_eq!(
            duration_at_least(&mut o, "absent", default, min),
            Ok(default)
        );
        assert_eq!(
            duration_at_least(&mut o, "ok", default, min),
            Ok(Duration::from_secs(2))
        );
        let e = duration_at_least(&mut o, "short", default, min).unwrap_err();
        assert_eq!(e.to_string(), "short: must be at least 100ms");
        let e = duration_at_least(&mut o, "bad", default, min).unwrap_err();
        assert_eq!(
            e.to_string(),
            "bad: \"soon\" is not a duration such as \"5s\", \"500ms\", \"10m\""
        );
    }
}
