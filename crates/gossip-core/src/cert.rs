//! Authority: certificates from a cluster CA, revocations, and the trust policy that checks them.
//!
//! The cluster key admits; it does not authorize. A **CA** (an Ed25519 key held offline by the
//! operator) signs **node certificates**: each binds an identity key to a node name, the service
//! names the node may publish (globs with `*`), its entry quota and its roles (`operator` for
//! cluster-wide changes). A CA certificate is self-signed and names the CA key. A
//! **revocation**, signed by a CA, withdraws every certificate of one identity.
//!
//! [`Trust`] is what an agent believes: the CA certificates it trusts (several at once, for CA
//! rotation), the revocations it holds and the cluster's default quota. Every replica checks the
//! owner's certificate against it before applying anything (docs/PROTOCOL.md section 6).
//!
//! Encodings are compact and versioned (docs/PROTOCOL.md 6.1); decoders never allocate more
//! than the input justifies and refuse trailing bytes.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::secure::drbg::hash;
use crate::secure::keys::{Identity, IdentityPub};
use crate::wire::{DecodeError, Reader, Writer};

/// Largest encoded certificate, in bytes (it rides in handshakes and in deltas).
pub const MAX_CERT: usize = 320;
/// Most service globs in one certificate.
pub const MAX_GRANTS: usize = 16;
/// Longest service glob, in bytes.
pub const MAX_GRANT_LEN: usize = 63;
/// Longest certificate name, in bytes (the node name).
pub const MAX_CERT_NAME: usize = crate::message::MAX_NODE_NAME;

/// Encoding version byte of certificates.
const CERT_V1: u8 = 1;
/// Encoding version byte of revocations.
const REVOCATION_V1: u8 = 1;
/// Encoded size of a revocation.
pub const REVOCATION_LEN: usize = 1 + 32 + 32 + 8 + 64;

/// The role that may change the cluster keyring.
pub const ROLE_OPERATOR: u8 = 1;

/// What a certificate is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertKind {
    /// A node certificate, signed by a CA.
    Node,
    /// A CA certificate, self-signed.
    Ca,
}

/// A certificate (node or CA), with its encoding.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    /// Node or CA.
    pub kind: CertKind,
    /// The signing CA's public key (a CA certificate names itself).
    pub issuer: IdentityPub,
    /// The certified identity (for a CA: the CA key).
    pub identity: IdentityPub,
    /// Node name (for a CA: a label).
    pub name: String,
    /// Service-name globs the node may publish (`*` matches any run of characters).
    pub services: Vec<String>,
    /// Role bits ([`ROLE_OPERATOR`]).
    pub roles: u8,
    /// Most service entries the node may hold (0: the cluster default).
    pub max_entries: u32,
    /// Valid from (unix seconds).
    pub not_before: u64,
    /// Valid until (unix seconds).
    pub not_after: u64,
    /// Ed25519 signature by `issuer` over [`Certificate::signed_bytes`].
    pub sig: [u8; 64],
    /// The full encoding (what travels and what the digest is of).
    encoded: Vec<u8>,
    /// [`Certificate::digest`], computed once.
    digest: [u8; 16],
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("identity", &self.identity)
            .field("services", &self.services)
            .field("roles", &self.roles)
            .field("max_entries", &self.max_entries)
            .field("not_after", &self.not_after)
            .finish()
    }
}

/// What a CA is asked to sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRequest {
    /// Node name.
    pub name: String,
    /// The identity to certify.
    pub identity: IdentityPub,
    /// Service globs.
    pub services: Vec<String>,
    /// Role bits.
    pub roles: u8,
    /// Quota (0: cluster default).
    pub max_entries: u32,
    /// Valid from (unix seconds).
    pub not_before: u64,
    /// Valid until (unix seconds).
    pub not_after: u64,
}

