//! The relay's CA and server certificate on disk, created on first use.

use std::path::Path;

use anyhow::Context as _;
use sync_protocol::pki::{Ca, CertifiedKey};

const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";
const RELAY_CERT: &str = "relay.pem";
const RELAY_KEY: &str = "relay.key";
const RESET_KEY: &str = "reset.key";

/// Loads the CA, generating it the first time.
pub fn ca(data_dir: &Path) -> anyhow::Result<Ca> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let (cert, key) = (data_dir.join(CA_CERT), data_dir.join(CA_KEY));
    if cert.exists() {
        let saved = CertifiedKey {
            cert_pem: std::fs::read_to_string(&cert)?,
            key_pem: std::fs::read_to_string(&key)?,
        };
        return Ok(Ca::load(&saved)?);
    }
    let (ca, saved) = Ca::generate("Trellis relay CA")?;
    write_secret(&key, &saved.key_pem)?;
    std::fs::write(&cert, &saved.cert_pem)?;
    tracing::info!(path = %cert.display(), "created the relay CA");
    Ok(ca)
}

/// The relay's server certificate for `names`, issued by the CA the first time.
pub fn relay_cert(data_dir: &Path, ca: &Ca, names: &[String]) -> anyhow::Result<CertifiedKey> {
    let (cert, key) = (data_dir.join(RELAY_CERT), data_dir.join(RELAY_KEY));
    if cert.exists() {
        return Ok(CertifiedKey {
            cert_pem: std::fs::read_to_string(&cert)?,
            key_pem: std::fs::read_to_string(&key)?,
        });
    }
    let issued = ca.issue_relay(names)?;
    write_secret(&key, &issued.key_pem)?;
    std::fs::write(&cert, &issued.cert_pem)?;
    Ok(issued)
}

/// The secret that keys QUIC stateless resets, created on first use (see
/// `sync_protocol::transport::server_endpoint`).
pub fn reset_secret(data_dir: &Path) -> anyhow::Result<[u8; 32]> {
    let path = data_dir.join(RESET_KEY);
    if let Ok(bytes) = std::fs::read(&path) {
        return <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| anyhow::anyhow!("{} is not 32 bytes", path.display()));
    }
    let mut secret = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
        .map_err(|_| anyhow::anyhow!("no randomness for the reset key"))?;
    write_secret_bytes(&path, &secret)?;
    Ok(secret)
}

/// Writes a private key readable by the owner only.
fn write_secret(path: &Path, contents: &str) -> anyhow::Result<()> {
    write_secret_bytes(path, contents.as_bytes())
}

fn write_secret_bytes(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(contents)?;
    Ok(())
}
