//! The cluster CA's offline tooling (`gossipd ca create|sign|revoke`, `gossipd cert show`) and
//! the text files it writes: certificates and revocations as base64 between `BEGIN`/`END`
//! lines (several may follow each other in one file), keys as one base64 line (the format of
//! the data directory's `identity.key`).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gossip_core::cert::{CertKind, CertRequest, Certificate, ROLE_OPERATOR, Revocation};
use gossip_core::secure::keys::{Identity, IdentityPub};

/// The CA's secret key, in the CA directory.
pub const CA_KEY: &str = "ca.key";
/// The CA's certificate, in the CA directory (what agents take as `--ca-file`).
pub const CA_CERT: &str = "ca.crt";

const CERT_LABEL: &str = "GOSSIPD CERTIFICATE";
const REVOCATION_LABEL: &str = "GOSSIPD REVOCATION";

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn armor(label: &str, bytes: &[u8]) -> String {
    let b64 = STANDARD.encode(bytes);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Every armored block labelled `label` in `text`, decoded.
fn unarmor(label: &str, text: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    let (begin, end) = (format!("-----BEGIN {label}-----"), format!("-----END {label}-----"));
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(&begin) {
        let body = &rest[at + begin.len()..];
        let Some(stop) = body.find(&end) else { bail!("a {begin} line without its {end} line") };
        let b64: String = body[..stop].chars().filter(|c| !c.is_whitespace()).collect();
        out.push(STANDARD.decode(b64.as_bytes()).context("invalid base64")?);
        rest = &body[stop + end.len()..];
    }
    Ok(out)
}

/// A certificate as text.
pub fn cert_to_pem(c: &Certificate) -> String {
    armor(CERT_LABEL, c.encoded())
}

/// A revocation as text.
pub fn revocation_to_pem(r: &Revocation) -> String {
    armor(REVOCATION_LABEL, &r.to_bytes())
}

/// The certificates in a text.
pub fn certs_from_pem(text: &str) -> anyhow::Result<Vec<Certificate>> {
    let blocks = unarmor(CERT_LABEL, text)?;
    if blocks.is_empty() {
        bail!("no -----BEGIN {CERT_LABEL}----- block");
    }
    blocks.iter().map(|b| Certificate::decode(b).map_err(|e| anyhow::anyhow!("malformed certificate: {e}"))).collect()
}

/// The revocations in a text.
pub fn revocations_from_pem(text: &str) -> anyhow::Result<Vec<Revocation>> {
    let blocks = unarmor(REVOCATION_LABEL, text)?;
    blocks.iter().map(|b| Revocation::from_bytes(b).map_err(|e| anyhow::anyhow!("malformed revocation: {e}"))).collect()
}

/// Reads the certificates of a file, naming it in errors.
pub fn read_certs(path: &Path) -> anyhow::Result<Vec<Certificate>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    certs_from_pem(&text).with_context(|| format!("{}", path.display()))
}

/// Reads one key file (one base64 line of 32 bytes).
pub fn read_key(path: &Path) -> anyhow::Result<[u8; 32]> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    crate::keys::decode_key(text.trim()).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Writes a file with `mode`, refusing to overwrite one that exists.
fn write_new(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))?;
    f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).with_context(|| format!("cannot write {}", path.display()))
}

fn new_secret() -> anyhow::Result<[u8; 32]> {
    let mut s = [0u8; 32];
    getrandom::fill(&mut s).map_err(|e| anyhow::anyhow!("the OS random number generator failed: {e}"))?;
    Ok(s)
}

/// `gossipd ca create`: a new CA key and its self-signed certificate in `out`.
pub fn create(out: &Path, label: &str, valid: Duration) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let secret = new_secret()?;
    let ca = Identity::from_secret(secret);
    let now = now_secs();
    let cert = Certificate::new_ca(&ca, label, now.saturating_sub(300), now.saturating_add(valid.as_secs()))?;
    let (key_path, cert_path) = (out.join(CA_KEY), out.join(CA_CERT));
    write_new(&key_path, &format!("{}\n", crate::keys::encode_key(&secret)), 0o600)?;
    write_new(&cert_path, &cert_to_pem(&cert), 0o644)?;
    Ok((key_path, cert_path))
}

/// The CA of a CA directory: its key and certificate, checked to belong together.
pub fn load_ca(dir: &Path) -> anyhow::Result<(Identity, Certificate)> {
    let key = Identity::from_secret(read_key(&dir.join(CA_KEY))?);
    let cert = read_certs(&dir.join(CA_CERT))?.remove(0);
    if cert.kind != CertKind::Ca || cert.identity != key.public() {
        bail!("{} is not the certificate of {}", dir.join(CA_CERT).display(), dir.join(CA_KEY).display());
    }
    Ok((key, cert))
}

/// What `gossipd ca sign` is asked for.
#[derive(Debug, Clone)]
pub struct SignRequest {
    /// Node name.
    pub name: String,
    /// Service globs.
    pub services: Vec<String>,
    /// Roles by name.
    pub roles: Vec<String>,
    /// Quota (0: the cluster default).
    pub max_entries: u32,
    /// Validity from now.
    pub valid: Duration,
    /// An existing identity to certify (base64 public key) instead of a new one.
    pub identity_pub: Option<[u8; 32]>,
}

