//! The media steps of a server scenario (SPEC.md §14, Appendix G.1): objects stored through
//! the provider server's media hook, fetched through the gatekeeper's media proxy, and the
//! server's clock moved through its clock hook; and, in a chain scenario, the object a
//! client shared fetched from its own provider's host.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use tokio::time::Instant;

use super::Exec;
use super::media_files::{self as files, Digested};
use super::media_post::post;
use crate::media::files::{ObjectBody, ReadPlan, Transfer};
use crate::media::proxy::{MediaProxy, ProxyConfig};
use crate::media::sink::Sink;
use crate::roles::Deviation;
use crate::scenario::media_step::{Availability, ClockMark, MAX_OBJECT};
use sha2::{Digest, Sha256};

/// The hook paths of SPEC.md Appendix G.1.
const MEDIA_HOOK: &str = "/gatecheck-test/v1/media";
const CLOCK_HOOK: &str = "/gatecheck-test/v1/clock";
/// MEDIA-8's minimum and MEDIA-9's retention, in seconds.
const DAY_S: u64 = 86_400;
const FORTNIGHT_S: u64 = 14 * DAY_S;

/// MEDIA-5: exactly the object stored.
pub(super) const EXACT: &str = "MEDIA-5";

mod req {
    pub const URL: &str = "MEDIA-4";
    pub const EXACT: &str = super::EXACT;
    pub const MINIMUM: &str = "MEDIA-8";
    pub const GONE: &str = "MEDIA-10";
    pub const NO_REDIRECT: &str = "MEDIA-22";
    pub const SIZE_LIMIT: &str = "MEDIA-23";
}

/// An object stored on the provider's host.
pub(super) struct Stored {
    pub url: String,
    /// The object's bytes, as sent.
    pub path: PathBuf,
    pub file: Digested,
}

