//! Steps towards a provider server (role `server`): launching it on a fresh
//! port with the onboarding values of SPEC.md §6.1, `http` requests signed as §12.1 says
//! (or spoiled on purpose), and `expect_http` checks.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::SigningKey;
use rand::Rng;
use tokio::time::Instant;

use super::Exec;
use crate::http::HttpRequest;
use crate::http::client::BaseUrl;
use crate::http::signing::{self, H_NONCE, H_SIGNATURE, H_TIMESTAMP};
use crate::iut::driver::{DriverProcess, event_matches};
use crate::roles::Deviation;
use crate::scenario::step::{ExpectHttp, HttpStep, Signing};
use crate::scenario::vars::Vars;
use crate::transcript::Direction;

/// The harness as an HTTP client of the provider's server.
#[derive(Default)]
pub(super) struct HttpClient {
    /// The provider server's base URL for this scenario, as given and taken apart.
    server_url: Option<String>,
    base: Option<BaseUrl>,
    /// Trusting only the CA that iut.toml names (https base URLs).
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The gatekeeper's request-signing key for this scenario (SPEC.md §12.1).
    key: Option<SigningKey>,
    /// The last request sent, for `replay`.
    last_request: Option<HttpRequest>,
    /// The nonces of the proofs judged so far (IDPROOF-7).
    proof_nonces: Vec<String>,
    /// The response to the last `http` step, or why there is none.
    last_http: Option<Result<crate::http::HttpResponse, String>>,
    /// The provider server's process in a chain scenario (a server scenario keeps it in the
    /// device slot).
    pub(super) server_process: Option<DriverProcess>,
    /// The Idempotency-Key of the last push (a `push` with `repeat` sends it again).
    pub(super) last_push_key: Option<String>,
    /// The CA file trusted for the provider server, as substituted.
    ca_file: Option<String>,
    /// The scenario's `${scratch}` directory, removed with the client.
    scratch: Option<Scratch>,
}

/// A directory made for one scenario (and one use: `what`) and removed when it is dropped.
pub(super) struct Scratch(pub(super) PathBuf);

