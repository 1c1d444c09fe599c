//! Points in time with their unit in the type: the host's clock in milliseconds, JWT
//! NumericDates in seconds. Arithmetic saturates (a hostile `exp` cannot overflow anything).

use std::time::Duration;

/// Milliseconds since the Unix epoch: the host's clock and every deadline derived from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixMillis(pub u64);

/// Seconds since the Unix epoch: a JWT NumericDate (`exp`, `nbf`, `iat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixSeconds(pub u64);

impl UnixMillis {
    pub fn plus(self, d: Duration) -> UnixMillis {
        UnixMillis(self.0.saturating_add(duration_ms(d)))
    }

    pub fn minus(self, d: Duration) -> UnixMillis {
        UnixMillis(self.0.saturating_sub(duration_ms(d)))
    }

    /// How long after `earlier` this is (zero when it is not after).
    pub fn since(self, earlier: UnixMillis) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// The whole seconds of this instant.
    pub fn seconds(self) -> UnixSeconds {
        UnixSeconds(self.0 / 1000)
    }
}

impl UnixSeconds {
    pub fn plus(self, seconds: u64) -> UnixSeconds {
        UnixSeconds(self.0.saturating_add(seconds))
    }

    pub fn millis(self) -> UnixMillis {
        UnixMillis(self.0.saturating_mul(1000))
    }
}

/// A duration in whole milliseconds, saturating.
pub fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_convert_and_saturate() {
        let t = UnixMillis(1_500);
        assert_eq!(t.seconds(), UnixSeconds(1));
        assert_eq!(UnixSeconds(2).millis(), UnixMillis(2_000));
        assert_eq!(UnixSeconds(u64::MAX).millis(), UnixMillis(u64::MAX));
        assert_eq!(t.plus(Duration::from_secs(1)), UnixMillis(2_500));
        assert_eq!(
            UnixMillis(u64::MAX).plus(Duration::from_secs(1)).0,
            u64::MAX
        );
        assert_eq!(t.minus(Duration::from_secs(9)), UnixMillis(0));
        assert_eq!(UnixMillis(3_000).since(t), Duration::from_millis(1_500));
        assert_eq!(t.since(UnixMillis(3_000)), Duration::ZERO);
    }
}
