//! The relay's certificate authority: it issues the relay's own certificate and one
//! certificate per enrolled ground station, naming that station's org and edge id
//! (see [`crate::identity`]). Everything is PEM so an admin can inspect it with openssl.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::identity::EdgeIdentity;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("PEM: {0}")]
    Pem(String),
}

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertifiedKey {
    pub cert_pem: String,
    pub key_pem: String,
}

impl CertifiedKey {
    pub fn cert_der(&self) -> Result<CertificateDer<'static>, PkiError> {
        CertificateDer::from_pem_slice(self.cert_pem.as_bytes())
            .map_err(|e| PkiError::Pem(e.to_string()))
    }

    pub fn key_der(&self) -> Result<PrivateKeyDer<'static>, PkiError> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| PkiError::Pem(e.to_string()))
    }
}

/// The relay's CA, loaded from (or generated as) PEM.
pub struct Ca {
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// A new CA. `name` goes into the subject, e.g. "Trellis relay CA (hq.example.org)".
    pub fn generate(name: &str) -> Result<(Ca, CertifiedKey), PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        set_validity(&mut params);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let saved = CertifiedKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        let ca = Ca::load(&saved)?;
        Ok((ca, saved))
    }

    pub fn load(saved: &CertifiedKey) -> Result<Ca, PkiError> {
        let key = KeyPair::from_pem(&saved.key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&saved.cert_pem, key)?;
        Ok(Ca {
            cert_pem: saved.cert_pem.clone(),
            issuer,
        })
    }

    pub fn cert_der(&self) -> Result<CertificateDer<'static>, PkiError> {
        CertificateDer::from_pem_slice(self.cert_pem.as_bytes())
            .map_err(|e| PkiError::Pem(e.to_string()))
    }

    /// The relay's server certificate, for the DNS names and IP addresses edges dial.
    pub fn issue_relay(&self, names: &[String]) -> Result<CertifiedKey, PkiError> {
        let mut params = CertificateParams::new(names.to_vec())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "Trellis relay");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// A ground station's client certificate: its identity is the `trellis://` URI.
    pub fn issue_edge(&self, edge: &EdgeIdentity) -> Result<CertifiedKey, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, edge.to_string());
        params.subject_alt_names = vec![SanType::URI(edge.uri().as_str().try_into()?)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, mut params: CertificateParams) -> Result<CertifiedKey, PkiError> {
        set_validity(&mut params);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(CertifiedKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Validity from 1970 to 2124. A Raspberry Pi without a real-time clock can boot with its
/// clock anywhere; TLS checks validity against that clock, so a certificate bounded by real
/// dates would lock a ground station out of sync until NTP came back. Certificates are
/// withdrawn by the relay's revocation list instead of by expiry.
fn set_validity(params: &mut CertificateParams) {
    params.not_before = rcgen::date_time_ymd(1970, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
}
