//! The enrollment bundle: everything a ground station needs to sync with its relay, in one
//! TOML file an admin can carry on a USB stick — where to dial, whom to trust, and who it is.
//! It holds a private key: keep it like a password (the relay writes it 0600).

use serde::{Deserialize, Serialize};

use crate::identity::EdgeIdentity;
use crate::pki::{CertifiedKey, PkiError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    pub org: String,
    pub edge: String,
    /// HOST:PORT of the relay's QUIC listener, or several, comma separated (instances of
    /// one relay; the station moves to the next when one fails).
    pub relay: String,
    /// The name the relay's certificate is checked against.
    pub server_name: String,
    pub relay_ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("bundle does not parse: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("bundle: {0}")]
    Identity(#[from] crate::identity::IdentityError),
    #[error("bundle: {0}")]
    Pki(#[from] PkiError),
    #[error("bundle names {named} but its certificate says {certified}")]
    Mismatch { named: String, certified: String },
}

impl Bundle {
    pub fn to_toml(&self) -> String {
        // Serialising plain strings cannot fail.
        toml::to_string(self).unwrap_or_default()
    }

    /// Parses and checks a bundle: the certificate must name the org and edge it claims.
    pub fn parse(text: &str) -> Result<Bundle, BundleError> {
        let bundle: Bundle = toml::from_str(text)?;
        let named = EdgeIdentity::new(&bundle.org, &bundle.edge)?;
        let certified = EdgeIdentity::from_certificate(&bundle.certified_key().cert_der()?)?;
        if named != certified {
            return Err(BundleError::Mismatch {
                named: named.to_string(),
                certified: certified.to_string(),
            });
        }
        Ok(bundle)
    }

    pub fn identity(&self) -> Result<EdgeIdentity, BundleError> {
        Ok(EdgeIdentity::new(&self.org, &self.edge)?)
    }

    pub fn certified_key(&self) -> CertifiedKey {
        CertifiedKey {
            cert_pem: self.cert_pem.clone(),
            key_pem: self.key_pem.clone(),
        }
    }

    /// The QUIC client configuration this bundle grants.
    pub fn client_config(&self) -> Result<quinn::ClientConfig, Box<dyn std::error::Error>> {
        let key = self.certified_key();
        let ca = CertifiedKey {
            cert_pem: self.relay_ca_pem.clone(),
            key_pem: String::new(),
        };
        Ok(crate::transport::client_config(
            key.cert_der()?,
            key.key_der()?,
            ca.cert_der()?,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::Ca;

    #[test]
    fn a_bundle_round_trips_and_must_match_its_certificate() {
        let (ca, _) = Ca::generate("test").unwrap();
        let id = EdgeIdentity::new("org-a", "pi-1").unwrap();
        let key = ca.issue_edge(&id).unwrap();
        let bundle = Bundle {
            org: id.org.clone(),
            edge: id.edge.clone(),
            relay: "127.0.0.1:4433".into(),
            server_name: "localhost".into(),
            relay_ca_pem: ca.cert_pem.clone(),
            cert_pem: key.cert_pem,
            key_pem: key.key_pem,
        };
        assert_eq!(Bundle::parse(&bundle.to_toml()).unwrap(), bundle);
        assert!(bundle.client_config().is_ok());

        let forged = Bundle {
            org: "org-b".into(),
            ..bundle
        };
        assert!(matches!(
            Bundle::parse(&forged.to_toml()),
            Err(BundleError::Mismatch { .. })
        ));
    }
}
