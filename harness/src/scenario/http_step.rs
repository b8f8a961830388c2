//! The steps of a server-role scenario: `http` (a request the gatekeeper sends to the
//! provider's server, signed as SPEC.md §12.1 says unless the step spoils it on purpose) and
//! `expect_http` (what the answer must look like).

use super::raw_step::{OneOrMany, RawExpectHttp, RawHttp};
use super::step::{vars_ok, wait_ok};
use crate::http::signing::{H_NONCE, H_SIGNATURE, H_TIMESTAMP};

/// A request the gatekeeper sends to the provider's server.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpStep {
    pub method: String,
    /// Under the base URL's path prefix; starts with `/`.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    pub json: Option<serde_json::Value>,
    pub signing: Signing,
    /// Send the previous request again unchanged; the other members are then unused.
    pub replay: bool,
}

/// How the step signs its request (SPEC.md §12.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Signing {
    /// The three headers, correct.
    #[default]
    Correct,
    /// No signature headers at all.
    Unsigned,
    /// Correct except for what is spoiled.
    Spoiled {
        skew_s: i64,
        wrong_key: bool,
        /// Lowercase name of a header left out.
        omit: Option<String>,
        signed_body: Option<String>,
        signed_path: Option<String>,
    },
}

/// What the last response must look like.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectHttp {
    /// Acceptable status codes; empty: any.
    pub status: Vec<u16>,
    /// Header values (`*` any present value, `!` absent); names are case-insensitive.
    pub headers: Vec<(String, String)>,
    /// Fields the JSON body must contain (as driver events are matched).
    pub json: Option<serde_json::Value>,
    /// The exact body.
    pub body: Option<String>,
    /// Strings that must not appear in the head or the body (e.g. a secret that must not be
    /// echoed).
    pub body_excludes: Vec<String>,
    /// The response must have arrived within this many milliseconds.
    pub within_ms: Option<u64>,
    /// The body is an identifier proof for the last request's identifier, identity key and
    /// device id, judged as SPEC.md §11 says (the proof hook of Appendix G).
    pub proof: bool,
}

pub(super) fn http_step(h: RawHttp) -> Result<HttpStep, String> {
    const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];
    if h.replay {
        if h.method.is_some()
            || h.path.is_some()
            || !h.headers.is_empty()
            || h.body.is_some()
            || h.json.is_some()
            || h.sign.is_some()
            || h.signature.is_some()
        {
            return Err("http with replay = true takes nothing else: it resends the previous request unchanged".into());
        }
        return Ok(HttpStep {
            method: String::new(),
            path: String::new(),
            headers: Vec::new(),
            body: None,
            json: None,
            signing: Signing::Correct,
            replay: true,
        });
    }
    let method = h.method.ok_or("http needs a method (or replay = true)")?;
    let path = h.path.ok_or("http needs a path (or replay = true)")?;
    if !METHODS.contains(&method.as_str()) {
        return Err(format!(
            "http method {method:?} is not one of {}",
            METHODS.join(", ")
        ));
    }
    if !path.starts_with('/') {
        return Err(format!("http path {path:?} must start with /"));
    }
    if h.body.is_some() && h.json.is_some() {
        return Err("http takes body or json, not both".into());
    }
    vars_ok(&path)?;
    if let Some(b) = &h.body {
        vars_ok(b)?;
    }
    let signing = match (h.sign, h.signature) {
        (Some(false), Some(_)) => {
            return Err("http: sign = false and a signature table contradict each other".into());
        }
        (Some(false), None) => Signing::Unsigned,
        (_, None) => Signing::Correct,
        (_, Some(s)) => {
            let omit = s.omit.map(|o| o.to_ascii_lowercase());
            if let Some(o) = &omit
                && ![H_TIMESTAMP, H_NONCE, H_SIGNATURE].contains(&o.as_str())
            {
                return Err(format!(
                    "signature.omit {o:?} is not one of {H_TIMESTAMP}, {H_NONCE}, {H_SIGNATURE}"
                ));
            }
            for t in s.signed_body.iter().chain(&s.signed_path) {
                vars_ok(t)?;
            }
            Signing::Spoiled {
                skew_s: s.skew_s,
                wrong_key: s.wrong_key,
                omit,
                signed_body: s.signed_body,
                signed_path: s.signed_path,
            }
        }
    };
    Ok(HttpStep {
        method,
        path,
        headers: h.headers.into_iter().collect(),
        body: h.body,
        json: h.json,
        signing,
        replay: false,
    })
}

pub(super) fn expect_http(e: RawExpectHttp) -> Result<ExpectHttp, String> {
    let status = match e.status {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) if v.is_empty() => {
            return Err("expect_http status, when given, names one or more codes".into());
        }
        Some(OneOrMany::Many(v)) => v,
    };
    if status.iter().any(|s| !(100..=599).contains(s)) {
        return Err("expect_http status codes are in 100..=599".into());
    }
    if let Some(ms) = e.within_ms {
        wait_ok(ms)?;
    }
    Ok(ExpectHttp {
        status,
        headers: e
            .headers
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect(),
        json: e.json,
        body: e.body,
        body_excludes: e.body_excludes,
        within_ms: e.within_ms,
        proof: e.proof,
    })
}
