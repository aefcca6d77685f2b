//! Token guessing, slowed to a crawl: a client that presented `limit` wrong tokens within a
//! window is refused (429) until that window ends, before its token is even compared. A
//! guesser then gets `limit` tries per window (10 a minute by default: 14,400 a day) instead
//! of thousands a second, while a person who mistypes the token a few times is not held up.
//!
//! Clients are told apart by address: an IPv4 address, or the /64 prefix of an IPv6 one (a
//! single host is usually given a whole /64). Behind a reverse proxy every client has the
//! proxy's address, so one guesser locks everyone's writes out for a window: reads are never
//! affected. Hand-written rather than taken from a rate-limiting crate: those limit requests,
//! whereas this counts failures and must refuse a client without charging it anything.

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

    /// How long `client` must wait before presenting a token again; None: it may now.
    pub fn refused(&self, client: IpAddr, now: Instant) -> Option<Duration> {
        let misses = self.lock();
        let m = misses.get(&key(client))?;
        let ends = m.since + self.window;
        (m.count >= self.limit && now < ends).then(|| ends - now)
    }

    /// Counts a wrong token from `client`.
    pub fn missed(&self, client: IpAddr, now: Instant) {
        let mut misses = self.lock();
        let window = self.window;
        let current = |m: &Misses| now < m.since + window;
        if misses.len() >= MAX_CLIENTS && !misses.contains_key(&key(client)) {
            misses.retain(|_, m| current(m));
            if misses.len() >= MAX_CLIENTS {
                return;
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
        m.count += 1;
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
        for i in 0..3 {
            assert_eq!(guesses.refused(a, start), None, "after {i}");
            guesses.missed(a, start + Duration::from_secs(i));
        }
        let wait = guesses.refused(a, start + Duration::from_secs(20));
        assert_eq!(wait, Some(Duration::from_secs(40)));
        assert_eq!(guesses.refused(b, start), None, "another client");
        assert_eq!(guesses.refused(a, start + Duration::from_secs(60)), None);
        // A new window starts from the next miss, with its count from zero.
        guesses.missed(a, start + Duration::from_secs(61));
        assert_eq!(guesses.refused(a, start + Duration::from_secs(62)), None);
    }

    #[test]
    fn an_ipv6_host_is_its_64_prefix_and_mapped_ipv4_is_ipv4() {
        let guesses = Guesses::new(2, Duration::from_secs(60));
        let now = Instant::now();
        guesses.missed(ip("2001:db8:1:2::1"), now);
        guesses.missed(ip("2001:db8:1:2:ffff::9"), now);
        assert!(guesses.refused(ip("2001:db8:1:2::77"), now).is_some());
        assert_eq!(guesses.refused(ip("2001:db8:1:3::1"), now), None);
        guesses.missed(ip("::ffff:198.51.100.7"), now);
        guesses.missed(ip("198.51.100.7"), now);
        assert!(guesses.refused(ip("198.51.100.7"), now).is_some());
    }

    #[test]
    fn memory_stays_bounded_by_forgetting_ended_windows() {
        let guesses = Guesses::new(1, Duration::from_secs(1));
        let start = Instant::now();
        for i in 0..MAX_CLIENTS as u32 {
            guesses.missed(IpAddr::from(i.to_be_bytes()), start);
        }
        assert_eq!(guesses.lock().len(), MAX_CLIENTS);
        // Full of current windows: a new client is not counted.
        let late = ip("203.0.113.9");
        guesses.missed(late, start);
        assert_eq!(guesses.refused(late, start), None);
        // Once those windows are over, they make room.
        let later = start + Duration::from_secs(2);
        guesses.missed(late, later);
        assert_eq!(guesses.lock().len(), 1);
        assert!(guesses.refused(late, later).is_some());
    }
}