/// `gossipd ca sign`: a node certificate (and, unless an identity was given, its new identity
/// key) in `out` as `NAME.crt` and `NAME.key`.
pub fn sign(ca_dir: &Path, req: &SignRequest, out: &Path) -> anyhow::Result<(Option<PathBuf>, PathBuf)> {
    let (ca, ca_cert) = load_ca(ca_dir)?;
    let mut roles = 0u8;
    for r in &req.roles {
        match r.as_str() {
            "operator" => roles |= ROLE_OPERATOR,
            other => bail!("--roles: unknown role {other:?} (known: operator)"),
        }
    }
    let now = now_secs();
    let (identity, secret) = match req.identity_pub {
        Some(p) => (IdentityPub(p), None),
        None => {
            let s = new_secret()?;
            (Identity::from_secret(s).public(), Some(s))
        }
    };
    let not_after = now.saturating_add(req.valid.as_secs()).min(ca_cert.not_after);
    let cert = Certificate::sign(
        &ca,
        &CertRequest {
            name: req.name.clone(),
            identity,
            services: req.services.clone(),
            roles,
            max_entries: req.max_entries,
            not_before: now.saturating_sub(300),
            not_after,
        },
    )?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let cert_path = out.join(format!("{}.crt", req.name));
    let key_path = match secret {
        Some(s) => {
            let p = out.join(format!("{}.key", req.name));
            write_new(&p, &format!("{}\n", crate::keys::encode_key(&s)), 0o600)?;
            Some(p)
        }
        None => None,
    };
    write_new(&cert_path, &cert_to_pem(&cert), 0o644)?;
    Ok((key_path, cert_path))
}

/// `gossipd ca revoke`: the revocation of a certificate's identity, as text.
pub fn revoke(ca_dir: &Path, cert_file: &Path) -> anyhow::Result<String> {
    let (ca, _) = load_ca(ca_dir)?;
    let cert = read_certs(cert_file)?.remove(0);
    if cert.issuer != ca.public() {
        bail!("{} was not issued by the CA in {}", cert_file.display(), ca_dir.display());
    }
    Ok(revocation_to_pem(&Revocation::sign(&ca, &cert)))
}

pub(crate) fn date(secs: u64) -> String {
    // Days since the epoch to a civil date (Howard Hinnant's algorithm), UTC.
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The data directory's file of revocations in force (text, several blocks).
pub const REVOCATIONS_FILE: &str = "revocations.pem";

/// Stores the revocations in force, atomically.
pub fn save_revocations(
    data: &crate::persist::DataDir,
    revs: &[Revocation],
) -> Result<(), crate::persist::PersistError> {
    let text: String = revs.iter().map(revocation_to_pem).collect();
    data.write_atomic(REVOCATIONS_FILE, text.as_bytes())
}

/// Loads the stored revocations (none if the file does not exist).
pub fn load_revocations(data: &crate::persist::DataDir) -> anyhow::Result<Vec<Revocation>> {
    match data.read(REVOCATIONS_FILE)? {
        None => Ok(Vec::new()),
        Some(bytes) => revocations_from_pem(&String::from_utf8_lossy(&bytes))
            .with_context(|| format!("{}", data.path().join(REVOCATIONS_FILE).display())),
    }
}

/// `gossipd cert show`: a certificate's fields as JSON.
pub fn show(c: &Certificate) -> serde_json::Value {
    serde_json::json!({
        "Kind": match c.kind { CertKind::Node => "node", CertKind::Ca => "ca" },
        "Name": c.name,
        "Identity": crate::keys::encode_key(&c.identity.0),
        "NodeID": c.identity.node_id().to_hex(),
        "Issuer": crate::keys::encode_key(&c.issuer.0),
        "Services": c.services,
        "Roles": c.role_names(),
        "MaxEntries": c.max_entries,
        "NotBefore": date(c.not_before),
        "NotAfter": date(c.not_after),
        "Digest": c.digest().iter().map(|b| format!("{b:02x}")).collect::<String>(),
        "SignatureValid": c.signature_ok(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_sign_revoke_and_read_back() {
        let dir = std::env::temp_dir().join(format!("gossipd-ca-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (key, crt) = create(&dir.join("ca"), "test", Duration::from_secs(86_400)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(create(&dir.join("ca"), "test", Duration::from_secs(60)).is_err(), "never overwrites a CA");
        let req = SignRequest {
            name: "alpha".into(),
            services: vec!["web".into(), "api-*".into()],
            roles: vec!["operator".into()],
            max_entries: 50,
            valid: Duration::from_secs(3600),
            identity_pub: None,
        };
        let (node_key, node_crt) = sign(&dir.join("ca"), &req, &dir.join("certs")).unwrap();
        let c = read_certs(&node_crt).unwrap().remove(0);
        let id = Identity::from_secret(read_key(&node_key.unwrap()).unwrap());
        assert_eq!(c.identity, id.public());
        assert!(c.is_operator() && c.grants("api-v1") && !c.grants("db"));
        let trust = gossip_core::cert::Trust::new(read_certs(&crt).unwrap()).unwrap();
        trust.check(&c, now_secs()).unwrap();
        let rev = revocations_from_pem(&revoke(&dir.join("ca"), &node_crt).unwrap()).unwrap();
        assert_eq!(rev.len(), 1);
        trust.check_revocation(&rev[0]).unwrap();
        let bad = SignRequest { roles: vec!["root".into()], ..req };
        assert!(sign(&dir.join("ca"), &bad, &dir.join("certs2")).is_err());
        assert_eq!(show(&c)["Roles"], serde_json::json!(["operator"]));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(date(0), "1970-01-01T00:00:00Z");
        assert_eq!(date(1_798_761_599), "2026-12-31T23:59:59Z");
    }
}
