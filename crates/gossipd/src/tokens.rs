//! HTTP API tokens, shaped like Consul ACL tokens (sent as `X-Consul-Token`,
//! `Authorization: Bearer` or `?token=`), each with one power: read, write (services and checks,
//! and read) or operator (everything, including the keyring).
//!
//! - The operator token is `DATA_DIR/operator.token` (mode 0600), 32 bytes from the OS RNG as
//!   64 hex digits, written at first start and kept after. Whoever can read that file is the
//!   agent's operator: the CLI reads it from `--data-dir` / `GOSSIPD_DATA_DIR`.
//! - Read and write tokens come from files the operator writes (`--http-read-token-file`,
//!   `--http-write-token-file`): one line, at least 16 characters, no spaces.
//! - Presented tokens are compared with every configured one in constant time (`subtle`); the
//!   loop does not stop at a match, so the time taken does not say which token matched.

use std::path::Path;

use anyhow::{Context, bail};
use subtle::ConstantTimeEq;

use crate::persist::DataDir;

/// The operator token's file in the data directory.
pub const OPERATOR_TOKEN_FILE: &str = "operator.token";

/// Shortest token accepted from a token file.
pub const MIN_TOKEN_LEN: usize = 16;

/// What a token may do; each power includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Power {
    /// GET anything but the operator endpoints.
    Read,
    /// Register, deregister, update checks; and read.
    Write,
    /// The operator endpoints (`/v1/operator/...`: keyring); and write and read.
    Operator,
}

impl Power {
    /// Lower-case name, as in error messages ("token lacks operator").
    pub fn name(self) -> &'static str {
        match self {
            Power::Read => "read",
            Power::Write => "write",
            Power::Operator => "operator",
        }
    }
}

/// The configured tokens.
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<(Vec<u8>, Power)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets themselves.
        let powers: Vec<&str> = self.entries.iter().map(|(_, p)| p.name()).collect();
        f.debug_struct("Tokens").field("powers", &powers).finish()
    }
}

impl Tokens {
    /// Adds a token with `power`.
    pub fn add(&mut self, token: &str, power: Power) {
        self.entries.push((token.as_bytes().to_vec(), power));
    }

    /// The highest power of a configured token equal to `presented`, compared in constant
    /// time with every token (only the lengths are not hidden).
    pub fn power_of(&self, presented: &str) -> Option<Power> {
        let mut best = None;
        for (token, power) in &self.entries {
            let equal: bool = token.as_slice().ct_eq(presented.as_bytes()).into();
            if equal && best.is_none_or(|b| *power > b) {
                best = Some(*power);
            }
        }
        best
    }
}

/// The operator token: read from the data directory, or created there (mode 0600) at first
/// start.
pub fn operator_token(data: &DataDir) -> anyhow::Result<String> {
    if let Some(bytes) = data.read(OPERATOR_TOKEN_FILE)? {
        let path = data.path().join(OPERATOR_TOKEN_FILE);
        return parse_token(&bytes).with_context(|| format!("{} is not a valid token", path.display()));
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("cannot generate the operator token: {e}"))?;
    let token: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    data.write_atomic(OPERATOR_TOKEN_FILE, format!("{token}\n").as_bytes())
        .context("cannot store the operator token")?;
    Ok(token)
}

/// Reads a token file given by `flag`; the error names the flag and the file.
pub fn read_token_file(path: &Path, flag: &str) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("{flag} {}: cannot read it", path.display()))?;
    parse_token(&bytes).with_context(|| format!("{flag} {}", path.display()))
}

fn parse_token(bytes: &[u8]) -> anyhow::Result<String> {
    let Ok(text) = std::str::from_utf8(bytes) else { bail!("the token is not UTF-8") };
    let token = text.trim();
    if token.len() < MIN_TOKEN_LEN {
        bail!("the token must be at least {MIN_TOKEN_LEN} characters");
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        bail!("the token must be one line of printable ASCII without spaces");
    }
    Ok(token.to_string())
}

/// The token the CLI sends: `--token` / `GOSSIPD_HTTP_TOKEN`, else the operator token of
/// `--data-dir` / `GOSSIPD_DATA_DIR` when that file is readable.
pub fn client_token(flag: Option<&str>, data_dir: Option<&Path>) -> anyhow::Result<Option<String>> {
    if let Some(t) = flag.filter(|t| !t.is_empty()) {
        return Ok(Some(t.to_string()));
    }
    let Some(dir) = data_dir else { return Ok(None) };
    let path = dir.join(OPERATOR_TOKEN_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => parse_token(&bytes).map(Some).with_context(|| format!("{} is not a valid token", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read the operator token {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn powers_are_found_and_ordered() {
        let mut t = Tokens::default();
        t.add("read-token-0123456789", Power::Read);
        t.add("write-token-0123456789", Power::Write);
        t.add("op-token-0123456789abc", Power::Operator);
        assert_eq!(t.power_of("read-token-0123456789"), Some(Power::Read));
        assert_eq!(t.power_of("write-token-0123456789"), Some(Power::Write));
        assert_eq!(t.power_of("op-token-0123456789abc"), Some(Power::Operator));
        assert_eq!(t.power_of("op-token-0123456789ab"), None);
        assert_eq!(t.power_of(""), None);
        assert!(Power::Read < Power::Write && Power::Write < Power::Operator);
        assert!(!format!("{t:?}").contains("token-"), "Debug must not show secrets");
    }

    #[test]
    fn the_operator_token_is_made_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::open(dir.path().join("d")).unwrap();
        let a = operator_token(&data).unwrap();
        assert_eq!(a.len(), 64);
        assert_eq!(operator_token(&data).unwrap(), a);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.path().join(OPERATOR_TOKEN_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(client_token(None, Some(data.path())).unwrap().as_deref(), Some(a.as_str()));
        assert_eq!(
            client_token(Some("explicit-token-123"), Some(data.path())).unwrap().as_deref(),
            Some("explicit-token-123")
        );
    }

    #[test]
    fn bad_token_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t");
        std::fs::write(&f, "short\n").unwrap();
        let e = format!("{:#}", read_token_file(&f, "--http-read-token-file").unwrap_err());
        assert!(e.contains("--http-read-token-file") && e.contains("at least 16"), "{e}");
        std::fs::write(&f, "has a space in it, long enough").unwrap();
        assert!(read_token_file(&f, "--x").is_err());
    }
}
