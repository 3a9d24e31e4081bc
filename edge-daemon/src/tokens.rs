//! Who may use the station's API: named tokens, each with a role, kept in
//! `<data>/tokens.db`.
//!
//! Only a token's SHA-256 is stored: the secret is shown once, when it is made. The CLI
//! writes this file (`edge-daemon token create|list|revoke`) while the daemon runs; the
//! daemon re-reads it every second ([`TokenBook`]), so a new token works and a revoked one
//! stops working, on open WebSockets too, within a second. It is a file of its own, not a
//! table of the telemetry store, so that the store keeps exactly one writer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rusqlite::{params, Connection};
use serde::Serialize;
use tokio::sync::watch;

/// File name of the token book inside the data directory.
pub const TOKENS_FILE: &str = "tokens.db";
/// Every station secret starts with this, so a leaked one is recognisable (and scannable).
pub const SECRET_PREFIX: &str = "trellis_st_";
/// How often the daemon re-reads the token book.
pub const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// What a token may do. Each role may do everything the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Vineyard crews: see everything, change nothing.
    Viewer,
    /// Field pilots: edit fields and geofences, rename vehicles, acknowledge alerts,
    /// command vehicles.
    Pilot,
    /// Fleet admins.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Pilot => "pilot",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "pilot" => Some(Role::Pilot),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        Role::parse(s).ok_or_else(|| format!("{s:?} is not a role: viewer, pilot or admin"))
    }
}

/// A token as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    /// The first 12 hex digits of the hash: enough to name it in `token revoke`.
    pub id: String,
    pub name: String,
    pub role: Role,
    pub created_unix_ms: i64,
    pub revoked_unix_ms: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token book {0}: {1}")]
    Open(PathBuf, rusqlite::Error),
    #[error("cannot create data directory {0}: {1}")]
    DataDir(PathBuf, std::io::Error),
    #[error("token book: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("a token named {0:?} is already in use: revoke it first or choose another name")]
    NameTaken(String),
    #[error("a token name is 1 to 64 characters")]
    BadName,
    #[error("no token {0:?} (give its name or id, as `token list` shows them)")]
    NoSuchToken(String),
    #[error("{0:?} names {1} tokens: give the id")]
    Ambiguous(String, usize),
    #[error("{0}")]
    Random(#[from] trellis_web::auth::NoRandomness),
}

/// The token book on disk.
pub struct Tokens {
    conn: Connection,
}

