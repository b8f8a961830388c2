//! `PLAIN-IDPROOF`: the profile's SASL mechanism (RFC 4422 §3 lets a protocol define new
//! ones) that carries the identifier proof inside the SASL exchange itself.
//!
//! Its only message is the client's initial response, PLAIN's three fields (RFC 4616) and a
//! fourth one, all separated by NUL:
//!
//! ```text
//! authzid NUL authcid NUL password NUL proof-json
//! ```
//!
//! with `authzid` empty, `authcid` the account, `password` the enrolled credential and
//! `proof-json` the compact JSON proof of SPEC §11.3. Keeping the proof inside the SASL
//! message (rather than beside it in the XML) means whatever authenticates the credential
//! sees the proof too, under the same base64 and the same size limit.

/// The mechanism's name, as offered in `<mechanisms/>` and chosen in `<auth mechanism=…>`.
pub const MECHANISM: &str = "PLAIN-IDPROOF";
/// Largest message [`parse`] reads. A credential and a proof take well under 1 KiB each; the
/// bound refuses messages sent only to cost the server memory.
pub const MAX_MESSAGE: usize = 16 * 1024;

/// The initial response (before base64) for `account` and `credential` with the proof
/// `proof_json`; the authorization identity is empty.
pub fn initial_response(account: &str, credential: &str, proof_json: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 + account.len() + credential.len() + proof_json.len());
    out.push(0);
    out.extend_from_slice(account.as_bytes());
    out.push(0);
    out.extend_from_slice(credential.as_bytes());
    out.push(0);
    out.extend_from_slice(proof_json.as_bytes());
    out
}

/// The four fields of a `PLAIN-IDPROOF` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub authzid: String,
    pub authcid: String,
    pub password: String,
    /// The proof's JSON text; empty when the client sent none, which the caller answers
    /// with `proof_missing` (the SASL message itself is still well formed).
    pub proof: Vec<u8>,
}

/// Splits a decoded initial response into its fields: exactly three NULs, every field UTF-8,
/// account and password non-empty, the whole at most [`MAX_MESSAGE`] bytes. The error says
/// what is wrong, for the log; the wire answer is `<not-authorized/>` whatever it is.
pub fn parse(message: &[u8]) -> Result<Parsed, String> {
    if message.len() > MAX_MESSAGE {
        return Err(format!(
            "the message is {} bytes, more than the {MAX_MESSAGE} allowed",
            message.len()
        ));
    }
    let fields: Vec<&[u8]> = message.split(|&b| b == 0).collect();
    let [authzid, authcid, password, proof] = fields.as_slice() else {
        return Err(format!(
            "a {MECHANISM} message has 4 fields separated by 3 NULs, this one has {} NUL(s)",
            fields.len() - 1
        ));
    };
    let text = |name: &str, bytes: &[u8]| -> Result<String, String> {
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("the {name} is not UTF-8"))
    };
    let parsed = Parsed {
        authzid: text("authorization identity", authzid)?,
        authcid: text("authentication identity", authcid)?,
        password: text("password", password)?,
        proof: text("proof", proof)?.into_bytes(),
    };
    if parsed.authcid.is_empty() {
        return Err("the authentication identity is empty".into());
    }
    if parsed.password.is_empty() {
        return Err("the password is empty".into());
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let msg = initial_response("u7f3k2q9", "s3cret", "{\"v\":1}");
        assert_eq!(msg, b"\0u7f3k2q9\0s3cret\0{\"v\":1}");
        let p = parse(&msg).unwrap();
        assert_eq!(p.authzid, "");
        assert_eq!(p.authcid, "u7f3k2q9");
        assert_eq!(p.password, "s3cret");
        assert_eq!(p.proof, b"{\"v\":1}");
    }

    #[test]
    fn empty_proof_is_well_formed() {
        let p = parse(b"\0acct\0pw\0").unwrap();
        assert!(p.proof.is_empty());
    }

    #[test]
    fn refusals() {
        // Plain PLAIN (two NULs) and one NUL too many.
        assert!(parse(b"\0acct\0pw").unwrap_err().contains("2 NUL"));
        assert!(parse(b"\0acct\0pw\0{}\0").unwrap_err().contains("4 NUL"));
        assert!(parse(b"").unwrap_err().contains("0 NUL"));
        assert!(parse(b"\0\0pw\0{}").unwrap_err().contains("authentication"));
        assert!(parse(b"\0acct\0\0{}").unwrap_err().contains("password"));
        assert!(parse(b"\0ac\xffct\0pw\0{}").unwrap_err().contains("UTF-8"));
        assert!(parse(b"\0acct\0pw\0{\xc3}").unwrap_err().contains("proof"));
        let big = initial_response("acct", "pw", &"x".repeat(MAX_MESSAGE));
        assert!(parse(&big).unwrap_err().contains("more than"));
        let fits = initial_response("a", "p", &"x".repeat(MAX_MESSAGE - 5));
        assert_eq!(fits.len(), MAX_MESSAGE);
        assert!(parse(&fits).is_ok());
    }
}