/// Why a certificate or revocation is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// The bytes do not decode.
    #[error("malformed certificate: {0}")]
    Malformed(#[from] DecodeError),
    /// A field is outside its limits (signing refuses it).
    #[error("{0}")]
    Invalid(String),
    /// No trusted CA has this key.
    #[error("issued by an untrusted CA")]
    UnknownIssuer,
    /// The signature does not verify.
    #[error("the CA signature does not verify")]
    BadSignature,
    /// Not valid yet (beyond the tolerated clock skew).
    #[error("not valid before {0} (unix seconds)")]
    NotYetValid(u64),
    /// Expired (beyond the tolerated clock skew).
    #[error("expired at {0} (unix seconds)")]
    Expired(u64),
    /// The identity's certificates are revoked.
    #[error("revoked by the CA")]
    Revoked,
    /// A CA certificate where a node certificate was expected, or the reverse.
    #[error("not a {0} certificate")]
    WrongKind(&'static str),
    /// The certificate is for another identity than the one proved.
    #[error("certifies another identity")]
    WrongIdentity,
    /// The certificate names another node than the one claimed.
    #[error("certifies the name {cert:?}, not {claimed:?}")]
    WrongName {
        /// Name in the certificate.
        cert: String,
        /// Name claimed.
        claimed: String,
    },
}

/// True if `name` matches `glob`, where `*` matches any (possibly empty) run of characters.
pub fn glob_match(glob: &str, name: &str) -> bool {
    let (g, n) = (glob.as_bytes(), name.as_bytes());
    // Iterative matcher with one backtrack point (linear in practice, no recursion).
    let (mut gi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if gi < g.len() && g[gi] == b'*' {
            star = Some((gi, ni));
            gi += 1;
        } else if gi < g.len() && g[gi].eq_ignore_ascii_case(&n[ni]) {
            gi += 1;
            ni += 1;
        } else if let Some((sg, sn)) = star {
            gi = sg + 1;
            ni = sn + 1;
            star = Some((sg, sn + 1));
        } else {
            return false;
        }
    }
    g[gi..].iter().all(|c| *c == b'*')
}

fn check_glob(g: &str) -> Result<(), CertError> {
    let ok = !g.is_empty()
        && g.len() <= MAX_GRANT_LEN
        && g.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'*' || c == b'_');
    if ok {
        Ok(())
    } else {
        Err(CertError::Invalid(format!(
            "service grant {g:?}: 1 to {MAX_GRANT_LEN} characters of letters, digits, '-', '_' and '*'"
        )))
    }
}

fn digest_of(encoded: &[u8]) -> [u8; 16] {
    let h = hash(&[b"gossipd cert digest v1", encoded]);
    let mut d = [0u8; 16];
    d.copy_from_slice(&h[..16]);
    d
}

impl Certificate {
    /// Signs a node certificate with the CA key `ca`.
    pub fn sign(ca: &Identity, req: &CertRequest) -> Result<Certificate, CertError> {
        Self::build(ca, CertKind::Node, req)
    }

    /// A self-signed CA certificate for the key `ca`.
    pub fn new_ca(ca: &Identity, label: &str, not_before: u64, not_after: u64) -> Result<Certificate, CertError> {
        let req = CertRequest {
            name: label.to_owned(),
            identity: ca.public(),
            services: Vec::new(),
            roles: 0,
            max_entries: 0,
            not_before,
            not_after,
        };
        Self::build(ca, CertKind::Ca, &req)
    }

    fn build(ca: &Identity, kind: CertKind, req: &CertRequest) -> Result<Certificate, CertError> {
        if req.name.is_empty() || req.name.len() > MAX_CERT_NAME {
            return Err(CertError::Invalid(format!("name: 1 to {MAX_CERT_NAME} bytes")));
        }
        if req.services.len() > MAX_GRANTS {
            return Err(CertError::Invalid(format!("at most {MAX_GRANTS} service grants")));
        }
        for g in &req.services {
            check_glob(g)?;
        }
        if req.not_after <= req.not_before {
            return Err(CertError::Invalid("validity: not_after must be later than not_before".into()));
        }
        let mut c = Certificate {
            kind,
            issuer: ca.public(),
            identity: req.identity,
            name: req.name.clone(),
            services: req.services.clone(),
            roles: req.roles,
            max_entries: req.max_entries,
            not_before: req.not_before,
            not_after: req.not_after,
            sig: [0; 64],
            encoded: Vec::new(),
            digest: [0; 16],
        };
        c.sig = ca.sign(&c.signed_bytes());
        c.encoded = c.encode_fields();
        c.digest = digest_of(&c.encoded);
        if c.encoded.len() > MAX_CERT {
            return Err(CertError::Invalid(format!(
                "the certificate would take {} bytes, more than {MAX_CERT}: fewer or shorter grants",
                c.encoded.len()
            )));
        }
        Ok(c)
    }