impl Exec<'_> {
    /// The provider server's base URL and the TLS settings that trust its CA.
    fn provider(&self) -> Result<(String, Option<Arc<rustls::ClientConfig>>), Deviation> {
        match self.provider_target() {
            Some((url, tls, _)) => Ok((url, tls)),
            None => Err(Deviation::error(
                "a media host step needs the provider server (role = \"server\" or a chain)",
            )),
        }
    }

    /// `media_store`: an object of `size` random bytes through the media hook.
    pub(super) async fn media_store(
        &mut self,
        size: u64,
        name: &str,
        status: u16,
        deadline: Instant,
    ) -> Result<(), Deviation> {
        let (base, tls) = self.provider()?;
        let seed = rand::RngCore::next_u64(self.vars.rng());
        let dir = self.media.dir(&self.token)?;
        let path = files::path_in(&dir, name, "stored");
        let write_to = path.clone();
        let file = files::blocking(move || files::write_file(&write_to, size, seed))
            .await
            .map_err(Deviation::error)?
            .map_err(|e| Deviation::error(format!("cannot write the object: {e}")))?;
        let url = format!("{}{MEDIA_HOOK}", base.trim_end_matches('/'));
        let body = ObjectBody::file(
            ReadPlan {
                path: path.clone(),
                send: size,
                flip_at: None,
                cut: false,
            },
            size,
            Arc::new(Transfer::default()),
        );
        let headers = [
            ("content-type", "application/octet-stream".to_string()),
            ("content-length", size.to_string()),
        ];
        let answer = post(&url, tls.as_ref(), &headers, body, deadline).await;
        self.transcript.note(format!(
            "POST {url} ({size} bytes): {}",
            match &answer {
                Ok((s, b)) => format!("{s} {}", String::from_utf8_lossy(b)),
                Err(e) => e.clone(),
            }
        ));
        let (got, body) = match answer {
            Ok(a) => a,
            // A server refusing an oversized object may close before it read the body.
            Err(e) if status == 413 => {
                return Err(Deviation::fail(
                    req::SIZE_LIMIT,
                    format!("413 for an object of {size} bytes (over {MAX_OBJECT})"),
                    format!("no answer: {e}"),
                ));
            }
            Err(e) => return Err(Deviation::fail_here("201 from the media hook", e)),
        };
        if got == 404 && status != 404 {
            return Err(Deviation::inconclusive(format!(
                "the provider server has no media hook ({MEDIA_HOOK} answered 404, SPEC.md Appendix G.1)"
            )));
        }
        if status == 413 {
            return if got == 413 {
                Ok(())
            } else {
                Err(Deviation::fail(
                    req::SIZE_LIMIT,
                    format!("413 for an object of {size} bytes (over {MAX_OBJECT})"),
                    format!("{got} {}", String::from_utf8_lossy(&body)),
                ))
            };
        }
        if got != 201 {
            return Err(Deviation::fail_here(
                "201 with the object's URL from the media hook",
                format!("{got} {}", String::from_utf8_lossy(&body)),
            ));
        }
        let object_url = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("url")?.as_str().map(str::to_string))
            .ok_or_else(|| {
                Deviation::fail_here(
                    "201 with {\"url\": …} (SPEC.md Appendix G.1)",
                    String::from_utf8_lossy(&body).into_owned(),
                )
            })?;
        let others: HashSet<String> = self
            .media
            .stored
            .values()
            .filter_map(|s| url_token(&s.url))
            .collect();
        self.judge_url(&object_url, &others)?;
        self.media.stored.insert(
            name.to_string(),
            Stored {
                url: object_url,
                path,
                file,
            },
        );
        Ok(())
    }

    /// MEDIA-4: an `https` URL whose path carries a fresh random token and no user data.
    fn judge_url(&self, url: &str, others: &HashSet<String>) -> Result<(), Deviation> {
        let fail = |what: &str| Deviation::fail(req::URL, what.to_string(), url.to_string());
        let Some(rest) = url.strip_prefix("https://") else {
            return Err(fail("an https:// media URL"));
        };
        let path = rest.split_once('/').map(|(_, p)| p).unwrap_or_default();
        let path = path.split(['?', '#']).next().unwrap_or_default();
        let Some(token) = url_token(url) else {
            return Err(fail(
                "a path segment of at least 22 base64url characters or 32 hex digits (128 random bits, SPEC.md §14.1)",
            ));
        };
        if others.contains(&token) {
            return Err(fail("a token not used in another object's URL"));
        }
        if path
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains('.'))
        {
            return Err(fail("no file name extension in a media URL"));
        }
        let lower = url.to_ascii_lowercase();
        for user in self
            .iut
            .onboarding
            .as_ref()
            .map(|o| o.users.as_slice())
            .unwrap_or_default()
        {
            let digits = user.identifier.trim_start_matches('+');
            if lower.contains(&user.identifier.to_ascii_lowercase())
                || (digits.len() >= 6 && lower.contains(digits))
            {
                return Err(fail("no user identifier in a media URL"));
            }
        }
        Ok(())
    }

    /// `media_fetch`: the object through the gatekeeper's media proxy.
    pub(super) async fn media_fetch(
        &mut self,
        name: &str,
        expect: Availability,
        range: Option<(u64, u64)>,
        guess: bool,
        deadline: Instant,
    ) -> Result<(), Deviation> {
        let stored = self.media.stored.get(name).ok_or_else(|| {
            Deviation::error(format!("media_fetch: no object named {name} was stored"))
        })?;
        let url = if guess {
            guessed(&stored.url).ok_or_else(|| Deviation::error("no token to change"))?
        } else {
            stored.url.clone()
        };
        let (path, file) = (stored.path.clone(), stored.file.clone());
        let fetched = self.proxy_fetch(&url, range, deadline).await?;
        match expect {
            Availability::Gone => match fetched.status {
                404 | 410 => Ok(()),
                s if (300..400).contains(&s) => Err(Deviation::fail(
                    req::NO_REDIRECT,
                    "404 or 410, never a redirect",
                    format!("{s} for {url}"),
                )),
                s => Err(Deviation::fail(
                    req::GONE,
                    "404 or 410 for an object that is expired or never existed",
                    format!("{s} for {url}"),
                )),
            },
            Availability::Served => {
                if let Some(d) = fetched.deviations.into_iter().next() {
                    return Err(d);
                }
                match (fetched.status, range) {
                    (200, _) => {
                        if fetched.size != file.size || fetched.sha256 != file.sha256 {
                            return Err(Deviation::fail(
                                req::EXACT,
                                format!(
                                    "exactly the object stored ({} bytes, SHA-256 {})",
                                    file.size, file.sha256
                                ),
                                format!("{} bytes, SHA-256 {}", fetched.size, fetched.sha256),
                            ));
                        }
                        Ok(())
                    }
                    (206, Some((first, last))) => {
                        let want = files::blocking(move || files::digest_range(&path, first, last))
                            .await
                            .map_err(Deviation::error)?
                            .map_err(|e| Deviation::error(e.to_string()))?;
                        if fetched.size != want.size || fetched.sha256 != want.sha256 {
                            return Err(Deviation::fail(
                                "MEDIA-17",
                                format!("bytes {first}-{last} of the object in a 206"),
                                format!("{} bytes, SHA-256 {}", fetched.size, fetched.sha256),
                            ));
                        }
                        Ok(())
                    }
                    (s, _) if (300..400).contains(&s) => Err(Deviation::fail(
                        req::NO_REDIRECT,
                        "the object, not a redirect",
                        format!("{s} for {url}"),
                    )),
                    (s, _) => Err(Deviation::fail_here(
                        format!("200 with the object stored at {url}"),
                        format!("{s}"),
                    )),
                }
            }
        }
    }

    /// `media_clock`: the provider server's clock moved to `offset_s` from a mark.
    pub(super) async fn media_clock(
        &mut self,
        to: ClockMark,
        offset_s: i64,
        deadline: Instant,
    ) -> Result<(), Deviation> {
        let mark = match to {
            ClockMark::Day => DAY_S,
            ClockMark::Fortnight => FORTNIGHT_S,
            ClockMark::Retention => {
                let declared = self.declared_retention().ok_or_else(|| {
                    Deviation::inconclusive(
                        "iut.toml declares no [server] media_retention_s (SPEC.md §14.3)",
                    )
                })?;
                if declared < DAY_S {
                    return Err(Deviation::fail(
                        req::MINIMUM,
                        format!("a declared retention of at least {DAY_S} s (24 hours)"),
                        format!("media_retention_s = {declared}"),
                    ));
                }
                declared
            }
        };
        let target = mark.saturating_add_signed(offset_s);
        let advance = target.checked_sub(self.media.advanced_s).ok_or_else(|| {
            Deviation::error(format!(
                "media_clock: the clock is already {} s on; it cannot go back to {target} s",
                self.media.advanced_s
            ))
        })?;
        let (base, tls) = self.provider()?;
        let url = format!("{}{CLOCK_HOOK}", base.trim_end_matches('/'));
        let json = serde_json::json!({ "advance_s": advance }).to_string();
        let headers = [
            ("content-type", "application/json".to_string()),
            ("content-length", json.len().to_string()),
        ];
        let body = Full::new(Bytes::from(json.clone()));
        let (status, answer) = post(&url, tls.as_ref(), &headers, body, deadline)
            .await
            .map_err(|e| Deviation::fail_here("204 from the clock hook", e))?;
        self.transcript.note(format!("POST {url} {json}: {status}"));
        match status {
            204 | 200 => {
                self.media.advanced_s = target;
                Ok(())
            }
            404 => Err(Deviation::inconclusive(format!(
                "the provider server has no clock hook ({CLOCK_HOOK} answered 404, SPEC.md Appendix G.1)"
            ))),
            s => Err(Deviation::fail_here(
                "204 from the clock hook",
                format!("{s} {}", String::from_utf8_lossy(&answer)),
            )),
        }
    }
}

