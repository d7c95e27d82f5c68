//! Defences that bound what an adversary can make an agent do: per-source rate limits on
//! handshakes, the ban list of misbehaving identities, and the rotating cookie secret.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::keys::IdentityPub;
use super::mac;

/// Most sources tracked by the rate limiter; past it the table is cleared (bounded memory).
const MAX_SOURCES: usize = 4096;

/// A token bucket per source IP for handshake initiations.
#[derive(Debug)]
#[cfg_attr(feature = "testing", derive(Clone))]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl RateLimiter {
    /// `per_second` handshakes per source, bursts up to `burst`.
    pub fn new(per_second: f64, burst: f64) -> RateLimiter {
        RateLimiter { per_second, burst, buckets: HashMap::new() }
    }

    /// Takes a token for `src`; false if its bucket is empty.
    pub fn allow(&mut self, now: Instant, src: IpAddr) -> bool {
        if self.buckets.len() >= MAX_SOURCES && !self.buckets.contains_key(&src) {
            self.buckets.clear();
        }
        let (tokens, last) = self.buckets.entry(src).or_insert((self.burst, now));
        let refill = now.saturating_duration_since(*last).as_secs_f64() * self.per_second;
        *tokens = (*tokens + refill).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Why an identity was banned (shown by `gossipd members`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// Until when.
    pub until: Instant,
    /// How many times it was banned (the period doubles each time).
    pub strikes: u32,
    /// The last reason.
    pub reason: String,
}

/// Identities banned for sending malformed or out-of-scope data after authenticating.
#[derive(Debug, Default)]
#[cfg_attr(feature = "testing", derive(Clone))]
pub struct BanList {
    bans: HashMap<IdentityPub, Ban>,
}

impl BanList {
    /// Bans `id` for `base × 2^(strikes-1)` (at most a day) and returns the period.
    pub fn ban(&mut self, now: Instant, id: IdentityPub, base: Duration, reason: &str) -> Duration {
        let strikes = self.bans.get(&id).map_or(0, |b| b.strikes) + 1;
        let period = base.saturating_mul(1 << (strikes - 1).min(16)).min(Duration::from_secs(86_400));
        self.bans.insert(id, Ban { until: now + period, strikes, reason: reason.to_owned() });
        period
    }

    /// True while `id` is banned.
    pub fn is_banned(&self, now: Instant, id: &IdentityPub) -> bool {
        self.bans.get(id).is_some_and(|b| now < b.until)
    }

    /// Forgets bans that ended long ago (four periods of quiet clears the strike count).
    pub fn expire(&mut self, now: Instant, base: Duration) {
        self.bans.retain(|_, b| now < b.until + base.saturating_mul(4 << b.strikes.min(16)));
    }

    /// Current bans.
    pub fn active(&self, now: Instant) -> impl Iterator<Item = (&IdentityPub, &Ban)> {
        self.bans.iter().filter(move |(_, b)| now < b.until)
    }
}

/// The responder's cookie secret, replaced every two minutes.
#[derive(Debug)]
#[cfg_attr(feature = "testing", derive(Clone))]
pub struct CookieJar {
    secret: [u8; 32],
    changed: Instant,
}

impl Drop for CookieJar {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secret);
    }
}

/// Lifetime of a cookie secret (and of a received cookie).
pub const COOKIE_LIFETIME: Duration = Duration::from_secs(120);

impl CookieJar {
    /// A jar with a fresh secret.
    pub fn new(now: Instant, secret: [u8; 32]) -> CookieJar {
        CookieJar { secret, changed: now }
    }

    /// True when the secret is due for replacement ([`CookieJar::rotate`]) before the next cookie.
    pub fn expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.changed) >= COOKIE_LIFETIME
    }

    /// Replaces the secret.
    pub fn rotate(&mut self, now: Instant, secret: [u8; 32]) {
        self.secret = secret;
        self.changed = now;
    }

    /// The cookie for `src`: a MAC of its address under the current secret.
    pub fn cookie(&mut self, src: SocketAddr) -> [u8; 16] {
        let mut a = Vec::with_capacity(18);
        match src.ip() {
            IpAddr::V4(v) => a.extend_from_slice(&v.octets()),
            IpAddr::V6(v) => a.extend_from_slice(&v.octets()),
        }
        a.extend_from_slice(&src.port().to_be_bytes());
        mac::mac(&self.secret, &a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)]
    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn bucket_limits_and_refills() {
        let now = t0();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let mut r = RateLimiter::new(10.0, 3.0);
        assert!(r.allow(now, ip) && r.allow(now, ip) && r.allow(now, ip));
        assert!(!r.allow(now, ip));
        assert!(r.allow(now + Duration::from_millis(150), ip));
    }

    #[test]
    fn bans_double_and_end() {
        let now = t0();
        let id = IdentityPub([1; 32]);
        let mut b = BanList::default();
        let base = Duration::from_secs(10);
        assert_eq!(b.ban(now, id, base, "x"), base);
        assert!(b.is_banned(now + Duration::from_secs(9), &id));
        assert!(!b.is_banned(now + Duration::from_secs(10), &id));
        assert_eq!(b.ban(now, id, base, "y"), base * 2);
    }
}
