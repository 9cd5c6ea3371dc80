//! Who may talk to a job's coordinator and workers: one secret per job, a bearer token and a TLS
//! identity under the job's own CA, checked by every server and presented by every client.
//!
//! # Model
//! - **The secret** ([`JobSecret`]): a 256-bit random token, a per-job CA certificate, and a server
//!   certificate and key that CA signed for the name [`SERVER_NAME`]. The operator keeps it in a
//!   Secret owned by the job and mounts it into the job's pods; `weir run --workers` writes one to
//!   a private temporary folder per run. The CA's own key is thrown away once it has signed, so
//!   nobody can mint another certificate for the job.
//! - **Servers** (the coordinator's gRPC, a worker's Arrow Flight) speak TLS only, with the job's
//!   server identity, and answer every call without the job's token with `Unauthenticated`
//!   ([`Authenticator`]).
//! - **Clients** trust only the job's CA (not the system's roots), check the name
//!   [`SERVER_NAME`] whatever address they dial (pod IPs, services), and send the token on every
//!   call ([`Bearer`]).
//!
//! # Guarantees
//! - Nothing here logs or prints the token or the key: [`JobSecret`]'s `Debug` redacts them.
//! - The token comparison takes the same time wherever the first wrong byte is.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use subtle::ConstantTimeEq;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};
use tonic::{Request, Status};

/// The name in every job's server certificate; clients verify it whatever address they dial.
pub const SERVER_NAME: &str = "weir-job.internal";
/// The secret's token, as a file in the secret's folder and a key of the Kubernetes Secret.
pub const TOKEN_KEY: &str = "token";
/// The job's CA certificate (PEM).
pub const CA_KEY: &str = "ca.crt";
/// The servers' certificate (PEM), signed by the job's CA; the Kubernetes TLS Secret's key name.
pub const CERT_KEY: &str = "tls.crt";
/// The servers' private key (PEM).
pub const KEY_KEY: &str = "tls.key";
/// The environment variable naming the folder a job's secret is mounted at.
pub const SECRET_DIR_ENV: &str = "WEIR_JOB_SECRET_DIR";

/// Bytes of randomness in a token.
const TOKEN_BYTES: usize = 32;

/// Why a secret could not be made, read, or used.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("making the job's certificates: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("drawing the job's token: {0}")]
    Random(getrandom::Error),
    #[error("reading the job secret's `{key}` at `{path}`: {source}")]
    Read { key: &'static str, path: String, source: std::io::Error },
    #[error("writing the job secret to `{path}`: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("the job secret's `{key}` is {problem}")]
    Invalid { key: &'static str, problem: String },
    #[error("`{address}` is not an address to dial: {message}")]
    Address { address: String, message: String },
}

/// A job's shared secret: the token and the TLS identity of its servers.
#[derive(Clone, PartialEq, Eq)]
pub struct JobSecret {
    token: String,
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

impl fmt::Debug for JobSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobSecret").field("token", &"<redacted>").field("key", &"<redacted>").finish_non_exhaustive()
    }
}

impl JobSecret {
    /// A new secret for `job`: a fresh token, CA and server certificate.
    ///
    /// # Errors
    /// When the system's randomness or the certificate signing fails.
    pub fn generate(job: &str) -> Result<Self, AuthError> {
        let mut bytes = [0u8; TOKEN_BYTES];
        getrandom::fill(&mut bytes).map_err(AuthError::Random)?;
        let token = bytes.iter().map(|b| format!("{b:02x}")).collect();

        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.distinguished_name.push(DnType::CommonName, format!("weir job {job} CA"));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, ca_key);