/// What a fetch through the gatekeeper's media proxy found.
pub(super) struct ProxyFetched {
    pub status: u16,
    /// Body bytes and their SHA-256.
    pub size: u64,
    pub sha256: String,
    /// What the proxy found wrong in the host's answer, each naming its requirement.
    pub deviations: Vec<Deviation>,
}

impl Exec<'_> {
    /// iut.toml's `[server] media_retention_s`.
    fn declared_retention(&self) -> Option<u64> {
        self.iut.server.as_ref().and_then(|s| s.media_retention_s)
    }

    /// The gatekeeper's media proxy, started on first use, trusting only the provider's CA.
    async fn media_proxy(&mut self) -> Result<&MediaProxy, Deviation> {
        if self.media.proxy.is_none() {
            let pem = self.provider_ca_pem().ok_or_else(|| {
                Deviation::error("the media proxy needs the provider server's CA ([server] ca)")
            })?;
            let proxy = MediaProxy::start(ProxyConfig::new(&pem))
                .await
                .map_err(|e| Deviation::error(format!("the media proxy did not start: {e}")))?;
            self.transcript
                .note(format!("gatekeeper media proxy at {}", proxy.base_url()));
            self.media.proxy = Some(proxy);
        }
        self.media
            .proxy
            .as_ref()
            .ok_or_else(|| Deviation::error("no media proxy"))
    }

    /// The object at `url` through the gatekeeper's media proxy, into `sink`: the
    /// provider's status and what the proxy found wrong in its answer.
    async fn fetch_into(
        &mut self,
        url: &str,
        range: Option<(u64, u64)>,
        sink: &mut dyn Sink,
        deadline: Instant,
    ) -> Result<ProxyFetched, Deviation> {
        let range = range.map(|(a, b)| format!("bytes={a}-{b}"));
        let proxy = self.media_proxy().await?;
        let got = tokio::time::timeout_at(deadline, proxy.fetch(url, range.as_deref(), sink))
            .await
            .map_err(|_| {
                Deviation::fail_here(
                    format!("the object at {url} before the step's deadline"),
                    "the transfer through the media proxy was still going",
                )
            })?
            .map_err(|e| Deviation::error(format!("the media proxy: {e}")))?;
        let (fetched, record) = got;
        let record = record.ok_or_else(|| Deviation::error("the media proxy kept no record"))?;
        self.transcript.note(format!(
            "media proxy GET {url}{}: provider {} {:?}, {} bytes, {:?}",
            range.map(|r| format!(" (range {r})")).unwrap_or_default(),
            record
                .upstream_status
                .map_or("no answer".to_string(), |s| s.to_string()),
            record.upstream_headers,
            record.delivered,
            record.outcome
        ));
        let Some(status) = record.upstream_status else {
            return Err(Deviation::fail_here(
                format!("an answer from the provider's media host for {url}"),
                format!("{:?}", record.outcome),
            ));
        };
        if matches!(status, 200 | 206) && !fetched.complete() {
            return Err(Deviation::fail(
                req::EXACT,
                format!("the whole object at {url}, as its Content-Length announces"),
                format!(
                    "{} bytes, then {}",
                    fetched.bytes,
                    fetched.body_error.unwrap_or_default()
                ),
            ));
        }
        Ok(ProxyFetched {
            status,
            size: fetched.bytes,
            sha256: String::new(),
            deviations: record.deviations,
        })
    }

    /// The object at `url` through the gatekeeper's media proxy, hashed.
    pub(super) async fn proxy_fetch(
        &mut self,
        url: &str,
        range: Option<(u64, u64)>,
        deadline: Instant,
    ) -> Result<ProxyFetched, Deviation> {
        let mut hash = Sha256::new();
        let mut got = self.fetch_into(url, range, &mut hash, deadline).await?;
        got.sha256 = crate::media::aesgcm::hex_lower(&hash.finalize());
        Ok(got)
    }

    /// The object a client shared, fetched from its own provider's host through the media
    /// proxy into a file (a chain scenario): the host is judged as in `media_fetch`.
    pub(super) async fn fetch_shared(
        &mut self,
        url: &str,
        name: &str,
        deadline: Instant,
    ) -> Result<PathBuf, Deviation> {
        let others: HashSet<String> = self
            .media
            .stored
            .values()
            .filter_map(|s| url_token(&s.url))
            .collect();
        self.judge_url(url, &others)?;
        let dir = self.media.dir(&self.token)?;
        let path = files::path_in(&dir, name, "fetched");
        let mut file = std::fs::File::create(&path)
            .map_err(|e| Deviation::error(format!("{}: {e}", path.display())))?;
        let got = self.fetch_into(url, None, &mut file, deadline).await?;
        if let Some(d) = got.deviations.into_iter().next() {
            return Err(d);
        }
        if got.status != 200 {
            return Err(Deviation::fail(
                req::EXACT,
                format!("200 with the object the client uploaded, at {url}"),
                got.status.to_string(),
            ));
        }
        Ok(path)
    }
}

