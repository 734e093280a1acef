//! Timestamps: RFC 3339 in (any offset), UTC with `Z` out.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// An instant, stored as seconds and nanoseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp {
    secs: i64,
    nanos: u32,
}

impl Timestamp {
    pub fn now() -> Self {
        Self::from_datetime(Utc::now())
    }

    fn from_datetime(at: DateTime<Utc>) -> Self {
        Timestamp {
            secs: at.timestamp(),
            nanos: at.timestamp_subsec_nanos(),
        }
    }

    /// Seconds since the Unix epoch and the nanoseconds past them: the whole value, for
    /// layouts that store it outside bincode (index entry values).
    pub fn to_parts(self) -> (i64, u32) {
        (self.secs, self.nanos)
    }

    /// The instant [`Timestamp::to_parts`] gave; `None` for nanoseconds past a second (only
    /// corrupt bytes have those).
    pub fn from_parts(secs: i64, nanos: u32) -> Option<Self> {
        (nanos < 1_000_000_000).then_some(Timestamp { secs, nanos })
    }

    /// This instant moved by `by` (forward), or back by `by` with [`Timestamp::minus`].
    pub fn plus(self, by: std::time::Duration) -> Timestamp {
        let nanos = u64::from(self.nanos) + u64::from(by.subsec_nanos());
        Timestamp {
            secs: self
                .secs
                .saturating_add(i64::try_from(by.as_secs()).unwrap_or(i64::MAX))
                .saturating_add((nanos / 1_000_000_000) as i64),
            nanos: (nanos % 1_000_000_000) as u32,
        }
    }

    /// This instant moved back by `by`.
    pub fn minus(self, by: std::time::Duration) -> Timestamp {
        let mut secs = self
            .secs
            .saturating_sub(i64::try_from(by.as_secs()).unwrap_or(i64::MAX));
        let mut nanos = i64::from(self.nanos) - i64::from(by.subsec_nanos());
        if nanos < 0 {
            nanos += 1_000_000_000;
            secs = secs.saturating_sub(1);
        }
        Timestamp {
            secs,
            nanos: nanos as u32,
        }
    }

    /// Whole seconds from `earlier` to this instant (negative when `earlier` is later).
    pub fn seconds_since(self, earlier: Timestamp) -> i64 {
        self.secs - earlier.secs
    }

    /// Parses an RFC 3339 date-time with any offset.
    pub fn parse_rfc3339(text: &str) -> Result<Self, String> {
        DateTime::parse_from_rfc3339(text)
            .map(|at| Self::from_datetime(at.with_timezone(&Utc)))
            .map_err(|e| {
                format!("must be an RFC 3339 date-time such as 2019-08-24T14:15:22Z ({e})")
            })
    }

    /// RFC 3339 in UTC with `Z`, with as many fraction digits as needed (0, 3, 6 or 9).
    pub fn to_rfc3339(self) -> String {
        match DateTime::<Utc>::from_timestamp(self.secs, self.nanos) {
            Some(at) => at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            // Only reachable with a corrupt record: parse_rfc3339 never yields such a value.
            None => format!("{}s", self.secs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moving_an_instant_carries_the_nanoseconds() {
        let t = Timestamp::parse_rfc3339("2019-08-24T14:15:22.750Z").unwrap();
        let later = t.plus(std::time::Duration::from_millis(500));
        assert_eq!(later.to_rfc3339(), "2019-08-24T14:15:23.250Z");
        assert_eq!(later.minus(std::time::Duration::from_millis(500)), t);
        let earlier = t.minus(std::time::Duration::from_millis(900));
        assert_eq!(earlier.to_rfc3339(), "2019-08-24T14:15:21.850Z");
    }

    #[test]
    fn offsets_are_normalised_to_utc_z() {
        let t = Timestamp::parse_rfc3339("2019-08-24T16:15:22+02:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2019-08-24T14:15:22Z");
        let t = Timestamp::parse_rfc3339("2019-08-24T14:15:22.5Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2019-08-24T14:15:22.500Z");
    }

    #[test]
    fn non_rfc3339_text_is_rejected() {
        for bad in [
            "2019-08-24",
            "yesterday",
            "2019-13-01T00:00:00Z",
            "2019-08-24 14:15:22",
        ] {
            assert!(Timestamp::parse_rfc3339(bad).is_err(), "{bad}");
        }
    }
}
