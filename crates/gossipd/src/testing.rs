//! TEST-ONLY: hidden `gossipd agent` flags that make this binary behave as a "newer build", so
//! that `integration/tests/evolution.rs` can run two builds in one cluster (docs/PROTOCOL.md
//! sections 2 and 3.2). They exist only with the `testing` cargo feature (`scripts/test` builds
//! it as `target/debug/gossipd-next`); without it [`TestArgs`] is empty and nothing changes.

use clap::Args;

/// The hidden test-only flags (none without the `testing` feature).
#[cfg(not(feature = "testing"))]
#[derive(Debug, Clone, Default, Args)]
pub struct TestArgs {}

/// The hidden test-only flags.
#[cfg(feature = "testing")]
#[derive(Debug, Clone, Default, Args)]
pub struct TestArgs {
    /// TEST-ONLY: advertise the wire versions `BUILD_MIN..=N` (with the `testing` feature the
    /// core also speaks the synthetic version 8).
    #[arg(long, hide = true, value_name = "N")]
    pub test_protocol_max: Option<u8>,
    /// TEST-ONLY: at start, write one entry (`x/new`) of a value kind no release knows (tag 200).
    #[arg(long, hide = true)]
    pub test_new_kind: bool,
}

/// The value tag of the synthetic new kind.
#[cfg(feature = "testing")]
pub const NEW_KIND: u8 = 200;

/// The key of the synthetic new kind's entry.
#[cfg(feature = "testing")]
pub const NEW_KIND_KEY: &str = "x/new";

#[cfg(not(feature = "testing"))]
impl TestArgs {
    /// Nothing to configure without the `testing` feature.
    pub fn configure(&self, _: &mut gossip_core::secure::SecureConfig) -> anyhow::Result<()> {
        Ok(())
    }

    /// Nothing to write without the `testing` feature.
    pub fn start(&self, _: &mut gossip_core::Gossip, _: std::time::Instant) {}
}

#[cfg(feature = "testing")]
impl TestArgs {
    /// Applies `--test-protocol-max` to the secure layer's configuration.
    pub fn configure(&self, secure: &mut gossip_core::secure::SecureConfig) -> anyhow::Result<()> {
        use gossip_core::version::{BUILD_MAX, BUILD_MIN, VersionRange};
        if let Some(max) = self.test_protocol_max {
            secure.versions = VersionRange::supported(BUILD_MIN, max).ok_or_else(|| {
                anyhow::anyhow!("--test-protocol-max {max}: this build speaks {BUILD_MIN}..={BUILD_MAX}")
            })?;
            tracing::warn!(versions = %secure.versions, "TEST-ONLY: --test-protocol-max");
        }
        Ok(())
    }

    /// Applies `--test-new-kind` to the node, once it exists.
    pub fn start(&self, gossip: &mut gossip_core::Gossip, now: std::time::Instant) {
        if self.test_new_kind {
            let bytes = b"a record of a kind protocol 5 does not know".to_vec();
            gossip.write_unchecked(now, NEW_KIND_KEY, gossip_core::Value::Unknown { tag: NEW_KIND, bytes });
            tracing::warn!(
                key = NEW_KIND_KEY,
                tag = NEW_KIND,
                "TEST-ONLY: --test-new-kind wrote an entry of an unknown kind"
            );
        }
    }
}
