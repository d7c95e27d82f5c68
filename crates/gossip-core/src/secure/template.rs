//! Copies of a layer that holds no session (`testing` feature): a fuzz harness builds its
//! layers once (identity, static key and binding signature cost more than most inputs) and runs
//! each input on a copy, so that nothing one input leaves in a layer (bans, rate limits,
//! timestamps, counters) is seen by the next and every crash replays from its input alone.

use super::SecureLayer;

impl SecureLayer {
    /// A copy of this layer, state for state: for a layer fresh from [`SecureLayer::new`], the
    /// layer `new` would build again from the same configuration and `now`. `None` if it holds
    /// a session or a handshake in flight (their Noise states cannot be copied).
    pub fn try_clone(&self) -> Option<SecureLayer> {
        if !self.sessions.is_empty() || !self.pending.is_empty() {
            return None;
        }
        // Every field named (no `..`): a new field has to be thought about here.
        Some(SecureLayer {
            cfg: self.cfg.clone(),
            start: self.start,
            rng: self.rng.clone(),
            current: self.current.clone(),
            previous: self.previous.clone(),
            next_rotation: self.next_rotation,
            sessions: Default::default(),
            bindings_of_sessions: self.bindings_of_sessions.clone(),
            by_addr: self.by_addr.clone(),
            pending: Default::default(),
            pending_by_addr: self.pending_by_addr.clone(),
            queue: self.queue.clone(),
            transcoder: self.transcoder,
            version_refusals: self.version_refusals.clone(),
            cookies: self.cookies.clone(),
            ik_failures: self.ik_failures.clone(),
            last_timestamp: self.last_timestamp.clone(),
            fin_retx: self.fin_retx.clone(),
            pins: self.pins.clone(),
            jar: self.jar.clone(),
            limiter: self.limiter.clone(),
            bans: self.bans.clone(),
            window_start: self.window_start,
            window_count: self.window_count,
            stats: self.stats.clone(),
            refusals: self.refusals.clone(),
            skews: self.skews.clone(),
            unadmitted: self.unadmitted.clone(),
            decrypt_failed: self.decrypt_failed.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use crate::secure::keys::{ClusterKey, Identity, Keyring};
    use crate::secure::{SecureConfig, SecureLayer};

    /// Any instant (the layer never reads the clock itself).
    #[allow(clippy::disallowed_methods)]
    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn a_copy_of_a_fresh_layer_is_the_layer_new_builds_and_one_with_a_handshake_is_refused() {
        let now = t0();
        let cfg =
            SecureConfig::new(Identity::from_secret([1; 32]), Keyring::new(ClusterKey::new([9; 32])), 1 << 60, [2; 32]);
        let mut template = SecureLayer::new(cfg.clone(), now);
        let mut fresh = SecureLayer::new(cfg, now);
        let mut copy = template.try_clone().expect("a fresh layer copies");
        assert_eq!(copy.binding(), fresh.binding());
        let dst = "127.0.0.1:7946".parse().unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        copy.send(now, dst, None, b"x", &mut a);
        fresh.send(now, dst, None, b"x", &mut b);
        assert_eq!(a, b, "the copy draws what the original would (same DRBG state)");
        assert!(copy.try_clone().is_none(), "a handshake in flight cannot be copied");
        // The template itself was not touched by the copy's use.
        let mut c = Vec::new();
        template.send(now, dst, None, b"x", &mut c);
        assert_eq!(c, a);
    }
}
