//! Who a peer is, from its certificate alone.
//!
//! At enrollment the relay's CA issues each ground station a certificate whose subject
//! alternative name is the URI `trellis://org/<org>/edge/<edge>`. After TLS has verified the
//! chain, the relay reads identity from that name and from nothing else: no message can claim
//! to be another edge or another org.

use std::fmt;

/// URI scheme and prefix of an edge identity.
const PREFIX: &str = "trellis://org/";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EdgeIdentity {
    pub org: String,
    pub edge: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("{0:?} is not a valid name: use 1-63 of a-z, 0-9, '-' and '_', starting with a letter or digit")]
    BadName(String),
    #[error("{0:?} is not a trellis://org/<org>/edge/<edge> URI")]
    BadUri(String),
    #[error("certificate does not parse: {0}")]
    BadCertificate(String),
    #[error("certificate names no edge identity")]
    Missing,
    #[error("certificate names more than one edge identity")]
    Ambiguous,
}

/// Org and edge names: short, lowercase, safe in URIs, paths and SQL identifiers' company.
pub fn validate_name(name: &str) -> Result<(), IdentityError> {
    let ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(IdentityError::BadName(name.to_string()))
    }
}

impl EdgeIdentity {
    pub fn new(org: &str, edge: &str) -> Result<EdgeIdentity, IdentityError> {
        validate_name(org)?;
        validate_name(edge)?;
        Ok(EdgeIdentity {
            org: org.to_string(),
            edge: edge.to_string(),
        })
    }

    /// The subject alternative name written into the edge's certificate.
    pub fn uri(&self) -> String {
        format!("{PREFIX}{}/edge/{}", self.org, self.edge)
    }

    pub fn from_uri(uri: &str) -> Result<EdgeIdentity, IdentityError> {
        let bad = || IdentityError::BadUri(uri.to_string());
        let rest = uri.strip_prefix(PREFIX).ok_or_else(bad)?;
        let (org, edge) = rest.split_once("/edge/").ok_or_else(bad)?;
        EdgeIdentity::new(org, edge)
    }

    /// Reads the identity from a DER certificate (already verified by TLS). Exactly one
    /// `trellis://` URI must be present.
    pub fn from_certificate(der: &[u8]) -> Result<EdgeIdentity, IdentityError> {
        use x509_parser::extensions::GeneralName;
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
        let mut found = None;
        for name in san.iter().flat_map(|s| s.value.general_names.iter()) {
            if let GeneralName::URI(uri) = name {
                if uri.starts_with("trellis:") {
                    if found.is_some() {
                        return Err(IdentityError::Ambiguous);
                    }
                    found = Some(EdgeIdentity::from_uri(uri)?);
                }
            }
        }
        found.ok_or(IdentityError::Missing)
    }
}

impl fmt::Display for EdgeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.org, self.edge)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with_uris(uris: &[&str]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = uris
            .iter()
            .map(|u| rcgen::SanType::URI(rcgen::string::Ia5String::try_from(*u).unwrap()))
            .collect();
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn round_trips_through_a_certificate() {
        let id = EdgeIdentity::new("vineyard-co", "pi-north").unwrap();
        let der = cert_with_uris(&[&id.uri()]);
        assert_eq!(EdgeIdentity::from_certificate(&der), Ok(id));
    }

    #[test]
    fn a_certificate_must_name_exactly_one_edge() {
        assert_eq!(
            EdgeIdentity::from_certificate(&cert_with_uris(&[])),
            Err(IdentityError::Missing)
        );
        let two = cert_with_uris(&["trellis://org/a/edge/x", "trellis://org/b/edge/y"]);
        assert_eq!(
            EdgeIdentity::from_certificate(&two),
            Err(IdentityError::Ambiguous)
        );
        assert!(EdgeIdentity::from_certificate(b"not a certificate").is_err());
    }

    #[test]
    fn names_are_strict() {
        for bad in [
            "",
            "Upper",
            "has space",
            "-lead",
            "../etc",
            "a/b",
            &"x".repeat(64),
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        for good in ["a", "vineyard-co", "pi_3", "0x"] {
            assert!(validate_name(good).is_ok(), "{good:?}");
        }
        assert!(EdgeIdentity::from_uri("trellis://org/a/edge/b/../c").is_err());
        assert!(EdgeIdentity::from_uri("https://org/a/edge/b").is_err());
    }
}
