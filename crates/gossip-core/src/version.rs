//! Wire protocol versions: the range an agent speaks, and the negotiation of the version a
//! session uses (docs/PROTOCOL.md sections 2 and 5.2).
//!
//! Each agent proves its range `min..=max` in its handshake; both sides of a session then speak
//! the highest version in both ranges, and refuse the session (loudly) when there is none. A
//! cluster upgrades one agent at a time: a build that speaks `5..=6` talks 5 to the agents not
//! yet upgraded and 6 to the others, and a later build drops 5 once no agent needs it.
//!
//! Version 7 changed range fingerprints to the hash of a count and a sum (docs/PROTOCOL.md
//! section 1, [`crate::sums`]), which a replica keeps for every id prefix, so that answering a
//! range costs O(log N) instead of hashing each of its owners. The message format is version 6's;
//! a session at 5 or 6 fingerprints as before. The LAN and WAN pools speak `5..=7` and `6..=7`.
//!
//! Version 6 added two message kinds, an application query and its answer parts
//! (docs/PROTOCOL.md 3.9): the WAN pool speaks `6..=6`, a LAN pool `5..=6` (6 between agents of
//! this build, for relayed reads of other datacenters; 5 with agents of the build before).
//!
//! Version 4 added the owner's signed head to deltas (docs/PROTOCOL.md section 3.2); version 5
//! changed the owner digest to chunk hashes (section 1), so that a large owner's change costs a
//! chunk's hash instead of its whole set's. A 4 agent computes other digests than a 5 agent,
//! so this build no longer speaks 4 (never released, as 3 before it).

use std::fmt;

/// The lowest wire version this build speaks.
pub const BUILD_MIN: u8 = 5;
/// The highest wire version this build speaks. Builds with the `testing` feature also speak a
/// synthetic version 8 (the message format of version 7 followed by one byte `0x08`), so that
/// tests can run two "builds" in one cluster; without it, 7.
#[cfg(feature = "testing")]
pub const BUILD_MAX: u8 = 8;
/// The highest wire version this build speaks.
#[cfg(not(feature = "testing"))]
pub const BUILD_MAX: u8 = 7;

/// The highest version this build speaks by default (the synthetic version of the `testing`
/// feature must be asked for).
pub const DEFAULT_MAX: u8 = 7;

/// The lowest wire version whose range fingerprints are sums ([`crate::state::Scheme`]).
pub const SUM_MIN: u8 = 7;

/// The lowest wire version that carries application queries and answers (the WAN pool's
/// forwarding between datacenters): a WAN pool speaks only versions from this one.
pub const QUERY_MIN: u8 = 6;

/// An inclusive range of wire versions, `min ≤ max`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct VersionRange {
    min: u8,
    max: u8,
}

impl VersionRange {
    /// What this build speaks by default: `5..=7` (7 between two agents of this build, with
    /// additive fingerprints; 6 with the build before, so that a LAN member outside the WAN pool
    /// can relay its reads of other datacenters through one inside it; 5 with the one before
    /// that). The synthetic version 8 of the `testing` feature must be asked for.
    pub const DEFAULT: VersionRange = VersionRange { min: BUILD_MIN, max: DEFAULT_MAX };

    /// A range as a peer advertised it: any `min ≤ max` (a newer peer may speak versions this
    /// build does not).
    pub fn new(min: u8, max: u8) -> Option<VersionRange> {
        (min <= max).then_some(VersionRange { min, max })
    }

    /// A range this build can speak (`BUILD_MIN ≤ min ≤ max ≤ BUILD_MAX`), for the local
    /// configuration.
    pub fn supported(min: u8, max: u8) -> Option<VersionRange> {
        Self::new(min, max).filter(|r| r.min >= BUILD_MIN && r.max <= BUILD_MAX)
    }

    /// Lowest version.
    pub fn min(&self) -> u8 {
        self.min
    }

    /// Highest version.
    pub fn max(&self) -> u8 {
        self.max
    }

    /// True if `v` is in the range.
    pub fn contains(&self, v: u8) -> bool {
        self.min <= v && v <= self.max
    }

    /// The highest version in both ranges, if any: what a session between the two speaks.
    pub fn negotiate(&self, theirs: &VersionRange) -> Option<u8> {
        let v = self.max.min(theirs.max);
        (v >= self.min.max(theirs.min)).then_some(v)
    }
}

impl Default for VersionRange {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Debug for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..={}", self.min, self.max)
    }
}

impl fmt::Display for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..={}", self.min, self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_picks_the_highest_common_version() {
        let r = |a, b| VersionRange::new(a, b).unwrap();
        assert_eq!(r(4, 4).negotiate(&r(4, 5)), Some(4));
        assert_eq!(r(4, 5).negotiate(&r(4, 5)), Some(5));
        assert_eq!(r(4, 5).negotiate(&r(5, 7)), Some(5));
        assert_eq!(r(4, 4).negotiate(&r(5, 6)), None);
        assert_eq!(r(6, 9).negotiate(&r(4, 5)), None);
        assert!(VersionRange::new(5, 4).is_none());
        assert!(VersionRange::supported(4, 5).is_none(), "protocol 4 is no longer spoken");
        assert!(VersionRange::supported(5, 200).is_none());
        assert!(VersionRange::supported(QUERY_MIN, DEFAULT_MAX).is_some(), "the WAN pool's range");
        assert_eq!(VersionRange::supported(5, 7), Some(VersionRange::DEFAULT));
    }
}