impl Scratch {
    pub(super) fn new(what: &str, token: &str) -> std::io::Result<Scratch> {
        let dir =
            std::env::temp_dir().join(format!("gatecheck-{what}-{}-{token}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Seconds since the Unix epoch.
pub(super) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Exec<'_> {
    /// Starts the provider's server (when the IUT says how) on a fresh port and
    /// waits until it accepts connections.
    pub(super) async fn launch_server(&mut self) -> Result<(), Deviation> {
        let server = self
            .iut
            .server
            .as_ref()
            .ok_or_else(|| Deviation::error("the IUT has no [server] section"))?;
        let port =
            free_port().map_err(|e| Deviation::error(format!("no free loopback port: {e}")))?;
        let scratch = Scratch::new("scratch", &self.token)
            .map_err(|e| Deviation::error(format!("cannot make the scratch directory: {e}")))?;
        // The gatekeeper's request-signing key: drawn from the scenario's seed, so a rerun
        // signs the same way; its public half is what the server is onboarded with.
        let key = SigningKey::from_bytes(&self.vars.rng().random::<[u8; 32]>());
        let public = STANDARD.encode(key.verifying_key().as_bytes());
        let port_text = port.to_string();
        let scratch_text = scratch.0.to_string_lossy().into_owned();
        let values = [
            ("port", port_text.as_str()),
            ("scratch", scratch_text.as_str()),
            ("gatekeeper_key", public.as_str()),
        ];
        let url = crate::iut::substitute(&server.base_url, &values);
        let base = BaseUrl::parse(&url).map_err(Deviation::error)?;
        let (host, port) = (base.host.clone(), base.port);
        self.http.scratch = Some(scratch);
        self.http.key = Some(key);
        self.set_user_vars()?;
        if let Some(launch) = &server.launch {
            // A server is not driven: whatever it prints on stdout is read and dropped,
            // so that a chatty server never blocks on a full pipe.
            let (tx, mut rx) = tokio::sync::mpsc::channel(crate::iut::driver::QUEUE);
            tokio::spawn(async move { while rx.recv().await.is_some() {} });
            self.transcript.note(format!(
                "launching the provider server {} at {url}",
                self.iut.name
            ));
            let mut launch = launch.with_values(&values);
            launch
                .env
                .insert("GATECHECK_GATEKEEPER_KEY".into(), public.clone());
            let process = DriverProcess::spawn(&launch, &self.token, tx).map_err(|e| {
                Deviation::inconclusive(format!("the provider server did not start: {e}"))
            })?;
            if self.scenario.chain {
                // The client's own driver takes the device slot; the server runs beside it.
                self.http.server_process = Some(process);
            } else {
                self.dev().driver = Some(process);
            }
        }
        let deadline = Instant::now() + self.iut.timeouts.ready();
        loop {
            if tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .is_ok()
            {
                break;
            }
            if let Some(status) = self.dev().driver.as_mut().and_then(|d| d.try_exit_status()) {
                return Err(Deviation::inconclusive(format!(
                    "the provider server exited ({status}) before listening"
                )));
            }
            if Instant::now() >= deadline {
                return Err(Deviation::inconclusive(format!(
                    "the provider server did not accept connections at {url} within {} ms",
                    self.iut.timeouts.ready_ms
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if base.https {
            let ca = server
                .ca
                .as_deref()
                .map(|c| crate::iut::substitute(c, &values))
                .ok_or_else(|| Deviation::error("an https:// base_url needs [server] ca"))?;
            let pem = std::fs::read_to_string(&ca).map_err(|e| {
                Deviation::inconclusive(format!(
                    "cannot read the provider server's CA {ca} (iut.toml [server] ca): {e}"
                ))
            })?;
            let tls = crate::http::client::tls_config(&pem).map_err(|e| {
                Deviation::inconclusive(format!("the provider server's CA {ca} is unusable: {e}"))
            })?;
            self.http.tls = Some(tls);
            self.http.ca_file = Some(ca);
        }
        self.transcript.note(format!(
            "the gatekeeper's request-signing public key for this scenario: {public}"
        ));
        self.http.server_url = Some(url);
        self.http.base = Some(base);
        Ok(())
    }

    /// `GATECHECK_PROVIDER_URL` and `GATECHECK_PROVIDER_CA` (the PEM file) for the clients of
    /// a chain scenario, once its server runs; nothing otherwise.
    pub(super) fn provider_env(&self) -> Vec<(String, String)> {
        match (&self.http.server_url, &self.http.ca_file) {
            (Some(url), Some(ca)) if self.scenario.chain => vec![
                ("GATECHECK_PROVIDER_URL".into(), url.clone()),
                ("GATECHECK_PROVIDER_CA".into(), ca.clone()),
            ],
            _ => Vec::new(),
        }
    }

    /// The provider server's base URL, the TLS settings that trust its CA, and the
    /// gatekeeper's request-signing key, for calls the gatekeeper makes on its own (the token
    /// check of an enrollment).
    pub(super) fn provider_target(
        &self,
    ) -> Option<(String, Option<Arc<rustls::ClientConfig>>, SigningKey)> {
        Some((
            self.http.server_url.clone()?,
            self.http.tls.clone(),
            self.http.key.clone()?,
        ))
    }

    /// The PEM of the CA trusted for the provider server, read again from its file.
    pub(super) fn provider_ca_pem(&self) -> Option<String> {
        std::fs::read_to_string(self.http.ca_file.as_ref()?).ok()
    }

    /// The body of the last request sent.
    pub(super) fn http_last_request_body(&self) -> Option<Vec<u8>> {
        self.http.last_request.as_ref().map(|r| r.body.clone())
    }

    /// Whether a proof with this nonce was judged before in the scenario; remembers it.
    pub(super) fn http_nonce_seen(&mut self, nonce: &str) -> bool {
        if self.http.proof_nonces.iter().any(|n| n == nonce) {
            return true;
        }
        self.http.proof_nonces.push(nonce.to_string());
        false
    }

    /// `${user.*}` and `${user2.*}`: the first two test users of iut.toml's onboarding.
    fn set_user_vars(&mut self) -> Result<(), Deviation> {
        let users = self
            .iut
            .onboarding
            .as_ref()
            .map(|o| o.users.as_slice())
            .unwrap_or_default();
        if users.is_empty() {
            return Err(Deviation::inconclusive(
                "iut.toml lists no [[onboarding.users]]: a server scenario acts for a test user of the provider (SPEC.md §6.1)",
            ));
        }
        for (prefix, u) in ["user", "user2"].iter().zip(users) {
            self.vars
                .set(&format!("{prefix}.identifier"), u.identifier.clone());
            self.vars.set(&format!("{prefix}.token"), u.token.clone());
            self.vars
                .set(&format!("{prefix}.device_id"), u.device_id.to_string());
            if let Some(t) = &u.expired_token {
                self.vars.set(&format!("{prefix}.expired_token"), t.clone());
            }
            if let Some(t) = &u.revoked_token {
                self.vars.set(&format!("{prefix}.revoked_token"), t.clone());
            }
        }
        Ok(())
    }

    pub(super) async fn http(&mut self, h: &HttpStep, deadline: Instant) -> Result<(), Deviation> {
        let url = self.http.server_url.clone().ok_or_else(|| {
            Deviation::error("an http step needs a scenario with role = \"server\"")
        })?;
        let req = if h.replay {
            self.http.last_request.clone().ok_or_else(|| {
                Deviation::error("http with replay = true needs an http step before it")
            })?
        } else {
            self.build_request(h)?
        };
        self.transcript.record(
            Direction::ToIut,
            http_text(
                &format!("{} {} HTTP/1.1", req.method, req.path),
                &req.headers,
                &req.body,
            ),
        );
        let result = crate::http::send(&url, &req, deadline, self.http.tls.as_ref()).await;
        match &result {
            Ok(r) => self.transcript.record(
                Direction::FromIut,
                http_text(
                    &format!("HTTP/1.1 {} ({} ms)", r.status, r.elapsed.as_millis()),
                    &r.headers,
                    &r.body,
                ),
            ),
            Err(e) => self.transcript.note(format!("HTTP request failed: {e}")),
        }
        self.http.last_request = Some(req);
        self.http.last_http = Some(result);
        Ok(())
    }

    /// The request of an `http` step: path under the base URL's prefix, body, and the
    /// signature headers of SPEC.md §12.1 (correct, absent or spoiled as the step says).
    fn build_request(&mut self, h: &HttpStep) -> Result<HttpRequest, Deviation> {
        let sub = |v: &mut Vars, s: &str| v.substitute_raw(s).map_err(Deviation::error);
        let base = self.http.base.clone().ok_or_else(|| {
            Deviation::error("an http step needs a scenario with role = \"server\"")
        })?;
        // The time the signature states, also offered to the body as ${http.timestamp}.
        let skew = match &h.signing {
            Signing::Spoiled { skew_s, .. } => *skew_s,
            _ => 0,
        };
        let timestamp = unix_now().saturating_add_signed(skew);
        self.vars.set("http.timestamp", timestamp.to_string());
        let path = base.target(&sub(&mut self.vars, &h.path)?);
        let mut headers = Vec::with_capacity(h.headers.len() + 1);
        for (k, v) in &h.headers {
            headers.push((k.clone(), sub(&mut self.vars, v)?));
        }
        let body = match (&h.body, &h.json) {
            (Some(b), _) => sub(&mut self.vars, b)?.into_bytes(),
            (None, Some(j)) => {
                if !headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                {
                    headers.push(("content-type".into(), "application/json".into()));
                }
                self.vars
                    .substitute_json(j)
                    .map_err(Deviation::error)?
                    .to_string()
                    .into_bytes()
            }
            (None, None) => Vec::new(),
        };
        if h.signing != Signing::Unsigned {
            let key =
                self.http.key.clone().ok_or_else(|| {
                    Deviation::error("no request-signing key (server not launched)")
                })?;
            let (key, signed_body, signed_path, omit) = match &h.signing {
                Signing::Spoiled {
                    wrong_key,
                    signed_body,
                    signed_path,
                    omit,
                    ..
                } => {
                    let key = if *wrong_key {
                        SigningKey::from_bytes(&self.vars.rng().random::<[u8; 32]>())
                    } else {
                        key
                    };
                    let b = match signed_body {
                        Some(b) => Some(sub(&mut self.vars, b)?.into_bytes()),
                        None => None,
                    };
                    let p = match signed_path {
                        Some(p) => Some(base.target(&sub(&mut self.vars, p)?)),
                        None => None,
                    };
                    (key, b, p, omit.clone())
                }
                _ => (key, None, None, None),
            };
            let nonce: [u8; 16] = self.vars.rng().random();
            let sig = signing::sign(
                &key,
                &h.method,
                signed_path.as_deref().unwrap_or(&path),
                timestamp,
                nonce,
                signed_body.as_deref().unwrap_or(&body),
            );
            for (name, value) in sig.pairs() {
                let lower = name.to_ascii_lowercase();
                debug_assert!([H_TIMESTAMP, H_NONCE, H_SIGNATURE].contains(&lower.as_str()));
                if omit.as_deref() != Some(lower.as_str()) {
                    headers.push((name.to_string(), value));
                }
            }
        }
        Ok(HttpRequest {
            method: h.method.clone(),
            path,
            headers,
            body,
        })
    }

    pub(super) fn expect_http(&mut self, e: &ExpectHttp) -> Result<(), Deviation> {
        let r = match &self.http.last_http {
            None => return Err(Deviation::error("expect_http needs an http step before it")),
            Some(Err(why)) => {
                return Err(Deviation::fail_here(
                    format!("an HTTP response with status {:?}", e.status),
                    why.clone(),
                ));
            }
            Some(Ok(r)) => r.clone(),
        };
        let body_text = String::from_utf8_lossy(&r.body).into_owned();
        if !e.status.is_empty() && !e.status.contains(&r.status) {
            return Err(Deviation::fail_here(
                format!("status {:?}", e.status),
                format!("status {}: {}", r.status, cut(&body_text)),
            ));
        }
        if let Some(ms) = e.within_ms
            && r.elapsed.as_millis() > u128::from(ms)
        {
            return Err(Deviation::fail_here(
                format!("a response within {ms} ms"),
                format!("{} ms", r.elapsed.as_millis()),
            ));
        }
        for (name, want) in &e.headers {
            let want = self.vars.substitute_raw(want).map_err(Deviation::error)?;
            match (want.as_str(), r.header(name)) {
                ("!", None) | ("*", Some(_)) => {}
                ("!", Some(v)) => {
                    return Err(Deviation::fail_here(
                        format!("no {name} header"),
                        format!("{name}: {v}"),
                    ));
                }
                (w, Some(v)) if w == v => {}
                // `media:TYPE`: the media type, without parameters, case-insensitively
                // (RFC 9110 §8.3.1): `application/json; charset=utf-8` is application/json.
                (w, Some(v))
                    if w.strip_prefix("media:").is_some_and(|t| {
                        v.split(';')
                            .next()
                            .unwrap_or("")
                            .trim()
                            .eq_ignore_ascii_case(t)
                    }) => {}
                (w, got) => {
                    return Err(Deviation::fail_here(
                        format!("{name}: {w}"),
                        format!("{name}: {}", got.unwrap_or("(absent)")),
                    ));
                }
            }
        }
        if let Some(want) = &e.body {
            let want = self.vars.substitute_raw(want).map_err(Deviation::error)?;
            if want != body_text {
                return Err(Deviation::fail_here(
                    format!("body {want:?}"),
                    format!("body {:?}", cut(&body_text)),
                ));
            }
        }
        if let Some(want) = &e.json {
            let want = self.vars.substitute_json(want).map_err(Deviation::error)?;
            let got: serde_json::Value = serde_json::from_slice(&r.body).map_err(|err| {
                Deviation::fail_here(
                    format!("a JSON body containing {want}"),
                    format!("not JSON ({err}): {}", cut(&body_text)),
                )
            })?;
            event_matches(&want, &got).map_err(|m| {
                Deviation::fail_here(
                    format!("a JSON body containing {want}"),
                    format!("{m} in {}", cut(&body_text)),
                )
            })?;
        }
        if e.proof {
            self.expect_proof(&r)?;
        }
        for secret in &e.body_excludes {
            let secret = self.vars.substitute_raw(secret).map_err(Deviation::error)?;
            if secret.is_empty() {
                continue;
            }
            if body_text.contains(&secret) {
                return Err(Deviation::fail_here(
                    format!("a body without {secret:?}"),
                    cut(&body_text),
                ));
            }
            if let Some((k, v)) = r.headers.iter().find(|(_, v)| v.contains(&secret)) {
                return Err(Deviation::fail_here(
                    format!("response headers without {secret:?}"),
                    format!("{k}: {}", cut(v)),
                ));
            }
        }
        Ok(())
    }
}

/// A loopback port that was free a moment ago (for a server IUT to listen on).
fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}

/// An HTTP message as the transcript shows it.
fn http_text(first: &str, headers: &[(String, String)], body: &[u8]) -> String {
    let mut t = String::from(first);
    for (k, v) in headers {
        t.push_str(&format!("\n{k}: {v}"));
    }
    t.push_str("\n\n");
    t.push_str(&String::from_utf8_lossy(body));
    t
}

/// At most 300 characters of a body, for failure messages.
pub(super) fn cut(s: &str) -> String {
    if s.chars().count() > 300 {
        format!("{}…", s.chars().take(300).collect::<String>())
    } else {
        s.to_string()
    }
}