        let mut server = CertificateParams::new(vec![SERVER_NAME.to_string()])?;
        server.distinguished_name.push(DnType::CommonName, format!("weir job {job}"));
        server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate()?;
        let server_cert = server.signed_by(&server_key, &issuer)?;
        Ok(Self { token, ca_pem: ca_cert.pem(), cert_pem: server_cert.pem(), key_pem: server_key.serialize_pem() })
    }

    /// The secret from its parts, as stored (the Kubernetes Secret's `data`).
    ///
    /// # Errors
    /// [`AuthError::Invalid`] naming the missing or malformed part.
    pub fn from_data(data: &BTreeMap<String, Vec<u8>>) -> Result<Self, AuthError> {
        let part = |key: &'static str| -> Result<String, AuthError> {
            let bytes = data.get(key).ok_or(AuthError::Invalid { key, problem: "missing".into() })?;
            String::from_utf8(bytes.clone()).map_err(|_| AuthError::Invalid { key, problem: "not UTF-8".into() })
        };
        Self::from_parts(part(TOKEN_KEY)?, part(CA_KEY)?, part(CERT_KEY)?, part(KEY_KEY)?)
    }

    /// The secret's parts by key, to store (the Kubernetes Secret's `data`).
    pub fn to_data(&self) -> BTreeMap<String, Vec<u8>> {
        [(TOKEN_KEY, &self.token), (CA_KEY, &self.ca_pem), (CERT_KEY, &self.cert_pem), (KEY_KEY, &self.key_pem)]
            .into_iter()
            .map(|(key, value)| (key.to_string(), value.as_bytes().to_vec()))
            .collect()
    }

    /// Reads the secret from a folder holding one file per key (a mounted Secret).
    ///
    /// # Errors
    /// [`AuthError::Read`] for a file that cannot be read, [`AuthError::Invalid`] for a bad part.
    pub fn load(dir: &Path) -> Result<Self, AuthError> {
        let part = |key: &'static str| -> Result<String, AuthError> {
            let path = dir.join(key);
            std::fs::read_to_string(&path).map_err(|source| AuthError::Read {
                key,
                path: path.display().to_string(),
                source,
            })
        };
        Self::from_parts(part(TOKEN_KEY)?, part(CA_KEY)?, part(CERT_KEY)?, part(KEY_KEY)?)
    }

    /// Writes the secret into `dir` (created if missing), one file per key, readable by the
    /// owner only.
    ///
    /// # Errors
    /// [`AuthError::Write`] when the folder or a file cannot be written.
    pub fn save(&self, dir: &Path) -> Result<(), AuthError> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let failed = |path: &Path| {
            let path = path.display().to_string();
            move |source| AuthError::Write { path, source }
        };
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(failed(dir))?;
        for (key, value) in self.to_data() {
            let path = dir.join(&key);
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)
                .map_err(failed(&path))?;
            std::io::Write::write_all(&mut file, &value).map_err(failed(&path))?;
        }
        Ok(())
    }

    fn from_parts(token: String, ca_pem: String, cert_pem: String, key_pem: String) -> Result<Self, AuthError> {
        let token = token.trim().to_string();
        if token.len() < 32 || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(AuthError::Invalid {
                key: TOKEN_KEY,
                problem: "not a token (at least 32 printable ASCII characters)".into(),
            });
        }
        for (key, pem, marker) in
            [(CA_KEY, &ca_pem, "CERTIFICATE"), (CERT_KEY, &cert_pem, "CERTIFICATE"), (KEY_KEY, &key_pem, "PRIVATE KEY")]
        {
            if !pem.contains("-----BEGIN ") || !pem.contains(marker) {
                return Err(AuthError::Invalid { key, problem: format!("not a PEM {}", marker.to_lowercase()) });
            }
        }
        Ok(Self { token, ca_pem, cert_pem, key_pem })
    }

    /// TLS for the job's servers: its server certificate and key. Makes sure rustls has a
    /// process-wide crypto provider first (see [`install_crypto_provider`]).
    pub fn server_tls(&self) -> ServerTlsConfig {
        install_crypto_provider();
        ServerTlsConfig::new().identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
    }

    /// TLS for the job's clients: trust the job's CA only, and expect [`SERVER_NAME`].
    pub fn client_tls(&self) -> ClientTlsConfig {
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca_pem)).domain_name(SERVER_NAME)
    }

    /// The check every server runs before a call: the job's token, or `Unauthenticated`.
    pub fn authenticator(&self) -> Authenticator {
        Authenticator { expected: format!("Bearer {}", self.token).into_bytes().into() }
    }

    /// What every client adds to its calls: the job's token.
    ///
    /// # Panics
    /// Never: tokens are printable ASCII, checked when the secret was made or read.
    pub fn bearer(&self) -> Bearer {
        let value = MetadataValue::try_from(format!("Bearer {}", self.token))
            .unwrap_or_else(|_| unreachable!("tokens are printable ASCII"));
        Bearer { value }
    }

    /// A lazily connecting TLS endpoint for `address` (`host:port`, `http://host:port` or
    /// `https://host:port`; the scheme is always made `https`).
    ///
    /// # Errors
    /// [`AuthError::Address`] when `address` is not a URL authority.
    pub fn endpoint(&self, address: &str) -> Result<Endpoint, AuthError> {
        let bad = |message: String| AuthError::Address { address: address.to_string(), message };
        let authority = address.strip_prefix("https://").or_else(|| address.strip_prefix("http://")).unwrap_or(address);
        Endpoint::from_shared(format!("https://{}", authority.trim_end_matches('/')))
            .map_err(|e| bad(e.to_string()))?
            .tls_config(self.client_tls())
            .map_err(|e| bad(e.to_string()))
    }
}

