//! Steps towards a provider server (role `server`): launching it on a fresh
//! port, `http` requests and `expect_http` checks.

use std::time::Duration;

use tokio::time::Instant;

use super::Exec;
use crate::http::HttpRequest;
use crate::iut::driver::{DriverProcess, event_matches};
use crate::roles::Deviation;
use crate::scenario::step::{ExpectHttp, HttpStep};
use crate::scenario::vars::Vars;
use crate::transcript::Direction;

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
        let url = server.base_url.replace("${port}", &port.to_string());
        let (host, port) =
            crate::http::client::loopback_authority(&url).map_err(Deviation::error)?;
        if let Some(launch) = &server.launch {
            // A server is not driven: whatever it prints on stdout is read and dropped,
            // so that a chatty server never blocks on a full pipe.
            let (tx, mut rx) = tokio::sync::mpsc::channel(crate::iut::driver::QUEUE);
            tokio::spawn(async move { while rx.recv().await.is_some() {} });
            self.transcript.note(format!(
                "launching the provider server {} at {url}",
                self.iut.name
            ));
            let process =
                DriverProcess::spawn(&launch.with_port(port), &self.token, tx).map_err(|e| {
                    Deviation::inconclusive(format!("the provider server did not start: {e}"))
                })?;
            self.dev().driver = Some(process);
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
        self.http.server_url = Some(url);
        Ok(())
    }

    pub(super) async fn http(&mut self, h: &HttpStep, deadline: Instant) -> Result<(), Deviation> {
        let url = self.http.server_url.clone().ok_or_else(|| {
            Deviation::error("an http step needs a scenario with role = \"server\"")
        })?;
        let sub = |v: &mut Vars, s: &str| v.substitute_raw(s).map_err(Deviation::error);
        let path = sub(&mut self.vars, &h.path)?;
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
        let req = HttpRequest {
            method: h.method.clone(),
            path,
            headers,
            body,
        };
        self.transcript.record(
            Direction::ToIut,
            http_text(
                &format!("{} {} HTTP/1.1", req.method, req.path),
                &req.headers,
                &req.body,
            ),
        );
        let result = crate::http::send(&url, &req, deadline).await;
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
        self.http.last_http = Some(result);
        Ok(())
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
        if !e.status.contains(&r.status) {
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
        for secret in &e.body_excludes {
            let secret = self.vars.substitute_raw(secret).map_err(Deviation::error)?;
            if !secret.is_empty() && body_text.contains(&secret) {
                return Err(Deviation::fail_here(
                    format!("a body without {secret:?}"),
                    cut(&body_text),
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
