//! The API key: read from the environment variable its Secret reference names, and never
//! printed (its `Debug` is redacted, and no message quotes it).

use reqwest::header::HeaderValue;
use weir_crds::LlmSecretRef;

/// An API key, sent only as `Authorization: Bearer` to the step's endpoint.
#[derive(Clone)]
pub struct ApiKey {
    header: HeaderValue,
    /// The key itself, to strike from what a server says back.
    raw: String,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(redacted)")
    }
}

impl ApiKey {
    /// The `Authorization` header value, marked sensitive (kept out of HTTP/2 header tables).
    pub fn bearer(&self) -> HeaderValue {
        self.header.clone()
    }

    /// `text` (a server's error message) with every copy of the key replaced by `[redacted]`.
    pub fn redact(&self, text: &str) -> String {
        text.replace(&self.raw, "[redacted]")
    }
}

/// The key `secret` names, from the environment variable [`LlmSecretRef::env_name`].
///
/// # Errors
/// What to set when the variable is missing or empty, or why its value cannot be a header; the
/// message names the variable and the Secret, never the value.
pub fn api_key(secret: &LlmSecretRef) -> Result<ApiKey, String> {
    api_key_from(secret, std::env::var(secret.env_name()).ok())
}

fn api_key_from(secret: &LlmSecretRef, value: Option<String>) -> Result<ApiKey, String> {
    let variable = secret.env_name();
    let value = value.map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).ok_or_else(|| {
        format!(
            "{variable} is not set: it holds key `{}` of Secret `{}` (the operator sets it in workers; for `weir run`, export it)",
            secret.key, secret.name
        )
    })?;
    let mut header = HeaderValue::from_str(&format!("Bearer {value}"))
        .map_err(|_| format!("{variable} holds characters an HTTP header cannot carry"))?;
    header.set_sensitive(true);
    Ok(ApiKey { header, raw: value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_key_names_the_variable_and_a_key_never_shows() {
        let secret = LlmSecretRef { name: "openai".into(), key: "api-key".into() };
        let missing = api_key_from(&secret, None).expect_err("missing");
        assert!(
            missing.starts_with("WEIR_SECRET_OPENAI__API_KEY is not set: it holds key `api-key` of Secret `openai`")
        );
        let key = api_key_from(&secret, Some("sk-123\n".into())).expect("key");
        assert_eq!(format!("{key:?}"), "ApiKey(redacted)");
        assert_eq!(key.bearer(), "Bearer sk-123");
        assert!(key.bearer().is_sensitive());
        assert_eq!(
            key.redact("Incorrect API key provided: sk-123. Bearer sk-123"),
            "Incorrect API key provided: [redacted]. Bearer [redacted]"
        );
        let bad = api_key_from(&secret, Some("sk\u{7f}x".into())).expect_err("not a header");
        assert!(!bad.contains("sk"), "{bad}");
    }
}