/// Installs ring as rustls' process-wide crypto provider unless one is installed already.
///
/// A binary that links rustls with two providers (ring here, aws-lc-rs through object_store or
/// kube) has no default, and rustls' `ServerConfig::builder()` (which tonic's server TLS calls)
/// panics without one. Idempotent; call it before building any TLS server or kube client.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Another thread may install one in between: either provider serves.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Refuses every call that does not carry the job's token. Cheap to clone.
#[derive(Clone)]
pub struct Authenticator {
    expected: std::sync::Arc<[u8]>,
}

impl Authenticator {
    /// Whether `request` carries the job's token.
    pub fn admits<T>(&self, request: &Request<T>) -> bool {
        request.metadata().get("authorization").is_some_and(|value| bool::from(value.as_bytes().ct_eq(&self.expected)))
    }
}

impl Interceptor for Authenticator {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        if self.admits(&request) {
            Ok(request)
        } else {
            Err(Status::unauthenticated("this call needs the job's token (the job's Secret, mounted in its pods)"))
        }
    }
}

/// Adds the job's token to every call. Cheap to clone.
#[derive(Clone)]
pub struct Bearer {
    value: AsciiMetadataValue,
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request.metadata_mut().insert("authorization", self.value.clone());
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_secret_round_trips_through_data_and_files() {
        let secret = JobSecret::generate("demo").expect("generate");
        assert_eq!(secret.token.len(), 64);
        assert_eq!(JobSecret::from_data(&secret.to_data()).expect("from data"), secret);
        let dir = tempfile::tempdir().expect("tempdir");
        let folder = dir.path().join("secret");
        secret.save(&folder).expect("save");
        assert_eq!(JobSecret::load(&folder).expect("load"), secret);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(folder.join(TOKEN_KEY)).expect("stat").permissions().mode();
        assert_eq!(mode & 0o077, 0, "the token is readable by its owner only");
    }

    #[test]
    fn two_jobs_never_share_a_token() {
        let (a, b) = (JobSecret::generate("a").expect("a"), JobSecret::generate("b").expect("b"));
        assert_ne!(a.token, b.token);
        assert_ne!(a.ca_pem, b.ca_pem);
    }

    #[test]
    fn debug_output_redacts_the_token_and_key() {
        let secret = JobSecret::generate("demo").expect("generate");
        let shown = format!("{secret:?}");
        assert!(!shown.contains(&secret.token) && !shown.contains("PRIVATE KEY"), "{shown}");
    }

    #[test]
    fn the_authenticator_admits_only_the_exact_token() {
        let secret = JobSecret::generate("demo").expect("generate");
        let mut auth = secret.authenticator();
        let mut with = |value: Option<&str>| {
            let mut request = Request::new(());
            if let Some(value) = value {
                request.metadata_mut().insert("authorization", value.parse().expect("ascii"));
            }
            auth.call(request).map(|_| ()).map_err(|s| s.code())
        };
        assert_eq!(with(Some(&format!("Bearer {}", secret.token))), Ok(()));
        assert_eq!(with(None), Err(tonic::Code::Unauthenticated));
        assert_eq!(with(Some("Bearer ")), Err(tonic::Code::Unauthenticated));
        let other = JobSecret::generate("other").expect("other");
        assert_eq!(with(Some(&format!("Bearer {}", other.token))), Err(tonic::Code::Unauthenticated));
        let mut bearer = secret.bearer();
        let request = bearer.call(Request::new(())).expect("bearer");
        assert!(secret.authenticator().admits(&request));
    }

    #[test]
    fn broken_parts_are_named() {
        let secret = JobSecret::generate("demo").expect("generate");
        let mut data = secret.to_data();
        data.insert(TOKEN_KEY.into(), b"short".to_vec());
        assert!(matches!(JobSecret::from_data(&data), Err(AuthError::Invalid { key: TOKEN_KEY, .. })));
        let mut data = secret.to_data();
        data.remove(KEY_KEY);
        assert!(matches!(JobSecret::from_data(&data), Err(AuthError::Invalid { key: KEY_KEY, .. })));
    }

    #[test]
    fn endpoints_are_always_https() {
        let secret = JobSecret::generate("demo").expect("generate");
        for address in ["10.0.0.1:7070", "http://10.0.0.1:7070", "https://10.0.0.1:7070/"] {
            let endpoint = secret.endpoint(address).expect("endpoint");
            assert_eq!(endpoint.uri().to_string(), "https://10.0.0.1:7070/", "{address}");
        }
        assert!(secret.endpoint("not an address").is_err());
    }
}