    fn body(&self, w: &mut Writer) {
        w.u8(CERT_V1);
        w.u8(match self.kind {
            CertKind::Node => 0,
            CertKind::Ca => 1,
        });
        w.bytes(&self.issuer.0);
        w.bytes(&self.identity.0);
        w.string(&self.name);
        w.varint(self.services.len() as u64);
        for s in &self.services {
            w.string(s);
        }
        w.u8(self.roles);
        w.varint(u64::from(self.max_entries));
        w.u64_fixed(self.not_before);
        w.u64_fixed(self.not_after);
    }

    /// What the issuer signs: `"gossipd cert v1"` followed by the encoding without the signature.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.bytes(b"gossipd cert v1");
        self.body(&mut w);
        w.buf
    }

    fn encode_fields(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.body(&mut w);
        w.bytes(&self.sig);
        w.buf
    }

    /// The encoding.
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }

    /// First 16 bytes of `BLAKE2s-256("gossipd cert digest v1" ‖ encoding)`: what an owner's
    /// signed node info names.
    pub fn digest(&self) -> [u8; 16] {
        self.digest
    }

    /// Decodes one certificate that spans all of `bytes` (signature not checked).
    pub fn decode(bytes: &[u8]) -> Result<Certificate, DecodeError> {
        if bytes.len() > MAX_CERT {
            return Err(DecodeError::OutOfRange("certificate length"));
        }
        let mut r = Reader::new(bytes);
        if r.u8()? != CERT_V1 {
            return Err(DecodeError::OutOfRange("certificate version"));
        }
        let kind = match r.u8()? {
            0 => CertKind::Node,
            1 => CertKind::Ca,
            tag => return Err(DecodeError::BadTag { what: "certificate kind", tag }),
        };
        let issuer = IdentityPub(r.bytes(32)?.try_into().map_err(|_| DecodeError::Truncated)?);
        let identity = IdentityPub(r.bytes(32)?.try_into().map_err(|_| DecodeError::Truncated)?);
        let name = r.string(MAX_CERT_NAME)?;
        let n = r.count(1)?;
        if n > MAX_GRANTS {
            return Err(DecodeError::OutOfRange("grant count"));
        }
        let mut services = Vec::with_capacity(n);
        for _ in 0..n {
            services.push(r.string(MAX_GRANT_LEN)?);
        }
        let roles = r.u8()?;
        let max_entries = u32::try_from(r.varint()?).map_err(|_| DecodeError::OutOfRange("max_entries"))?;
        let not_before = r.u64_fixed()?;
        let not_after = r.u64_fixed()?;
        let sig: [u8; 64] = r.bytes(64)?.try_into().map_err(|_| DecodeError::Truncated)?;
        r.finish()?;
        Ok(Certificate {
            kind,
            issuer,
            identity,
            name,
            services,
            roles,
            max_entries,
            not_before,
            not_after,
            sig,
            encoded: bytes.to_vec(),
            digest: digest_of(bytes),
        })
    }

    /// True if the issuer's signature holds.
    pub fn signature_ok(&self) -> bool {
        self.issuer.verify(&self.signed_bytes(), &self.sig)
    }

    /// True if a grant matches the service name.
    pub fn grants(&self, service: &str) -> bool {
        self.services.iter().any(|g| glob_match(g, service))
    }

    /// True if the certificate carries the operator role.
    pub fn is_operator(&self) -> bool {
        self.roles & ROLE_OPERATOR != 0
    }

    /// Roles as words (`operator`).
    pub fn role_names(&self) -> Vec<&'static str> {
        if self.is_operator() { vec!["operator"] } else { Vec::new() }
    }
}

