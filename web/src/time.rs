//! Times and time ranges in requests: RFC 3339 (`2026-11-22T10:00:00Z`) or Unix
//! milliseconds, a range that must run forwards, and intervals like `5s`.

use crate::ApiError;

/// Parses `value` of parameter `field` as RFC 3339 (any offset, any fraction of a second,
/// before 1970 too) or Unix milliseconds, to Unix µs.
pub fn parse_time_us(field: &str, value: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = value.parse::<i64>() {
        return Ok(ms.saturating_mul(1000));
    }
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(|t| i64::try_from(t.unix_timestamp_nanos() / 1000).ok())
        .ok_or_else(|| {
            ApiError::invalid(
                field,
                format!("{value:?} is not a time: use RFC 3339 (2026-11-22T10:00:00Z) or Unix milliseconds"),
            )
        })
}

/// A half-open range of Unix µs, `from` before `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub from_us: i64,
    pub to_us: i64,
}

impl TimeRange {
    /// From the `from` and `to` parameters: `to` defaults to `now_us`, `from` to `default_span_us`
    /// before `to`.
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        now_us: i64,
        default_span_us: i64,
    ) -> Result<TimeRange, ApiError> {
        let to_us = to.map_or(Ok(now_us), |t| parse_time_us("to", t))?;
        let from_us = from.map_or(Ok(to_us.saturating_sub(default_span_us)), |t| {
            parse_time_us("from", t)
        })?;
        if from_us >= to_us {
            return Err(ApiError::invalid("from", "must be before `to`"));
        }
        Ok(TimeRange { from_us, to_us })
    }
}

/// Parses an interval parameter like `5s`, `500ms` or `1m`, to µs (at least 1).
pub fn parse_interval_us(field: &str, value: &str) -> Result<i64, ApiError> {
    let d = humantime::parse_duration(value)
        .map_err(|e| ApiError::invalid(field, format!("{value:?}: {e} (e.g. 5s, 500ms, 1m)")))?;
    Ok(i64::try_from(d.as_micros()).unwrap_or(i64::MAX).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_both_ways_and_ranges_run_forwards() {
        assert_eq!(parse_time_us("from", "1000").unwrap(), 1_000_000);
        assert_eq!(
            parse_time_us("from", "1970-01-01T00:00:01Z").unwrap(),
            1_000_000
        );
        // Offsets and fractions, as other time zones' clients send them; and before 1970.
        assert_eq!(
            parse_time_us("from", "1970-01-01T01:00:01.5+01:00").unwrap(),
            1_500_000
        );
        assert_eq!(
            parse_time_us("from", "1969-12-31T23:59:59Z").unwrap(),
            -1_000_000
        );
        let e = parse_time_us("to", "yesterday").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("to"));
        let r = TimeRange::parse(None, None, 10_000_000, 4_000_000).unwrap();
        assert_eq!((r.from_us, r.to_us), (6_000_000, 10_000_000));
        let e = TimeRange::parse(Some("9000"), Some("2000"), 0, 1).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("from"));
        assert_eq!(parse_interval_us("every", "5s").unwrap(), 5_000_000);
        assert!(parse_interval_us("every", "often").is_err());
    }
}