impl Tokens {
    /// Opens (creating if needed) the token book of `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Tokens, TokenError> {
        let path = data_dir.join(TOKENS_FILE);
        std::fs::create_dir_all(data_dir)
            .map_err(|e| TokenError::DataDir(data_dir.to_path_buf(), e))?;
        let open = || -> rusqlite::Result<Connection> {
            let conn = Connection::open(&path)?;
            conn.busy_timeout(Duration::from_secs(5))?;
            conn.execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 CREATE TABLE IF NOT EXISTS tokens (
                     hash TEXT PRIMARY KEY,
                     name TEXT NOT NULL,
                     role TEXT NOT NULL,
                     created_ms INTEGER NOT NULL,
                     revoked_ms INTEGER
                 );",
            )?;
            Ok(conn)
        };
        let conn = open().map_err(|e| TokenError::Open(path.clone(), e))?;
        // Hashes are not secrets, but nobody else needs to read them.
        restrict_to_owner(&path);
        Ok(Tokens { conn })
    }

    /// Makes a token; returns it and its secret, which is not kept.
    pub fn create(&self, name: &str, role: Role) -> Result<(TokenInfo, String), TokenError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 64 {
            return Err(TokenError::BadName);
        }
        if self.active_by_hash()?.values().any(|t| t.name == name) {
            return Err(TokenError::NameTaken(name.into()));
        }
        let secret = trellis_web::auth::new_secret(SECRET_PREFIX)?;
        let hash = trellis_web::auth::hash(&secret);
        let now = crate::clock::system_now_us() / 1000;
        self.conn.execute(
            "INSERT INTO tokens (hash, name, role, created_ms) VALUES (?1, ?2, ?3, ?4)",
            params![hash, name, role.as_str(), now],
        )?;
        let info = TokenInfo {
            id: id_of(&hash),
            name: name.into(),
            role,
            created_unix_ms: now,
            revoked_unix_ms: None,
        };
        Ok((info, secret))
    }

    /// Every token, revoked ones too, oldest first.
    pub fn list(&self) -> Result<Vec<TokenInfo>, TokenError> {
        Ok(self.rows()?.into_iter().map(|(_, t)| t).collect())
    }

    fn rows(&self) -> Result<Vec<(String, TokenInfo)>, TokenError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT hash, name, role, created_ms, revoked_ms FROM tokens ORDER BY created_ms, hash",
        )?;
        let rows = stmt.query_map([], |r| {
            let hash: String = r.get(0)?;
            let role: String = r.get(2)?;
            Ok((hash, r.get(1)?, role, r.get(3)?, r.get(4)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (hash, name, role, created, revoked) = row?;
            // A role this version does not know grants nothing.
            let Some(role) = Role::parse(&role) else {
                continue;
            };
            let info = TokenInfo {
                id: id_of(&hash),
                name,
                role,
                created_unix_ms: created,
                revoked_unix_ms: revoked,
            };
            out.push((hash, info));
        }
        Ok(out)
    }

    /// Revokes the active token with this name or id (prefix of its hash).
    pub fn revoke(&self, name_or_id: &str) -> Result<TokenInfo, TokenError> {
        let matches: Vec<(String, TokenInfo)> = self
            .rows()?
            .into_iter()
            .filter(|(hash, t)| {
                t.revoked_unix_ms.is_none()
                    && (t.name == name_or_id
                        || (name_or_id.len() >= 6 && hash.starts_with(name_or_id)))
            })
            .collect();
        let (hash, mut info) = match matches.len() {
            0 => return Err(TokenError::NoSuchToken(name_or_id.into())),
            1 => matches
                .into_iter()
                .next()
                .ok_or(TokenError::NoSuchToken(name_or_id.into()))?,
            n => return Err(TokenError::Ambiguous(name_or_id.into(), n)),
        };
        let now = crate::clock::system_now_us() / 1000;
        self.conn.execute(
            "UPDATE tokens SET revoked_ms = ?2 WHERE hash = ?1",
            params![hash, now],
        )?;
        info.revoked_unix_ms = Some(now);
        Ok(info)
    }

    /// Active tokens by hash.
    fn active_by_hash(&self) -> Result<HashMap<String, Arc<TokenInfo>>, TokenError> {
        Ok(self
            .rows()?
            .into_iter()
            .filter(|(_, t)| t.revoked_unix_ms.is_none())
            .map(|(h, t)| (h, Arc::new(t)))
            .collect())
    }
}

/// A token's id: the first 12 hex digits of its hash, enough to name it in `token revoke`.
fn id_of(hash: &str) -> String {
    hash.get(..12).unwrap_or(hash).to_string()
}

fn restrict_to_owner(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

/// The daemon's view of the token book: the active tokens, re-read every second, and at
/// once when a request brings a token it does not know (one just made), at most every
/// [`MISS_RELOAD`].
pub struct TokenBook {
    tokens: std::sync::Mutex<Tokens>,
    active: RwLock<Arc<HashMap<String, Arc<TokenInfo>>>>,
    last_miss_reload: std::sync::Mutex<std::time::Instant>,
    /// Bumped whenever the set of active tokens changes; open WebSockets re-check theirs.
    changed: watch::Sender<u64>,
}

/// How often an unknown token may make the daemon re-read the book.
pub const MISS_RELOAD: Duration = Duration::from_millis(200);

impl TokenBook {
    /// Reads the book of `data_dir` and keeps reading it every [`RELOAD_EVERY`] on the
    /// current tokio runtime.
    pub fn watch(data_dir: &Path) -> Result<Arc<TokenBook>, TokenError> {
        let tokens = Tokens::open(data_dir)?;
        let book = Arc::new(TokenBook {
            active: RwLock::new(Arc::new(tokens.active_by_hash()?)),
            tokens: std::sync::Mutex::new(tokens),
            // So that the first unknown token, however soon after start, reads the book.
            last_miss_reload: std::sync::Mutex::new(
                std::time::Instant::now()
                    .checked_sub(MISS_RELOAD * 2)
                    .unwrap_or_else(std::time::Instant::now),
            ),
            changed: watch::channel(0).0,
        });
        let weak = Arc::downgrade(&book);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RELOAD_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(book) = weak.upgrade() else {
                    return;
                };
                book.reload().await;
            }
        });
        Ok(book)
    }

    async fn reload(self: &Arc<Self>) {
        let book = self.clone();
        let read = tokio::task::spawn_blocking(move || {
            let read = book
                .tokens
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .active_by_hash();
            read.map(|now| book.replace(now))
        })
        .await;
        match read {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("re-reading the token book: {e}"),
            Err(e) => tracing::error!("re-reading the token book: {e}"),
        }
    }

    /// The active token whose secret this is, re-reading the book first if the secret is
    /// unknown and the book was last read more than [`MISS_RELOAD`] ago.
    pub async fn check_fresh(self: &Arc<Self>, secret: &str) -> Option<Arc<TokenInfo>> {
        if let Some(token) = self.check(secret) {
            return Some(token);
        }
        {
            // Claimed here, so a burst of unknown tokens reads the book once.
            let mut last_miss_reload = self
                .last_miss_reload
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if last_miss_reload.elapsed() <= MISS_RELOAD {
                return None;
            }
            *last_miss_reload = std::time::Instant::now();
        }
        self.reload().await;
        self.check(secret)
    }

    fn replace(&self, now: HashMap<String, Arc<TokenInfo>>) {
        let mut active = self.active.write().unwrap_or_else(|p| p.into_inner());
        if **active != now {
            *active = Arc::new(now);
            self.changed.send_modify(|g| *g += 1);
        }
    }

    /// The active token whose secret this is.
    pub fn check(&self, secret: &str) -> Option<Arc<TokenInfo>> {
        if secret.is_empty() || secret.len() > trellis_web::auth::MAX_SECRET_LEN {
            return None;
        }
        let hash = trellis_web::auth::hash(secret);
        self.active
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&hash)
            .cloned()
    }

    /// Whether no token is active.
    pub fn is_empty(&self) -> bool {
        self.active
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// Whether the token with this id is still active.
    pub fn is_active(&self, id: &str) -> bool {
        self.active
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .any(|t| t.id == id)
    }

    /// Changes whenever a token is made or revoked.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_shown_once_stored_as_a_hash_and_revoked_by_name_or_id() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = Tokens::open(dir.path()).unwrap();
        let (crew, secret) = tokens.create("crew phone", Role::Viewer).unwrap();
        assert!(secret.starts_with(SECRET_PREFIX));
        assert!(matches!(
            tokens.create("crew phone", Role::Pilot),
            Err(TokenError::NameTaken(_))
        ));
        let (pilot, _) = tokens.create("ana", Role::Pilot).unwrap();
        let raw = std::fs::read(dir.path().join(TOKENS_FILE)).unwrap();
        assert!(
            !raw.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the secret itself is on disk"
        );
        let by_hash = tokens.active_by_hash().unwrap();
        assert_eq!(
            by_hash
                .get(&trellis_web::auth::hash(&secret))
                .map(|t| t.name.as_str()),
            Some("crew phone")
        );
        assert_eq!(tokens.revoke(&crew.id).unwrap().name, "crew phone");
        assert_eq!(tokens.revoke("ana").unwrap().id, pilot.id);
        assert!(matches!(
            tokens.revoke("ana"),
            Err(TokenError::NoSuchToken(_))
        ));
        assert!(tokens.active_by_hash().unwrap().is_empty());
        assert_eq!(
            tokens.list().unwrap().len(),
            2,
            "revoked tokens stay listed"
        );
        // The name is free again once revoked.
        tokens.create("ana", Role::Admin).unwrap();
    }

    #[tokio::test]
    async fn the_daemon_sees_a_revocation_within_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let (_, secret) = Tokens::open(dir.path())
            .unwrap()
            .create("crew", Role::Viewer)
            .unwrap();
        let book = TokenBook::watch(dir.path()).unwrap();
        assert_eq!(book.check(&secret).map(|t| t.role), Some(Role::Viewer));
        assert!(book.check("trellis_st_guess").is_none());
        let mut changes = book.changes();
        Tokens::open(dir.path()).unwrap().revoke("crew").unwrap();
        tokio::time::timeout(RELOAD_EVERY * 3, changes.changed())
            .await
            .expect("the book noticed the revocation")
            .unwrap();
        assert!(book.check(&secret).is_none());
    }
}