/// A CA-signed withdrawal of every certificate of one identity, kept until `not_after` (the
/// latest expiry of what it revokes; afterwards those certificates are dead anyway).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Revocation {
    /// The CA that revokes.
    pub issuer: IdentityPub,
    /// The revoked identity.
    pub identity: IdentityPub,
    /// Kept until (unix seconds).
    pub not_after: u64,
    /// Ed25519 signature by `issuer` over [`Revocation::signed_bytes`].
    pub sig: [u8; 64],
}

impl std::fmt::Debug for Revocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocation").field("identity", &self.identity).field("not_after", &self.not_after).finish()
    }
}

impl Revocation {
    /// The CA `ca` revokes the identity of `cert`.
    pub fn sign(ca: &Identity, cert: &Certificate) -> Revocation {
        let mut r =
            Revocation { issuer: ca.public(), identity: cert.identity, not_after: cert.not_after, sig: [0; 64] };
        r.sig = ca.sign(&r.signed_bytes());
        r
    }

    /// What the CA signs.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.bytes(b"gossipd revocation v1");
        w.bytes(&self.issuer.0);
        w.bytes(&self.identity.0);
        w.u64_fixed(self.not_after);
        w.buf
    }

    /// Appends the encoding ([`REVOCATION_LEN`] bytes).
    pub fn encode(&self, w: &mut Writer) {
        w.u8(REVOCATION_V1);
        w.bytes(&self.issuer.0);
        w.bytes(&self.identity.0);
        w.u64_fixed(self.not_after);
        w.bytes(&self.sig);
    }

    /// The encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.encode(&mut w);
        w.buf
    }

    /// Decodes one revocation (signature not checked).
    /// Decodes exactly one revocation from `bytes` (trailing bytes refused).
    pub fn from_bytes(bytes: &[u8]) -> Result<Revocation, DecodeError> {
        let mut r = Reader::new(bytes);
        let rev = Revocation::decode(&mut r)?;
        r.finish()?;
        Ok(rev)
    }

    /// Decodes a revocation from a reader.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Revocation, DecodeError> {
        if r.u8()? != REVOCATION_V1 {
            return Err(DecodeError::OutOfRange("revocation version"));
        }
        let issuer = IdentityPub(r.bytes(32)?.try_into().map_err(|_| DecodeError::Truncated)?);
        let identity = IdentityPub(r.bytes(32)?.try_into().map_err(|_| DecodeError::Truncated)?);
        let not_after = r.u64_fixed()?;
        let sig: [u8; 64] = r.bytes(64)?.try_into().map_err(|_| DecodeError::Truncated)?;
        Ok(Revocation { issuer, identity, not_after, sig })
    }
}

/// What an agent trusts: CA certificates, revocations, the default quota and the clock skew it
/// tolerates on validity bounds.
#[derive(Debug, Clone)]
pub struct Trust {
    cas: Vec<Arc<Certificate>>,
    revoked: BTreeMap<IdentityPub, Revocation>,
    /// Service entries a node may hold when its certificate says 0.
    pub default_max_entries: u32,
    /// Seconds of clock skew tolerated on both bounds of a validity period.
    pub skew: u64,
}

impl Trust {
    /// Trusts these CA certificates (each must be a valid self-signed CA certificate).
    pub fn new(cas: Vec<Certificate>) -> Result<Trust, CertError> {
        if cas.is_empty() {
            return Err(CertError::Invalid("no CA certificate".into()));
        }
        for c in &cas {
            if c.kind != CertKind::Ca {
                return Err(CertError::WrongKind("CA"));
            }
            if c.issuer != c.identity || !c.signature_ok() {
                return Err(CertError::BadSignature);
            }
        }
        Ok(Trust {
            cas: cas.into_iter().map(Arc::new).collect(),
            revoked: BTreeMap::new(),
            default_max_entries: 10_000,
            skew: 3600,
        })
    }

