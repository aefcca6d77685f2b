//! Token guessing, slowed to a crawl: a client that presented `limit` wrong tokens within a
//! window is refused (429) until that window ends, before its token is even compared. A
//! guesser then gets `limit` tries per window (10 a minute by default: 14,400 a day) instead
//! of thousands a second, while a person who mistypes the token a few times is not held up.
//!
//! Clients are told apart by address: an IPv4 address, or the /64 prefix of an IPv6 one (one
//! host can take any address of its /64). So clients that share an address share their tries:
//! behind a reverse proxy or a NAT, or on one IPv6 LAN (whose hosts share a /64), one guesser
//! holds everyone's writes off for a window. Reads are never affected. Hand-written rather
//! than taken from a rate-limiting crate: those limit requests, whereas this counts only
//! wrong tokens, and must count a try before the comparison and give it back after.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Clients remembered at once; past it, those whose window is over are forgotten, and if all
/// are current, new clients are not counted (each still gets at most `limit` per window from
/// every address it holds, which is what an address-based limit can do).
const MAX_CLIENTS: usize = 65_536;

pub struct Guesses {
    limit: u32,
    window: Duration,
    misses: Mutex<HashMap<u128, Misses>>,
}

/// A client's wrong tokens in its current window.
struct Misses {
    since: Instant,
    count: u32,
}

impl Guesses {
    /// At most `limit` wrong tokens per client per `window`.
    pub fn new(limit: u32, window: Duration) -> Guesses {
        Guesses {
            limit: limit.max(1),
            window,
            misses: Mutex::new(HashMap::new()),
        }
    }

    /// The window's length.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Takes one of `client`'s tries, before its token is compared: how many it has left
    /// after this one, or how long it must wait when it has none. Every token presented takes
    /// one at once, so concurrent requests cannot outrun the limit; [`Self::was_right`] gives
    /// it back.
    pub fn try_token(&self, client: IpAddr, now: Instant) -> Result<u32, Duration> {
        let mut misses = self.lock();
        let window = self.window;
        let current = |m: &Misses| now < m.since + window;
        if misses.len() >= MAX_CLIENTS && !misses.contains_key(&key(client)) {
            misses.retain(|_, m| current(m));
            if misses.len() >= MAX_CLIENTS {
                return Ok(self.limit);
            }
        }
        let m = misses.entry(key(client)).or_insert(Misses {
            since: now,
            count: 0,
        });
        if !current(m) {
            *m = Misses {
                since: now,
                count: 0,
            };
        }
        if m.count >= self.limit {
            return Err(m.since + window - now);
        }
        m.count += 1;
        Ok(self.limit - m.count)
    }

    /// Gives back the try a right token took: only wrong ones count.
    pub fn was_right(&self, client: IpAddr) {
        if let Some(m) = self.lock().get_mut(&key(client)) {
            m.count = m.count.saturating_sub(1);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u128, Misses>> {
        // A panic while holding the lock cannot leave a count half-written.
        self.misses.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The part of an address that names a client: all of IPv4 (and IPv4-mapped IPv6), the /64
/// prefix of IPv6.
fn key(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4)),
            None => u128::from(v6) & !u128::from(u64::MAX),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_client_is_refused_after_its_limit_until_its_window_ends() {
        let guesses = Guesses::new(3, Duration::from_secs(60));
        let start = Instant::now();
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        for left in [2, 1, 0] {
            assert_eq!(guesses.try_token(a, start), Ok(left));
        }
        let at = |s| start + Duration::from_secs(s);
        assert_eq!(guesses.try_token(a, at(20)), Err(Duration::from_secs(40)));
        assert_eq!(guesses.try_token(b, at(20)), Ok(2), "another client");
        // Refusals take nothing: the window still ends 60 s after its first try.
        assert_eq!(guesses.try_token(a, at(59)), Err(Duration::from_secs(1)));
        // A new window starts with the next try, its count from zero.
        assert_eq!(guesses.try_token(a, at(60)), Ok(2));
    }

    #[test]
    fn right_tokens_give_their_try_back() {
        let guesses = Guesses::new(2, Duration::from_secs(60));
        let (client, now) = (ip("192.0.2.1"), Instant::now());
        for _ in 0..10 {
            assert_eq!(guesses.try_token(client, now), Ok(1));
            guesses.was_right(client);
        }
        assert_eq!(guesses.try_token(client, now), Ok(1));
        assert_eq!(guesses.try_token(client, now), Ok(0));
        assert!(guesses.try_token(client, now).is_err());
    }

    #[test]
    fn an_ipv6_host_is_its_64_prefix_and_mapped_ipv4_is_ipv4() {
        let guesses = Guesses::new(2, Duration::from_secs(60));
        let now = Instant::now();
        assert_eq!(guesses.try_token(ip("2001:db8:1:2::1"), now), Ok(1));
        assert_eq!(guesses.try_token(ip("2001:db8:1:2:ffff::9"), now), Ok(0));
        assert!(guesses.try_token(ip("2001:db8:1:2::77"), now).is_err());
        assert_eq!(guesses.try_token(ip("2001:db8:1:3::1"), now), Ok(1));
        assert_eq!(guesses.try_token(ip("::ffff:198.51.100.7"), now), Ok(1));
        assert_eq!(guesses.try_token(ip("198.51.100.7"), now), Ok(0));
    }

    #[test]
    fn memory_stays_bounded_by_forgetting_ended_windows() {
        let guesses = Guesses::new(1, Duration::from_secs(1));
        let start = Instant::now();
        for i in 0..MAX_CLIENTS as u32 {
            assert_eq!(
                guesses.try_token(IpAddr::from(i.to_be_bytes()), start),
                Ok(0)
            );
        }
        assert_eq!(guesses.lock().len(), MAX_CLIENTS);
        // Full of current windows: a new client is not counted.
        let late = ip("203.0.113.9");
        for _ in 0..3 {
            assert_eq!(guesses.try_token(late, start), Ok(1));
        }
        // Once those windows are over, they make room.
        let later = start + Duration::from_secs(2);
        assert_eq!(guesses.try_token(late, later), Ok(0));
        assert_eq!(guesses.lock().len(), 1);
        assert!(guesses.try_token(late, later).is_err());
    }
}
