//! Redaction of credential-looking substrings in text that may reach errors or logs.

/// The replacement for a redacted credential.
const REDACTED: &str = "[REDACTED]";

/// Replaces every API key (`tml-…`) and JWT (`eyJ…`) in `text` with `[REDACTED]`.
///
/// A credential is recognised as a maximal run of token characters starting with one of
/// those prefixes, so the surrounding text (JSON punctuation, prose) is kept.
pub(crate) fn redact_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(is_token_char) {
        out.push_str(&rest[..start]);
        let run = &rest[start..];
        let len = run.find(|c: char| !is_token_char(c)).unwrap_or(run.len());
        let token = &run[..len];
        if looks_like_secret(token) {
            out.push_str(REDACTED);
        } else {
            out.push_str(token);
        }
        rest = &run[len..];
    }
    out.push_str(rest);
    out
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '+' | '/' | '=')
}

fn looks_like_secret(token: &str) -> bool {
    (token.starts_with("tml-") || token.starts_with("eyJ")) && token.len() >= 8
}

#[cfg(test)]
mod tests {
    use super::redact_secrets;

    #[test]
    fn redacts_keys_and_jwts_but_keeps_text() {
        let text = r#"{"detail":"bad key tml-abcdef123456 or eyJhbGciOi.eyJzdWIi.sig"}"#;
        let out = redact_secrets(text);
        assert_eq!(out, r#"{"detail":"bad key [REDACTED] or [REDACTED]"}"#);
        assert_eq!(
            redact_secrets("plain words, tml- short"),
            "plain words, tml- short"
        );
    }
}