    /// The trusted CA certificates.
    pub fn cas(&self) -> &[Arc<Certificate>] {
        &self.cas
    }

    fn ca(&self, key: &IdentityPub) -> Option<&Certificate> {
        self.cas.iter().find(|c| c.identity == *key).map(|c| &**c)
    }

    /// Checks a node certificate at `wall` (unix seconds): issued by a trusted CA whose own
    /// certificate is current, signature, validity (± skew), not revoked.
    pub fn check(&self, cert: &Certificate, wall: u64) -> Result<(), CertError> {
        self.check_bounds(cert, wall)?;
        if !cert.signature_ok() {
            return Err(CertError::BadSignature);
        }
        Ok(())
    }

    /// Everything [`Trust::check`] checks but the signature (for a certificate whose signature
    /// was verified before): kind, issuer, validity, revocation.
    pub fn check_bounds(&self, cert: &Certificate, wall: u64) -> Result<(), CertError> {
        if cert.kind != CertKind::Node {
            return Err(CertError::WrongKind("node"));
        }
        let ca = self.ca(&cert.issuer).ok_or(CertError::UnknownIssuer)?;
        if wall.saturating_add(self.skew) < cert.not_before.max(ca.not_before) {
            return Err(CertError::NotYetValid(cert.not_before.max(ca.not_before)));
        }
        if wall.saturating_sub(self.skew) > cert.not_after.min(ca.not_after) {
            return Err(CertError::Expired(cert.not_after.min(ca.not_after)));
        }
        if self.revoked.contains_key(&cert.identity) {
            return Err(CertError::Revoked);
        }
        Ok(())
    }

    /// Checks a revocation: issued by a trusted CA, signature.
    pub fn check_revocation(&self, r: &Revocation) -> Result<(), CertError> {
        self.ca(&r.issuer).ok_or(CertError::UnknownIssuer)?;
        if r.issuer.verify(&r.signed_bytes(), &r.sig) { Ok(()) } else { Err(CertError::BadSignature) }
    }

    /// Adds a checked revocation. Returns true if it is new.
    pub fn revoke(&mut self, r: Revocation) -> Result<bool, CertError> {
        self.check_revocation(&r)?;
        Ok(self.revoked.insert(r.identity, r).is_none())
    }

    /// True if the identity is revoked.
    pub fn is_revoked(&self, identity: &IdentityPub) -> bool {
        self.revoked.contains_key(identity)
    }

    /// Every revocation held.
    pub fn revocations(&self) -> impl Iterator<Item = &Revocation> {
        self.revoked.values()
    }

    /// Forgets revocations whose certificates have expired (beyond the skew) at `wall`.
    pub fn expire_revocations(&mut self, wall: u64) {
        let skew = self.skew;
        self.revoked.retain(|_, r| r.not_after.saturating_add(skew) >= wall);
    }

