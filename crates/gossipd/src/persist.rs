//! The data directory: what an agent owns and must keep across restarts.
//!
//! Layout (directory mode 0700 when created here, files 0600):
//!
//! - `node.json`: `{"node_id": "<32 hex>", "generation": N, "name": "..."}`. Unknown fields are
//!   kept out of the way (ignored), so later versions may add some.
//!   `"services_file": true` is added once `services.json` has been written: from then on a
//!   missing `services.json` is an error (restore it), never a silent start with no services.
//!   (Absent in older data directories: a missing file then means none.)
//! - `services.json`: a JSON array of [`ServiceDef`] in Consul's definition shape.
//!
//! Every write is atomic: `NAME.tmp` is written in the same directory, fsynced, renamed over
//! `NAME`, and the directory is fsynced. A crash leaves either the old or the new file (and maybe
//! a stale `.tmp`, overwritten by the next write).
//!
//! A file that exists but does not parse is an error naming the file and the reason; it is never
//! replaced silently. A corrupt `node.json` in particular must not make the node take a new
//! identity: the operator fixes or removes it.
//!
//! **Generation.** Every [`DataDir::start`] raises the generation and persists it before
//! returning (so before the agent sends anything): `generation = max(old + 1, unix
//! milliseconds)`. The `old + 1` term makes every start of an intact data directory unique,
//! however fast the restarts; the clock floor means that a node whose `node.json` was lost or
//! rolled back (restored from a backup or snapshot, even one taken a moment ago) still starts
//! with a generation above any it used before, as long as it did not start more than once per
//! millisecond on average and the clock does not go back. (Protocol 2 agents used unix
//! seconds: two starts within one second from a rolled-back `node.json` got one generation,
//! and the peers proved an equivocation and excluded the node. Milliseconds are above every
//! seconds-based generation, so an upgraded agent's generation still rises.)

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use gossip_core::secure::keys::Identity;
use gossip_core::types::NodeId;
use serde::{Deserialize, Serialize};

use crate::service_def::{self, ServiceDef};

/// The node identity file.
pub const NODE_FILE: &str = "node.json";
/// The registered services file.
pub const SERVICES_FILE: &str = "services.json";
/// The gossip addresses of the peers alive at the last snapshot: contacted at the next start
/// (a restart then re-opens every session at once, as Serf's snapshot does).
pub const PEERS_FILE: &str = "peers.json";

/// The registrations journal: changes since the `services.json` snapshot, one JSON line each
/// (`{"put": {service}}` or `{"del": "id"}`), appended and fsynced per group commit, so that a
/// registration costs O(its own size), not a rewrite of everything the agent owns.
pub const SERVICES_LOG: &str = "services.log";
/// The node's Ed25519 identity secret (base64, mode 0600).
pub const IDENTITY_FILE: &str = "identity.key";

/// The lock file: held (flock, exclusive) for the agent's lifetime, holding its PID.
pub const LOCK_FILE: &str = "lock";
/// The files that hold secrets: readable by their owner only.
pub const SECRET_FILES: &[&str] = &[IDENTITY_FILE, "keyring.json", "operator.token"];