/// The random token of a media URL: its longest path segment of base64url characters, if
/// that is at least 22 long, or of hex digits, if at least 32 (SPEC.md §14.1).
pub(super) fn url_token(url: &str) -> Option<String> {
    let rest = url.split_once("://").map(|(_, r)| r)?;
    let path = rest.split_once('/').map(|(_, p)| p)?;
    let path = path.split(['?', '#']).next()?;
    path.split('/')
        .filter(|seg| {
            let b64 = seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            let hex = seg.bytes().all(|b| b.is_ascii_hexdigit());
            (b64 && seg.len() >= 22) || (hex && seg.len() >= 32)
        })
        .max_by_key(|seg| seg.len())
        .map(str::to_string)
}

/// The URL with the last character of its token changed (a guess one character away).
fn guessed(url: &str) -> Option<String> {
    let token = url_token(url)?;
    let at = url.rfind(&token)? + token.len() - 1;
    let last = url.as_bytes()[at];
    let swap = if last == b'A' { 'B' } else { 'A' };
    let mut out = url.to_string();
    out.replace_range(at..=at, &swap.to_string());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_found_and_guesses_differ_by_one_character() {
        let url = "https://127.0.0.1:9/media/AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcde";
        let token = url_token(url).unwrap();
        assert!(token.starts_with("AbCd"));
        let g = guessed(url).unwrap();
        assert_ne!(g, url);
        assert_eq!(g.len(), url.len());
        assert_eq!(url_token("https://h/m/short"), None);
        assert_eq!(
            url_token("https://h/x/0123456789abcdef0123456789abcdef?x=1").as_deref(),
            Some("0123456789abcdef0123456789abcdef")
        );
        assert_eq!(url_token("https://h/1/2/3"), None);
    }
}