    /// The quota of a certified node.
    pub fn quota(&self, cert: &Certificate) -> u32 {
        if cert.max_entries == 0 { self.default_max_entries } else { cert.max_entries }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> Identity {
        Identity::from_secret([n; 32])
    }

    fn req(name: &str, who: &Identity, services: &[&str]) -> CertRequest {
        CertRequest {
            name: name.into(),
            identity: who.public(),
            services: services.iter().map(|s| s.to_string()).collect(),
            roles: 0,
            max_entries: 0,
            not_before: 1000,
            not_after: 100_000,
        }
    }

    #[test]
    fn globs_match_as_documented() {
        assert!(glob_match("*", "anything"));
        assert!(glob_match("web", "web"));
        assert!(glob_match("web", "WEB"));
        assert!(!glob_match("web", "web2"));
        assert!(glob_match("api-*", "api-v2"));
        assert!(glob_match("api-*", "api-"));
        assert!(!glob_match("api-*", "api"));
        assert!(glob_match("*-db", "users-db"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(!glob_match("", "x"));
        assert!(glob_match("**", ""));
    }

    #[test]
    fn a_signed_certificate_round_trips_and_checks() {
        let ca = id(1);
        let ca_cert = Certificate::new_ca(&ca, "test-ca", 0, 200_000).unwrap();
        let trust = Trust::new(vec![ca_cert]).unwrap();
        let c = Certificate::sign(&ca, &req("n1", &id(2), &["web", "api-*"])).unwrap();
        let d = Certificate::decode(c.encoded()).unwrap();
        assert_eq!(d, c);
        assert_eq!(d.digest(), c.digest());
        trust.check(&d, 5000).unwrap();
        assert!(d.grants("api-x") && d.grants("web") && !d.grants("probed"));
        assert_eq!(trust.check(&d, 100_000 + 3601), Err(CertError::Expired(100_000)));
        assert_eq!(trust.check(&d, 100_000 + 3599), Ok(()));
        assert_eq!(trust.check(&d, 0), Ok(()), "within the skew of not_before");
        let other_ca = Trust::new(vec![Certificate::new_ca(&id(9), "other", 0, 200_000).unwrap()]).unwrap();
        assert_eq!(other_ca.check(&d, 5000), Err(CertError::UnknownIssuer));
    }

    #[test]
    fn an_altered_certificate_does_not_verify() {
        let ca = id(1);
        let trust = Trust::new(vec![Certificate::new_ca(&ca, "ca", 0, 200_000).unwrap()]).unwrap();
        let c = Certificate::sign(&ca, &req("n1", &id(2), &["web"])).unwrap();
        let mut bytes = c.encoded().to_vec();
        // Flip the last byte of the only grant ("web" -> "weC").
        let at = bytes.windows(3).position(|w| w == b"web").unwrap() + 2;
        bytes[at] ^= 1;
        let d = Certificate::decode(&bytes).unwrap();
        assert_eq!(trust.check(&d, 5000), Err(CertError::BadSignature));
    }

    #[test]
    fn revocations_check_and_apply() {
        let ca = id(1);
        let mut trust = Trust::new(vec![Certificate::new_ca(&ca, "ca", 0, 200_000).unwrap()]).unwrap();
        let c = Certificate::sign(&ca, &req("n1", &id(2), &["web"])).unwrap();
        let r = Revocation::sign(&ca, &c);
        let bytes = r.to_bytes();
        assert_eq!(bytes.len(), REVOCATION_LEN);
        let back = Revocation::decode(&mut Reader::new(&bytes)).unwrap();
        assert_eq!(back, r);
        let forged = Revocation::sign(&id(7), &c);
        assert!(trust.revoke(forged).is_err());
        assert!(trust.revoke(back).unwrap());
        assert_eq!(trust.check(&c, 5000), Err(CertError::Revoked));
        trust.expire_revocations(100_000 + 3601);
        assert!(!trust.is_revoked(&c.identity));
    }

    #[test]
    fn limits_are_refused_at_signing_and_decoding() {
        let ca = id(1);
        let mut r = req("n1", &id(2), &["web"]);
        r.services = (0..17).map(|i| format!("s{i}")).collect();
        assert!(Certificate::sign(&ca, &r).is_err());
        r.services = vec!["bad.name".into()];
        assert!(Certificate::sign(&ca, &r).is_err());
        r.services = (0..16).map(|i| format!("{i:0>60}")).collect();
        assert!(matches!(Certificate::sign(&ca, &r), Err(CertError::Invalid(_))), "over MAX_CERT");
        assert!(Certificate::decode(&[1; MAX_CERT + 1]).is_err());
        let c = Certificate::sign(&ca, &req("n1", &id(2), &["web"])).unwrap();
        let mut long = c.encoded().to_vec();
        long.push(0);
        assert!(Certificate::decode(&long).is_err(), "trailing bytes");
        for cut in 0..c.encoded().len() {
            assert!(Certificate::decode(&c.encoded()[..cut]).is_err());
        }
    }
}