/// Why the data directory could not be used.
/// One registration change in the journal ([`SERVICES_LOG`]).
#[derive(Debug, Clone)]
pub enum ServiceChange {
    /// Registered or replaced.
    Put(ServiceDef),
    /// Deregistered (by id).
    Delete(String),
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PersistError {
    /// An OS call failed.
    #[error("cannot {action} {}: {error}", path.display())]
    Io {
        /// What was being done ("create", "read", "write", ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// The directory or a file in it could be changed (or a secret read) by another user.
    #[error("{} {reason}: run `{fix}` (another local user could {risk})", path.display())]
    Insecure {
        /// The directory or file.
        path: PathBuf,
        /// What is wrong ("is writable by group or others (mode 0777)").
        reason: String,
        /// The command that fixes it.
        fix: String,
        /// What the other user could do.
        risk: &'static str,
    },
    /// Another agent holds the directory's lock.
    #[error(
        "data directory {} is in use by another agent (pid {pid}, holding {}): stop it, or give this agent its \
         own --data-dir",
        dir.display(),
        lock.display()
    )]
    Locked {
        /// The data directory.
        dir: PathBuf,
        /// Its lock file.
        lock: PathBuf,
        /// The PID written in the lock file ("unknown" if unreadable).
        pid: String,
    },
    /// A file exists but is not valid; it is left untouched.
    #[error("{} is corrupt: {reason} (fix or remove it; it is never replaced automatically)", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// What the node is, as decided at start.
#[derive(Debug, Clone)]
pub struct NodeRecord {
    /// Long-term Ed25519 identity, created at first start (`identity.key`, mode 0600).
    pub identity: Identity,
    /// Stable node id: the identity's.
    pub id: NodeId,
    /// Node name.
    pub name: String,
    /// Raised at every start.
    pub generation: u64,
}

/// `node.json` on disk.
#[derive(Debug, Serialize, Deserialize)]
struct NodeFile {
    node_id: String,
    generation: u64,
    name: String,
    /// `services.json` has been written (so it must exist).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    services_file: bool,
}

/// An opened data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    path: PathBuf,
}

impl DataDir {
    /// Opens `path`, creating it (and its parents) with mode 0700 if missing.
    pub fn open(path: impl AsRef<Path>) -> Result<DataDir, PersistError> {
        let path = path.as_ref().to_path_buf();
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&path).map_err(|error| PersistError::Io {
            action: "create data dir",
            path: path.clone(),
            error,
        })?;
        if !path.is_dir() {
            return Err(PersistError::Io {
                action: "open data dir",
                path,
                error: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            });
        }
        Ok(DataDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Refuses, as OpenSSH's StrictModes does, a directory or file of it that another user
    /// could change (writable by group or others; owned by someone else than this process's
    /// user or root), a parent directory that another user could change (the same, except that
    /// a sticky one such as `/tmp` may be writable by all), and a secret ([`SECRET_FILES`])
    /// that group or others could read. The error carries the `chmod`/`chown` that fixes it.
    pub fn check_permissions(&self) -> Result<(), PersistError> {
        use std::os::unix::fs::MetadataExt;
        let me = rustix::process::geteuid().as_raw();
        let check = |path: &Path, meta: &fs::Metadata, secret: bool| -> Result<(), PersistError> {
            let mode = meta.mode() & 0o7777;
            let risk = if meta.is_dir() { "add or replace its files" } else { "change it" };
            if meta.uid() != me && meta.uid() != 0 {
                return Err(PersistError::Insecure {
                    path: path.to_path_buf(),
                    reason: format!("is owned by uid {}, not by this agent's user (uid {me}) or root", meta.uid()),
                    fix: format!("chown {me} {}", path.display()),
                    risk,
                });
            }
            if mode & 0o022 != 0 {
                let fix = if meta.is_dir() { "chmod 700" } else { "chmod go-w" };
                return Err(PersistError::Insecure {
                    path: path.to_path_buf(),
                    reason: format!("is writable by group or others (mode {mode:04o})"),
                    fix: format!("{fix} {}", path.display()),
                    risk,
                });
            }
            if secret && mode & 0o077 != 0 {
                return Err(PersistError::Insecure {
                    path: path.to_path_buf(),
                    reason: format!("holds a secret and is readable by group or others (mode {mode:04o})"),
                    fix: format!("chmod 600 {}", path.display()),
                    risk: "read it",
                });
            }
            Ok(())
        };
        let io = |action, path: &Path| {
            let path = path.to_path_buf();
            move |error| PersistError::Io { action, path, error }
        };
        let meta = fs::metadata(&self.path).map_err(io("inspect", &self.path))?;
        check(&self.path, &meta, false)?;
        // Whoever may rename entries in a parent may swap the whole directory: every parent
        // must be ours or root's, and not writable by others unless sticky (as /tmp).
        let full = fs::canonicalize(&self.path).map_err(io("resolve", &self.path))?;
        for parent in full.ancestors().skip(1) {
            let meta = fs::metadata(parent).map_err(io("inspect", parent))?;
            let mode = meta.mode() & 0o7777;
            if meta.uid() != me && meta.uid() != 0 {
                return Err(PersistError::Insecure {
                    path: parent.to_path_buf(),
                    reason: format!(
                        "(a parent of the data directory) is owned by uid {}, not by this agent's user (uid {me}) or root",
                        meta.uid()
                    ),
                    fix: format!("chown {me} {}", parent.display()),
                    risk: "replace the data directory",
                });
            }
            if mode & 0o022 != 0 && mode & 0o1000 == 0 {
                return Err(PersistError::Insecure {
                    path: parent.to_path_buf(),
                    reason: format!(
                        "(a parent of the data directory) is writable by group or others and not sticky (mode {mode:04o})"
                    ),
                    fix: format!("chmod go-w {}", parent.display()),
                    risk: "replace the data directory",
                });
            }
        }
        for entry in fs::read_dir(&self.path).map_err(io("list", &self.path))? {
            let entry = entry.map_err(io("list", &self.path))?;
            let path = entry.path();
            let name = entry.file_name();
            let secret = SECRET_FILES.iter().any(|s| name == std::ffi::OsStr::new(s));
            // A symbolic link's own mode means nothing: check what it points to.
            let meta = match fs::metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(PersistError::Io { action: "inspect", path, error }),
            };
            check(&path, &meta, secret)?;
        }
        Ok(())
    }

