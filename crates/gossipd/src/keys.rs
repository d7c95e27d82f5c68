//! Cluster keys and the keyring on the agent's side: key encoding (base64 of 32 bytes, as
//! `serf keygen`), `gossipd keygen`, loading the initial key from `--cluster-key-file` or
//! `GOSSIPD_CLUSTER_KEY`, and the persisted keyring (`keyring.json`, mode 0600).
//!
//! The keyring in the data directory wins over the flag once it exists, as with Serf and
//! Consul: changes made at run time (`gossipd keys ...`, or adopted from the cluster) survive
//! restarts, and a key removed from the cluster is not re-admitted by an old key file. A flag
//! key the stored keyring lacks is ignored with a warning.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::persist::{DataDir, PersistError};

/// File of the persisted keyring.
pub const KEYRING_FILE: &str = "keyring.json";

/// Base64 of a 32-byte key.
pub fn encode_key(key: &[u8; 32]) -> String {
    STANDARD.encode(key)
}

/// Parses base64 of exactly 32 bytes.
pub fn decode_key(s: &str) -> Result<[u8; 32], String> {
    let bytes = STANDARD.decode(s.trim()).map_err(|e| format!("not valid base64: {e}"))?;
    bytes.try_into().map_err(|b: Vec<u8>| format!("must decode to 32 bytes, got {}", b.len()))
}

/// A fresh random key.
pub fn generate() -> anyhow::Result<[u8; 32]> {
    let mut k = [0u8; 32];
    getrandom::fill(&mut k).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
    Ok(k)
}

/// `keyring.json` on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyringFile {
    /// Ordering stamp of this keyring (0: from the command line, never changed at run time).
    pub stamp: u64,
    /// Keys, base64, primary first.
    pub keys: Vec<String>,
}

/// The keyring to start with, and its stamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartKeyring {
    /// Keys, primary first.
    pub keys: Vec<[u8; 32]>,
    /// Stamp.
    pub stamp: u64,
}

/// Loads the stored keyring, or starts one from `flag_key`. Errors name the file or the source.
pub fn load(data: &DataDir, flag_key: Option<[u8; 32]>) -> anyhow::Result<StartKeyring> {
    let path = data.path().join(KEYRING_FILE);
    let corrupt = |reason: String| PersistError::Corrupt { path: path.clone(), reason };
    match data.read(KEYRING_FILE)? {
        Some(bytes) => {
            let file: KeyringFile =
                serde_json::from_slice(&bytes).map_err(|e| corrupt(format!("invalid JSON: {e}")))?;
            let mut keys = Vec::with_capacity(file.keys.len());
            for (i, k) in file.keys.iter().enumerate() {
                keys.push(decode_key(k).map_err(|e| corrupt(format!("keys[{i}]: {e}")))?);
            }
            if keys.is_empty() {
                return Err(corrupt("no keys".into()).into());
            }
            if let Some(k) = flag_key {
                if !keys.contains(&k) {
                    tracing::warn!(
                        key = %fingerprint(&k),
                        "ignoring the cluster key given on the command line: the stored keyring ({}) wins; \
                         use `gossipd keys install` to add a key",
                        path.display()
                    );
                }
            }
            Ok(StartKeyring { keys, stamp: file.stamp })
        }
        None => match flag_key {
            Some(k) => Ok(StartKeyring { keys: vec![k], stamp: 0 }),
            None => anyhow::bail!(
                "a cluster key is required: create one with `gossipd keygen > cluster.key`, then pass \
                 --cluster-key-file cluster.key (or GOSSIPD_CLUSTER_KEY) to every agent"
            ),
        },
    }
}

/// Persists a keyring (atomically, mode 0600).
pub fn save(data: &DataDir, stamp: u64, keys: &[[u8; 32]]) -> Result<(), PersistError> {
    let file = KeyringFile { stamp, keys: keys.iter().map(encode_key).collect() };
    let json = serde_json::to_vec_pretty(&file).unwrap_or_default();
    data.write_atomic(KEYRING_FILE, &json)
}

/// Reads the key given by `--cluster-key-file` or, failing that, `GOSSIPD_CLUSTER_KEY`.
pub fn flag_key(file: Option<&std::path::Path>) -> anyhow::Result<Option<[u8; 32]>> {
    if let Some(f) = file {
        let text = std::fs::read_to_string(f)
            .map_err(|e| anyhow::anyhow!("cannot read --cluster-key-file {}: {e}", f.display()))?;
        return decode_key(&text).map(Some).map_err(|e| anyhow::anyhow!("--cluster-key-file {}: {e}", f.display()));
    }
    match std::env::var("GOSSIPD_CLUSTER_KEY") {
        Ok(v) if !v.trim().is_empty() => {
            decode_key(&v).map(Some).map_err(|e| anyhow::anyhow!("GOSSIPD_CLUSTER_KEY: {e}"))
        }
        _ => Ok(None),
    }
}

/// The public fingerprint of a key (safe to show and log).
pub fn fingerprint(key: &[u8; 32]) -> String {
    gossip_core::secure::keys::ClusterKey::new(*key).fingerprint()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_bad_keys_are_named() {
        let k = [7u8; 32];
        assert_eq!(decode_key(&encode_key(&k)), Ok(k));
        assert!(decode_key("not base64!").unwrap_err().contains("base64"));
        assert!(decode_key(&STANDARD.encode([1u8; 16])).unwrap_err().contains("32 bytes"));
    }

    #[test]
    fn stored_keyring_wins_and_flag_key_is_installed() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::open(dir.path()).unwrap();
        assert!(load(&data, None).unwrap_err().to_string().contains("keygen"));
        assert_eq!(load(&data, Some([1; 32])).unwrap(), StartKeyring { keys: vec![[1; 32]], stamp: 0 });
        save(&data, 5, &[[2; 32]]).unwrap();
        // A removed key is not re-admitted by an old key file.
        let k = load(&data, Some([1; 32])).unwrap();
        assert_eq!(k, StartKeyring { keys: vec![[2; 32]], stamp: 5 });
        std::fs::write(dir.path().join(KEYRING_FILE), b"{\"stamp\":1,\"keys\":[\"zz\"]}").unwrap();
        assert!(load(&data, None).unwrap_err().to_string().contains("keys[0]"));
    }
}
