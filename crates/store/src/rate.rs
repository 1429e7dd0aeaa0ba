//! The sliding-window rule of rate limits, the same on every backend: what was taken in the current
//! window, plus what was taken in the previous one weighted by how much of it the sliding window
//! still overlaps, may not pass the limit.

/// What asking a rate limit came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    /// Within the limit (and, for a take, counted).
    Allowed,
    /// Over the limit; nothing was counted. Asking again after this long could be allowed.
    Refused { retry_after_ms: i64 },
}

impl Rate {
    pub fn allowed(self) -> bool {
        self == Rate::Allowed
    }
}

/// The start of the window `now` falls in.
pub(crate) fn window_start(now: i64, window_ms: i64) -> i64 {
    now - now.rem_euclid(window_ms.max(1))
}

/// Whether `amount` more fits under `limit`, given `previous` taken in the window before and
/// `current` taken in this one, `now` being `elapsed` into this window; if not, how long until it
/// would.
pub(crate) fn judge(
    previous: u64,
    current: u64,
    amount: u64,
    limit: u64,
    window_ms: i64,
    elapsed: i64,
) -> Rate {
    let window = u128::try_from(window_ms.max(1)).unwrap_or(1);
    let elapsed = u128::try_from(elapsed.clamp(0, window_ms.max(1))).unwrap_or(0);
    let (previous, current, amount, limit) =
        (u128::from(previous), u128::from(current), u128::from(amount), u128::from(limit));
    // previous × (window − elapsed) / window + current + amount ≤ limit, in integers.
    if previous * (window - elapsed) + (current + amount) * window <= limit * window {
        return Rate::Allowed;
    }
    // The earliest point (ms into a window) at which `previous` weighs little enough for `room`.
    let when = |previous: u128, room: u128| -> u128 {
        (room * window).checked_div(previous).map_or(0, |fits| window - fits.min(window))
    };
    let wait = if amount > limit {
        2 * window
    } else if current + amount <= limit {
        when(previous, limit - current - amount).saturating_sub(elapsed)
    } else {
        (window - elapsed) + when(current, limit - amount)
    };
    Rate::Refused { retry_after_ms: i64::try_from(wait.max(1)).unwrap_or(i64::MAX) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_previous_window_weighs_by_its_overlap() {
        // 10 per 1000 ms; 10 taken in the previous window.
        assert!(!judge(10, 0, 1, 10, 1000, 0).allowed(), "the previous window still counts whole");
        assert!(judge(10, 0, 5, 10, 1000, 500).allowed(), "half of it weighs 5");
        assert!(!judge(10, 0, 6, 10, 1000, 500).allowed());
        assert_eq!(judge(10, 0, 6, 10, 1000, 500), Rate::Refused { retry_after_ms: 100 });
        assert!(judge(0, 9, 1, 10, 1000, 0).allowed());
        assert_eq!(judge(0, 10, 1, 10, 1000, 250), Rate::Refused { retry_after_ms: 750 + 100 });
        assert_eq!(judge(0, 0, 11, 10, 1000, 0), Rate::Refused { retry_after_ms: 2000 });
    }
}