    /// Takes the directory's exclusive lock ([`LOCK_FILE`], `flock`) and writes this process's
    /// PID into it; held until the returned file is dropped (at exit). A second agent on the
    /// same directory gets [`PersistError::Locked`] naming the holder's PID.
    pub fn lock(&self) -> Result<fs::File, PersistError> {
        let path = self.path.join(LOCK_FILE);
        let io = |action| {
            let path = path.clone();
            move |error| PersistError::Io { action, path, error }
        };
        let mut options = fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&path).map_err(io("open"))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                let pid = fs::read_to_string(&path).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
                return Err(PersistError::Locked {
                    dir: self.path.clone(),
                    lock: path.clone(),
                    pid: pid.unwrap_or_else(|| "unknown".into()),
                });
            }
            Err(e) => return Err(io("lock")(e.into())),
        }
        file.set_len(0).map_err(io("truncate"))?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes()).map_err(io("write"))?;
        file.sync_all().map_err(io("fsync"))?;
        Ok(file)
    }

    /// Loads or creates the node record, raises its generation, and persists it before
    /// returning. `name_override` (the `--node` flag) replaces the stored name; a new node is
    /// named `default_name` otherwise.
    pub fn start(&self, default_name: &str, name_override: Option<&str>) -> Result<NodeRecord, PersistError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        self.start_at(default_name, name_override, now)
    }

    fn start_at(
        &self,
        default_name: &str,
        name_override: Option<&str>,
        unix_ms: u64,
    ) -> Result<NodeRecord, PersistError> {
        let path = self.path.join(NODE_FILE);
        let identity = self.identity(self.read(NODE_FILE)?.is_some())?;
        let record = match self.read(NODE_FILE)? {
            None => NodeRecord {
                id: identity.node_id(),
                identity: identity.clone(),
                name: name_override.unwrap_or(default_name).to_string(),
                generation: unix_ms.max(1),
            },
            Some(bytes) => {
                let corrupt = |reason: String| PersistError::Corrupt { path: path.clone(), reason };
                let file: NodeFile =
                    serde_json::from_slice(&bytes).map_err(|e| corrupt(format!("invalid JSON: {e}")))?;
                let id = NodeId::from_hex(&file.node_id)
                    .ok_or_else(|| corrupt(format!("node_id must be 32 hex digits, got {:?}", file.node_id)))?;
                if id != identity.node_id() {
                    return Err(corrupt(format!(
                        "node_id {} is not the id of {IDENTITY_FILE} ({})",
                        file.node_id,
                        identity.node_id().to_hex()
                    )));
                }
                if file.name.is_empty() {
                    return Err(corrupt("name is empty".to_string()));
                }
                let next = file
                    .generation
                    .checked_add(1)
                    .ok_or_else(|| corrupt("generation cannot be raised any more".to_string()))?;
                let name = match name_override {
                    Some(name) if name != file.name => {
                        tracing::info!(old = %file.name, new = %name, "node renamed");
                        name.to_string()
                    }
                    _ => file.name,
                };
                NodeRecord { identity, id, name, generation: next.max(unix_ms) }
            }
        };
        let file = NodeFile {
            node_id: record.id.to_hex(),
            generation: record.generation,
            name: record.name.clone(),
            services_file: self.services_file_recorded()?,
        };
        self.write_atomic(NODE_FILE, &to_json(&file))?;
        Ok(record)
    }

    /// Loads the identity, or creates it when the node is new. An existing node whose
    /// identity file is missing is an error: it must never take a new identity silently.
    fn identity(&self, existing_node: bool) -> Result<Identity, PersistError> {
        let path = self.path.join(IDENTITY_FILE);
        match self.read(IDENTITY_FILE)? {
            Some(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let secret = crate::keys::decode_key(text.trim())
                    .map_err(|reason| PersistError::Corrupt { path: path.clone(), reason })?;
                Ok(Identity::from_secret(secret))
            }
            None if existing_node => Err(PersistError::Corrupt {
                path,
                reason: format!("missing, but {NODE_FILE} exists: restore it from a backup"),
            }),
            None => {
                let mut secret = [0u8; 32];
                getrandom::fill(&mut secret).map_err(|e| PersistError::Io {
                    action: "generate an identity for",
                    path: path.clone(),
                    error: io::Error::other(e.to_string()),
                })?;
                self.write_atomic(IDENTITY_FILE, format!("{}\n", crate::keys::encode_key(&secret)).as_bytes())?;
                Ok(Identity::from_secret(secret))
            }
        }
    }

    /// Records a generation raised at run time (the node re-incarnated to collect tombstones),
    /// so that the next start goes above it.
    pub fn save_generation(&self, id: &NodeId, name: &str, generation: u64) -> Result<(), PersistError> {
        let file = NodeFile {
            node_id: id.to_hex(),
            generation,
            name: name.to_string(),
            services_file: self.services_file_recorded()?,
        };
        self.write_atomic(NODE_FILE, &to_json(&file))
    }

    /// Whether `node.json` records that `services.json` was written (false without `node.json`
    /// or the field).
    fn services_file_recorded(&self) -> Result<bool, PersistError> {
        let Some(bytes) = self.read(NODE_FILE)? else { return Ok(false) };
        Ok(serde_json::from_slice::<NodeFile>(&bytes).is_ok_and(|f| f.services_file))
    }

    /// Replaces the persisted services; the first time, also records in `node.json` that the
    /// file exists.
    pub fn save_services(&self, services: &[ServiceDef]) -> Result<(), PersistError> {
        self.write_atomic(SERVICES_FILE, &to_json(&services))?;
        let Some(bytes) = self.read(NODE_FILE)? else { return Ok(()) };
        match serde_json::from_slice::<NodeFile>(&bytes) {
            Ok(mut file) if !file.services_file => {
                file.services_file = true;
                self.write_atomic(NODE_FILE, &to_json(&file))
            }
            _ => Ok(()),
        }
    }

    /// Replaces the peer snapshot (at most 256 addresses).
    pub fn save_peers(&self, addrs: &[std::net::SocketAddr]) -> Result<(), PersistError> {
        let list: Vec<String> = addrs.iter().take(256).map(ToString::to_string).collect();
        self.write_atomic(PEERS_FILE, &to_json(&list))
    }

    /// The peer snapshot; empty if there is none. A damaged one is ignored (with a warning):
    /// it only speeds up a rejoin.
    pub fn load_peers(&self) -> Vec<std::net::SocketAddr> {
        let Ok(Some(bytes)) = self.read(PEERS_FILE) else { return Vec::new() };
        match serde_json::from_slice::<Vec<String>>(&bytes) {
            Ok(list) => list.iter().filter_map(|s| s.parse().ok()).take(256).collect(),
            Err(e) => {
                tracing::warn!(path = %self.path.join(PEERS_FILE).display(), error = %e, "ignoring a damaged peer snapshot");
                Vec::new()
            }
        }
    }

    /// Appends registration changes to the journal and fsyncs it (one write for the whole
    /// batch). On failure (a full disk) the journal is cut back to its length before, so a
    /// partial line never stays, and nothing of the batch counts. Returns the journal's length.
    pub fn append_services(&self, changes: &[ServiceChange]) -> Result<u64, PersistError> {
        let path = self.path.join(SERVICES_LOG);
        let io_err = |action, path: &Path| {
            let path = path.to_path_buf();
            move |error| PersistError::Io { action, path, error }
        };
        let mut buf = Vec::new();
        for c in changes {
            let line = match c {
                ServiceChange::Put(def) => serde_json::json!({ "put": def }),
                ServiceChange::Delete(id) => serde_json::json!({ "del": id }),
            };
            buf.extend_from_slice(line.to_string().as_bytes());
            buf.push(b'\n');
        }
        let run = || {
            let existed = path.exists();
            let mut options = fs::OpenOptions::new();
            options.append(true).create(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&path).map_err(io_err("open", &path))?;
            let before = file.metadata().map_err(io_err("stat", &path))?.len();
            let written = file
                .write_all(&buf)
                .map_err(io_err("write", &path))
                .and_then(|()| file.sync_data().map_err(io_err("fsync", &path)));
            if let Err(e) = written {
                let _ = file.set_len(before);
                let _ = file.sync_data();
                return Err(e);
            }
            if !existed {
                fs::File::open(&self.path).and_then(|dir| dir.sync_all()).map_err(io_err("fsync", &self.path))?;
            }
            Ok(before + buf.len() as u64)
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(run)
            }
            _ => run(),
        }
    }

    /// Writes the whole snapshot (`services.json`), then empties the journal. (A crash between
    /// the two replays the journal over a snapshot that already holds it: the same result.)
    pub fn compact_services(&self, services: &[ServiceDef]) -> Result<(), PersistError> {
        self.save_services(services)?;
        if self.path.join(SERVICES_LOG).exists() {
            self.write_atomic(SERVICES_LOG, b"")?;
        }
        Ok(())
    }

    /// The persisted services: the snapshot with the journal replayed over it; none if neither
    /// exists yet. A missing snapshot that `node.json` says was written is an error, and so is a
    /// malformed journal line, except a last line without its newline (a write that a crash cut
    /// short, never acknowledged: dropped).
    pub fn load_services(&self) -> Result<Vec<ServiceDef>, PersistError> {
        let snapshot = self.load_snapshot()?;
        let Some(log) = self.read(SERVICES_LOG)? else { return Ok(snapshot) };
        let mut by_id: std::collections::BTreeMap<String, ServiceDef> =
            snapshot.into_iter().map(|d| (d.id.clone(), d)).collect();
        let complete = log.ends_with(b"\n");
        let lines: Vec<&[u8]> = log.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
        let corrupt = |line: usize, reason: String| PersistError::Corrupt {
            path: self.path.join(SERVICES_LOG),
            reason: format!("line {line}: {reason} (remove the line, or the file to go back to services.json)"),
        };
        for (i, line) in lines.iter().enumerate() {
            let last_torn = !complete && i + 1 == lines.len();
            let value: serde_json::Value = match serde_json::from_slice(line) {
                Ok(v) => v,
                Err(_) if last_torn => {
                    tracing::warn!(path = %self.path.join(SERVICES_LOG).display(),
                        "the last registration change was cut short by a crash before it was acknowledged: dropped");
                    break;
                }
                Err(e) => return Err(corrupt(i + 1, e.to_string())),
            };
            if let Some(def) = value.get("put") {
                let bytes = def.to_string();
                let def = service_def::parse_service_list(format!("[{bytes}]").as_bytes())
                    .map_err(|e| corrupt(i + 1, e.to_string()))?
                    .pop()
                    .ok_or_else(|| corrupt(i + 1, "empty put".into()))?;
                by_id.insert(def.id.clone(), def);
            } else if let Some(id) = value.get("del").and_then(|v| v.as_str()) {
                by_id.remove(id);
            } else {
                return Err(corrupt(i + 1, "neither a put nor a del".into()));
            }
        }
        Ok(by_id.into_values().collect())
    }

    /// The `services.json` snapshot alone.
    fn load_snapshot(&self) -> Result<Vec<ServiceDef>, PersistError> {
        match self.read(SERVICES_FILE)? {
            None if self.services_file_recorded()? => Err(PersistError::Corrupt {
                path: self.path.join(SERVICES_FILE),
                reason: format!(
                    "missing, but {NODE_FILE} says the registrations were stored there: restore it from a backup \
                     (or, to start with no registrations, remove \"services_file\" from {NODE_FILE})"
                ),
            }),
            None => Ok(Vec::new()),
            Some(bytes) => service_def::parse_service_list(&bytes)
                .map_err(|e| PersistError::Corrupt { path: self.path.join(SERVICES_FILE), reason: e.to_string() }),
        }
    }

    /// Reads a file of the directory; `None` if it does not exist.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>, PersistError> {
        let path = self.path.join(name);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(PersistError::Io { action: "read", path, error }),
        }
    }

    /// Atomically replaces the file `name` (mode 0600) with `bytes`: write `name.tmp`, fsync,
    /// rename over `name`, fsync the directory.
    pub fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<(), PersistError> {
        // The fsyncs can take long on a busy disk: on the agent's multi-threaded runtime, tell
        // tokio this worker blocks, so that DNS and HTTP tasks move to another one meanwhile.
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| self.write_atomic_now(name, bytes))
            }
            _ => self.write_atomic_now(name, bytes),
        }
    }

    fn write_atomic_now(&self, name: &str, bytes: &[u8]) -> Result<(), PersistError> {
        let path = self.path.join(name);
        let tmp = self.path.join(format!("{name}.tmp"));
        let io_err = |action, path: &Path| {
            let path = path.to_path_buf();
            move |error| PersistError::Io { action, path, error }
        };
        // A stale tmp file may have other permissions: start from a fresh one.
        let _ = fs::remove_file(&tmp);
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp).map_err(io_err("create", &tmp))?;
        let written = file
            .write_all(bytes)
            .map_err(io_err("write", &tmp))
            .and_then(|()| file.sync_all().map_err(io_err("fsync", &tmp)));
        drop(file);
        if let Err(e) = written {
            // A full disk: do not leave a partial file taking the space.
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        fs::rename(&tmp, &path).map_err(io_err("rename over", &path))?;
        fs::File::open(&self.path).and_then(|dir| dir.sync_all()).map_err(io_err("fsync", &self.path))?;
        Ok(())
    }
}

/// Pretty JSON with a final newline (the files are meant to be readable).
fn to_json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // Serializing these plain structs (string keys, no maps with non-string keys) cannot fail.
    let mut out = serde_json::to_vec_pretty(value).unwrap_or_default();
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web() -> ServiceDef {
        service_def::parse_register_body(
            br#"{"ID": "web-1", "Name": "web", "Port": 80, "Tags": ["a"], "Meta": {"k": "v"}}"#,
        )
        .unwrap()
    }

    #[test]
    fn node_record_round_trips_and_generation_grows() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::open(dir.path().join("a/b")).unwrap();
        let first = data.start_at("host", None, 100).unwrap();
        assert_eq!((first.name.as_str(), first.generation), ("host", 100));
        // Same second, clock behind, clock ahead: always strictly higher.
        let second = data.start_at("other", None, 100).unwrap();
        assert_eq!((second.id, second.name.as_str()), (first.id, "host"));
        assert_eq!(second.generation, 101);
        let third = data.start_at("other", None, 50).unwrap();
        assert_eq!(third.generation, 102);
        let fourth = data.start_at("other", Some("renamed"), 5000).unwrap();
        assert_eq!((fourth.name.as_str(), fourth.generation), ("renamed", 5000));
        assert_eq!(fourth.id, first.id);
        let real = data.start("x", None).unwrap();
        assert!(real.generation > 1_600_000_000 && real.name == "renamed");

        let text = fs::read_to_string(data.path().join(NODE_FILE)).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["node_id"], first.id.to_hex());
        assert_eq!(json["generation"], real.generation);
    }

    #[test]
    fn lost_node_file_keeps_the_identity_and_still_yields_a_higher_generation() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::open(dir.path()).unwrap();
        let a = data.start("host", None).unwrap();
        fs::remove_file(dir.path().join(NODE_FILE)).unwrap();
        let b = data.start("host", None).unwrap();
        assert_eq!(a.id, b.id, "the id is the identity's, and identity.key survived");
        assert!(b.generation >= a.generation);
    }

    #[test]
    fn a_node_without_its_identity_is_refused_and_a_mismatched_id_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::open(dir.path()).unwrap();
        data.start("host", None).unwrap();
        let key = fs::read(dir.path().join(IDENTITY_FILE)).unwrap();
        fs::remove_file(dir.path().join(IDENTITY_FILE)).unwrap();
        let e = data.start("host", None).unwrap_err().to_string();
        assert!(e.contains("identity.key") && e.contains("missing"), "{e}");
        // Another node's identity under this node.json.
        let other = tempfile::tempdir().unwrap();
        DataDir::open(other.path()).unwrap().start("x", None).unwrap();
        fs::copy(other.path().join(IDENTITY_FILE), dir.path().join(IDENTITY_FILE)).unwrap();
        let e = data.start("host", None).unwrap_err().to_string();
        assert!(e.contains("is not the id of identity.key"), "{e}");
        fs::write(dir.path().join(IDENTITY_FILE), key).unwrap();
        data.start("host", None).unwrap();
    }

    #[test]
    fn corrupt_node_file_is_an_error_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::open(dir.path()).unwrap();
        let id = data.start("host", None).unwrap().id.to_hex();
        let node = dir.path().join(NODE_FILE);
        for (body, want) in [
            ("{\"node_id\": ", "invalid JSON"),
            (r#"{"node_id": "xyz", "generation": 1, "name": "a"}"#, "node_id must be 32 hex digits"),
            (&format!(r#"{{"node_id": "{id}", "generation": 1, "name": ""}}"#), "name is empty"),
            (&format!(r#"{{"node_id": "{id}", "generation": 18446744073709551615, "name": "a"}}"#), "cannot be raised"),
        ] {
            fs::write(&node, body).unwrap();
            let e = data.start("host", None).unwrap_err().to_string();
            assert!(e.contains("node.json is corrupt") && e.contains(want), "{e}");
            assert_eq!(fs::read_to_string(&node).unwrap(), body);
        }
    }

    #[test]
    fn services_round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::open(dir.path()).unwrap();
        assert!(data.load_services().unwrap().is_empty());
        let mut other = web();
        other.id = "web-2".into();
        data.save_services(&[web(), other.clone()]).unwrap();
        assert_eq!(data.load_services().unwrap(), [web(), other]);
        data.save_services(&[]).unwrap();
        assert!(data.load_services().unwrap().is_empty());

        fs::write(dir.path().join(SERVICES_FILE), r#"[{"Name": "bad name"}]"#).unwrap();
        let e = data.load_services().unwrap_err().to_string();
        assert!(e.contains("services.json is corrupt: [0].Name: must be a DNS label"), "{e}");
    }

    #[test]
    fn the_journal_replays_over_the_snapshot_and_compacts() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::open(dir.path()).unwrap();
        let mut b = web();
        b.id = "web-2".into();
        data.compact_services(&[web()]).unwrap();
        data.append_services(&[ServiceChange::Put(b.clone())]).unwrap();
        let mut b2 = b.clone();
        b2.port = 9999;
        data.append_services(&[ServiceChange::Delete("web-1".into()), ServiceChange::Put(b2.clone())]).unwrap();
        assert_eq!(data.load_services().unwrap(), [b2.clone()]);
        // The snapshot is untouched until a compaction; then the journal is empty.
        assert_eq!(data.load_snapshot().unwrap(), [web()]);
        data.compact_services(&[b2.clone()]).unwrap();
        assert_eq!(fs::read(dir.path().join(SERVICES_LOG)).unwrap(), b"");
        assert_eq!(data.load_services().unwrap(), [b2.clone()]);
        // A crash between the snapshot and the journal's truncation: replaying it again over the
        // new snapshot gives the same result.
        data.append_services(&[ServiceChange::Put(web())]).unwrap();
        data.save_services(&[b2.clone(), web()]).unwrap();
        let mut both = data.load_services().unwrap();
        both.sort_by(|x, y| x.id.cmp(&y.id));
        assert_eq!(both, [web(), b2]);
    }

    #[test]
    fn a_torn_last_journal_line_is_dropped_and_a_corrupt_one_named() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::open(dir.path()).unwrap();
        data.compact_services(&[]).unwrap();
        data.append_services(&[ServiceChange::Put(web())]).unwrap();
        // A crash in the middle of the next append (never acknowledged).
        let mut f = fs::OpenOptions::new().append(true).open(dir.path().join(SERVICES_LOG)).unwrap();
        f.write_all(br#"{"put": {"ID": "half"#).unwrap();
        drop(f);
        assert_eq!(data.load_services().unwrap(), [web()]);
        // A bad line that is not the last one is corruption, named with its line.
        fs::write(dir.path().join(SERVICES_LOG), b"{\"put\": 1}\n{\"del\": \"web-1\"}\n").unwrap();
        let e = data.load_services().unwrap_err().to_string();
        assert!(e.contains("services.log") && e.contains("line 1"), "{e}");
    }

    #[test]
    fn a_missing_services_file_that_node_json_recorded_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::open(dir.path()).unwrap();
        data.start("host", None).unwrap();
        data.save_services(&[web()]).unwrap();
        let node = fs::read_to_string(dir.path().join(NODE_FILE)).unwrap();
        assert!(node.contains("\"services_file\": true"), "{node}");
        // A restart and a generation change keep the record.
        data.start("host", None).unwrap();
        fs::remove_file(dir.path().join(SERVICES_FILE)).unwrap();
        let e = data.load_services().unwrap_err().to_string();
        assert!(e.contains("services.json is corrupt: missing, but node.json says"), "{e}");
        // An older node.json without the field: a missing file still means no registrations.
        let old = node.replace(",\n  \"services_file\": true", "");
        assert!(!old.contains("services_file"), "{old}");
        fs::write(dir.path().join(NODE_FILE), old).unwrap();
        assert!(data.load_services().unwrap().is_empty());
    }

    #[test]
    fn atomic_write_leaves_no_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::open(dir.path()).unwrap();
        fs::write(dir.path().join("key.tmp"), "stale").unwrap();
        data.write_atomic("key", b"one").unwrap();
        data.write_atomic("key", b"two").unwrap();
        assert_eq!(data.read("key").unwrap().unwrap(), b"two");
        assert_eq!(data.read("missing").unwrap(), None);
        data.save_services(&[web()]).unwrap();
        data.start("host", None).unwrap();
        let mut names: Vec<_> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, [IDENTITY_FILE, "key", NODE_FILE, SERVICES_FILE]);
    }

    #[cfg(unix)]
    #[test]
    fn permissions_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::open(dir.path().join("data")).unwrap();
        data.start("host", None).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(data.path()), 0o700);
        assert_eq!(mode(&data.path().join(NODE_FILE)), 0o600);
    }

    #[test]
    fn open_refuses_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, "").unwrap();
        assert!(DataDir::open(&file).is_err());
    }
}
