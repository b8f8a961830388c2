//! The media steps of a client scenario (SPEC.md §14): a gatekeeper user sends the client a
//! file through the harness's media host, the client's verdict on it is judged against what
//! the host served, and the client shares files through an upload slot (or, in the chain,
//! its own provider's host, fetched through the gatekeeper's media proxy).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use tokio::time::Instant;

use super::Exec;
use super::expect::SERVICE_SLICE;
use super::media_files::{self as files, OpenError};
use crate::media::aesgcm::{AesgcmRef, Iv};
use crate::media::host::{self, HostConfig, HostRequest, MediaHost, RequestKind, UploadSlot};
use crate::roles::Deviation;
use crate::roles::gatekeeper_server as gk;
use crate::scenario::Step;
use crate::scenario::e2ee_step::E2eeSend;
use crate::scenario::media_step::{Fault, MediaStep, Outcome, ShareAnswer};

/// A client that reads more of an announced-too-large body than this read it (MEDIA-23):
/// loopback socket buffers hold a few MiB a client never asked for.
const READ_OF_REFUSED: u64 = 16 * 1024 * 1024;

pub(super) mod req {
    pub const INTEGRITY: &str = "MEDIA-24";
    pub const SIZE_LIMIT: &str = "MEDIA-23";
    pub const ENCRYPTION: &str = "MEDIA-1";
    pub const REFERENCE: &str = "MEDIA-18";
    pub const KEY_INSIDE: &str = "MEDIA-19";
    pub const UPLOAD: &str = "MEDIA-20";
    pub const NOT_DROPPED: &str = "MEDIA-21";
    pub const ANY_TYPE: &str = "MEDIA-25";
}

/// A file a gatekeeper user sent the client.
struct Sent {
    /// The id of the message that carried the reference.
    id: String,
    token: String,
    fault: Fault,
}

/// The scenario's media bookkeeping.
#[derive(Default)]
pub(super) struct MediaState {
    /// The gatekeeper's media host (client scenarios), started before the first `connect`.
    pub host: Option<MediaHost>,
    /// Where files and objects are written; removed with the state.
    dir: Option<super::http::Scratch>,
    sent: HashMap<String, Sent>,
    /// Keys and IVs the client used for the files it shared (MEDIA-1).
    keys: HashSet<[u8; 32]>,
    ivs: HashSet<Vec<u8>>,
    /// Objects stored on a provider server's host (server scenarios).
    pub(super) stored: HashMap<String, super::media_host::Stored>,
    /// Seconds the provider server's clock was advanced.
    pub(super) advanced_s: u64,
    /// The gatekeeper's media proxy (server and chain scenarios), started on first use.
    pub(super) proxy: Option<crate::media::proxy::MediaProxy>,
}

impl MediaState {
    /// The scenario's media directory.
    pub(super) fn dir(&mut self, token: &str) -> Result<PathBuf, Deviation> {
        if let Some(d) = &self.dir {
            return Ok(d.0.clone());
        }
        let dir = super::http::Scratch::new("media", token).map_err(|e| {
            Deviation::error(format!("cannot make the media scratch directory: {e}"))
        })?;
        let path = dir.0.clone();
        self.dir = Some(dir);
        Ok(path)
    }
}

impl Exec<'_> {
    /// Starts the gatekeeper's media host when the scenario has client media steps, so that
    /// `connect` can hand over its CA (`media_ca_pem`).
    pub(super) async fn media_ready(&mut self) -> Result<(), Deviation> {
        let wanted = self
            .scenario
            .steps
            .iter()
            .any(|s| matches!(&s.action, crate::scenario::Action::Media(m) if !m.of_server()));
        if !wanted || self.media.host.is_some() {
            return Ok(());
        }
        let dir = self.media.dir(&self.token)?;
        let mut config = HostConfig::new(dir);
        // Whatever names the client's user: a download or upload carrying it is identifying
        // (MEDIA-15, MEDIA-20).
        config.identifiers = vec![self.account.clone(), self.client_bare()];
        let host = MediaHost::start(config)
            .await
            .map_err(|e| Deviation::error(format!("the media host did not start: {e}")))?;
        self.transcript
            .note(format!("media host listening at {}", host.base_url()));
        self.media.host = Some(host);
        Ok(())
    }

    fn media_host(&self) -> Result<&MediaHost, Deviation> {
        self.media
            .host
            .as_ref()
            .ok_or_else(|| Deviation::error("no media host (the scenario connected no client)"))
    }

    /// Plays one media step.
    pub(super) async fn media(
        &mut self,
        step: &Step,
        m: &MediaStep,
        deadline: Instant,
    ) -> Result<(), Deviation> {
        let actor = step.actor.as_deref().unwrap_or_default();
        match m {
            MediaStep::Send { size, fault, name } => {
                self.media_send(step, actor, *size, *fault, name, deadline)
                    .await
            }
            MediaStep::Expect { name, outcome } => {
                self.expect_media(name, *outcome, deadline).await
            }
            MediaStep::Share { size, name, answer } => {
                self.media_share(step, actor, *size, name, *answer, deadline)
                    .await
            }
            MediaStep::Store { size, name, status } => {
                self.media_store(*size, name, *status, deadline).await
            }
            MediaStep::Fetch {
                name,
                expect,
                range,
                guess,
            } => {
                self.media_fetch(name, *expect, *range, *guess, deadline)
                    .await
            }
            MediaStep::Clock { to, offset_s } => self.media_clock(*to, *offset_s, deadline).await,
        }
    }

    /// `media_send`: the acting user encrypts a file, the media host serves its object
    /// (with the step's fault), and the user sends the reference as an encrypted message.
    async fn media_send(
        &mut self,
        step: &Step,
        actor: &str,
        size: u64,
        fault: Fault,
        name: &str,
        deadline: Instant,
    ) -> Result<(), Deviation> {
        if self.media.sent.contains_key(name) {
            return Err(Deviation::error(format!(
                "media_send: a file named {name} was already sent"
            )));
        }
        let key = files::key_from(self.vars.rng());
        let seed = rand::RngCore::next_u64(self.vars.rng());
        let dir = self.media.dir(&self.token)?;
        let path = files::path_in(&dir, name, "object");
        let write_to = path.clone();
        let file = files::blocking(move || files::write_object(&write_to, size, seed, &key))
            .await
            .map_err(Deviation::error)?
            .map_err(|e| Deviation::error(format!("cannot write the object: {e}")))?;
        let info = self
            .media_host()?
            .add_object(&path, host_fault(fault))
            .await
            .map_err(Deviation::error)?;
        let reference = AesgcmRef::from_https(&info.url, key)
            .map_err(|e| Deviation::error(format!("the host's URL {}: {e}", info.url)))?
            .to_string();
        let send = E2eeSend {
            text: Some(reference.clone()),
            name: Some(name.to_string()),
            hold: false,
            release: None,
            replay: None,
            tamper: None,
            body: None,
            plaintext_only: false,
            no_key: false,
            key_transport: false,
            iv_len: crate::e2ee::IV_LEN,
            reuse_prekey: false,
            from_device: 0,
            receipt: false,
            skip: 0,
        };
        self.e2ee_send(step, actor, &send, deadline).await?;
        let id = self
            .vars
            .get(&format!("{name}.id"))
            .ok_or_else(|| Deviation::error("e2ee_send set no message id"))?;
        self.vars.set("media.id", id.clone());
        self.e2ee.media.insert(
            id.clone(),
            super::e2ee_ledger::MediaExpect {
                file,
                refuse: fault.must_reject().then(|| fault_name(fault)),
            },
        );
        self.transcript.note(format!(
            "{actor} sent {name} ({size} bytes) as message {id}, served with fault {}",
            fault_name(fault)
        ));
        self.media.sent.insert(
            name.to_string(),
            Sent {
                id,
                token: info.token,
                fault,
            },
        );
        Ok(())
    }

    /// `expect_media`: the client's `media_received` or `media_rejected` for a file a user
    /// sent, judged against what the media host saw and served.
    async fn expect_media(
        &mut self,
        name: &str,
        outcome: Outcome,
        deadline: Instant,
    ) -> Result<(), Deviation> {
        let (id, token, fault) = match self.media.sent.get(name) {
            Some(s) => (s.id.clone(), s.token.clone(), s.fault),
            None => {
                return Err(Deviation::error(format!(
                    "expect_media: no file named {name} was sent"
                )));
            }
        };
        let expected = match outcome {
            Outcome::Received => format!("media_received for message {id}"),
            Outcome::Rejected => format!("media_rejected for message {id}"),
        };
        let ev = loop {
            let slice = deadline.min(Instant::now() + SERVICE_SLICE);
            let Some(ev) = self.next_event(slice).await? else {
                if Instant::now() < deadline {
                    self.service_connections(deadline).await?;
                    continue;
                }
                return Err(match outcome {
                    // A file nothing tells the type of was dropped without a word.
                    Outcome::Received => Deviation::fail(
                        req::NOT_DROPPED,
                        expected,
                        "neither media_received nor media_rejected before the step's deadline",
                    ),
                    Outcome::Rejected => Deviation::fail_here(
                        expected,
                        "no media_rejected before the step's deadline",
                    ),
                });
            };
            if ev.name == "unsupported" {
                return Err(self.unsupported(&ev));
            }
            // Every claim is judged by the ledger as it arrives (a media_received for an
            // altered object fails here, MEDIA-24).
            self.check_e2ee_claims()?;
            let same = ev.raw.get("id").and_then(|v| v.as_str()) == Some(id.as_str());
            if same && (ev.name == "media_received" || ev.name == "media_rejected") {
                break ev;
            }
        };
        let requests: Vec<HostRequest> = self
            .media_host()?
            .requests()
            .into_iter()
            .filter(|r| matches!(&r.kind, RequestKind::Object { token: t, .. } if *t == token))
            .collect();
        // MEDIA-15 (and a followed redirect to http://) for every request of the object.
        self.host_deviations(
            |r| matches!(&r.kind, RequestKind::Object { token: t, .. } if *t == token),
        )?;
        let shown = ev.raw.to_string();
        match (outcome, ev.name.as_str()) {
            (Outcome::Received, "media_received") => {
                // What the client claims it downloaded, the host must have served whole.
                if !requests.iter().any(|r| r.complete == Some(true)) {
                    return Err(Deviation::fail(
                        super::e2ee_ledger::req::EVENTS_TRUE,
                        "media_received only for an object the client downloaded whole",
                        format!(
                            "{shown}: the media host served no complete answer for it ({} requests)",
                            requests.len()
                        ),
                    ));
                }
                Ok(())
            }
            (Outcome::Received, _) => {
                let reason = ev.raw.get("reason").and_then(|v| v.as_str());
                if reason == Some("unsupported-type") {
                    return Err(Deviation::fail(
                        req::ANY_TYPE,
                        "the file offered to the user (media_received)",
                        shown,
                    ));
                }
                Err(Deviation::fail_here(expected, shown))
            }
            (Outcome::Rejected, "media_rejected") => {
                if fault == Fault::Announce
                    && let Some(r) = requests.iter().find(|r| r.body_bytes > READ_OF_REFUSED)
                {
                    return Err(Deviation::fail(
                        req::SIZE_LIMIT,
                        "an object announced over 100 MiB refused without reading its body",
                        format!(
                            "the client read at least {} bytes of it before {shown}",
                            r.body_bytes - READ_OF_REFUSED.min(r.body_bytes) + 1
                        ),
                    ));
                }
                Ok(())
            }
            // media_received for an object that had to be refused already failed above.
            (Outcome::Rejected, _) => Err(Deviation::fail(req::INTEGRITY, expected, shown)),
        }
    }

    /// Fails with the first deviation the media host recorded in a request `which` selects,
    /// or at a connection (a plain `http://` request on its HTTPS port).
    fn host_deviations(&self, which: impl Fn(&HostRequest) -> bool) -> Result<(), Deviation> {
        let host = self.media_host()?;
        if let Some(d) = host
            .requests()
            .into_iter()
            .filter(|r| which(r))
            .flat_map(|r| r.deviations)
            .next()
        {
            return Err(d);
        }
        if let Some(d) = host.events().into_iter().find_map(|e| e.deviation) {
            return Err(d);
        }
        Ok(())
    }

    /// `media_share`: the client shares a file with the acting user (`send_media`).
    async fn media_share(
        &mut self,
        step: &Step,
        actor: &str,
        size: u64,
        name: &str,
        answer: ShareAnswer,
        deadline: Instant,
    ) -> Result<(), Deviation> {
        let seed = rand::RngCore::next_u64(self.vars.rng());
        let dir = self.media.dir(&self.token)?;
        let path = files::path_in(&dir, name, "plain");
        let write_to = path.clone();
        let file = files::blocking(move || files::write_file(&write_to, size, seed))
            .await
            .map_err(Deviation::error)?
            .map_err(|e| Deviation::error(format!("cannot write the file: {e}")))?;
        let chain = self.scenario.chain;
        let slot = if chain {
            None
        } else {
            Some(self.media_host()?.upload_slot())
        };
        let mut cmd = serde_json::json!({
            "cmd": "send_media",
            "to": format!("{actor}@{}", gk::DOMAIN),
            "path": path.to_string_lossy(),
        });
        if let Some(s) = &slot {
            cmd["upload"] = serde_json::json!({
                "put_url": s.put_url,
                "get_url": s.get_url,
                "ca_pem": self.media_host()?.ca_pem(),
            });
        }
        let seq = self.send_command(cmd).await?;
        if answer == ShareAnswer::TooLarge {
            return self.share_refused(seq, slot.as_ref(), deadline).await;
        }
        let (text, id) = self.e2ee_receive(step, actor, None, deadline).await?;
        let reference = AesgcmRef::parse(&text).map_err(|e| {
            Deviation::fail(
                req::REFERENCE,
                "the text of the message is exactly the file's aesgcm:// reference (SPEC.md §14.1)",
                format!("message {id}: {e}: {text:?}"),
            )
        })?;
        let key = reference.secret;
        if matches!(key.iv, Iv::Legacy(_)) {
            return Err(Deviation::fail(
                req::REFERENCE,
                "a 12-byte IV in the reference (88 hex digits)",
                format!("message {id}: a 16-byte IV: {text:?}"),
            ));
        }
        if !self.media.keys.insert(key.key) || !self.media.ivs.insert(key.iv.as_bytes().to_vec()) {
            return Err(Deviation::fail(
                req::ENCRYPTION,
                "a fresh key and IV for every file",
                format!("message {id}: the key or IV of a file shared before"),
            ));
        }
        let url = reference.https_url();
        let object = match &slot {
            Some(s) => self.uploaded_object(s, &url, &id)?,
            None => self.fetch_shared(&url, name, deadline).await?,
        };
        let opened = files::blocking(move || files::open_object(&object, &key))
            .await
            .map_err(Deviation::error)?;
        // Through a slot the harness holds exactly what the client uploaded; from the
        // provider's own host (a chain) it holds what the host served, and the client's
        // upload is not observable: a mismatch is then charged to the host's MEDIA-5, the
        // text naming both.
        let (charge, whose) = match &slot {
            Some(_) => (req::ENCRYPTION, ""),
            None => (
                super::media_host::EXACT,
                " (the client uploaded another object, MEDIA-1, or its host served other bytes, MEDIA-5)",
            ),
        };
        match opened {
            Ok(got) if got == file => {}
            Ok(got) => {
                return Err(Deviation::fail(
                    charge,
                    format!(
                        "the object decrypts to the file shared ({} bytes, SHA-256 {})",
                        file.size, file.sha256
                    ),
                    format!("{} bytes, SHA-256 {}{whose}", got.size, got.sha256),
                ));
            }
            Err(OpenError::Tag(e)) => {
                return Err(Deviation::fail(
                    charge,
                    "the object is the file's AES-256-GCM ciphertext and tag under the reference's key and IV",
                    format!("{url}: {e}{whose}"),
                ));
            }
            Err(OpenError::Io(e)) => return Err(Deviation::error(e)),
        }
        if slot.is_some() {
            let leaks = self.media_host()?.key_leaks(&key);
            if let Some(d) = leaks.into_iter().next() {
                return Err(relabel(d, req::KEY_INSIDE));
            }
        }
        self.transcript.note(format!(
            "{actor} received {name} ({size} bytes) in message {id}: {url}"
        ));
        Ok(())
    }

    /// The object a client-only IUT uploaded to its slot, judged (MEDIA-18, MEDIA-20).
    fn uploaded_object(
        &self,
        slot: &UploadSlot,
        url: &str,
        id: &str,
    ) -> Result<PathBuf, Deviation> {
        if url != slot.get_url {
            return Err(Deviation::fail(
                req::REFERENCE,
                format!("the reference of the slot's URL {}", slot.get_url),
                format!("message {id} refers to {url}"),
            ));
        }
        let host = self.media_host()?;
        let puts: Vec<HostRequest> = host
            .requests()
            .into_iter()
            .filter(
                |r| matches!(&r.kind, RequestKind::Upload { token } if *token == slot.put_token),
            )
            .collect();
        self.host_deviations(
            |r| matches!(&r.kind, RequestKind::Upload { token } if *token == slot.put_token),
        )
        .map_err(relabel_upload)?;
        if puts.len() != 1 || puts[0].method != "PUT" {
            return Err(Deviation::fail(
                req::UPLOAD,
                "one PUT of the object to the slot's put_url",
                format!(
                    "{} requests: {}",
                    puts.len(),
                    puts.iter()
                        .map(|r| format!("{} {} ({})", r.method, r.path, r.status))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        let upload = host.upload(&slot.put_token).ok_or_else(|| {
            Deviation::fail(
                req::UPLOAD,
                "a complete upload of the object before the message that refers to it",
                format!(
                    "the PUT got status {} after {} body bytes",
                    puts[0].status, puts[0].body_bytes
                ),
            )
        })?;
        Ok(upload.path)
    }

    /// `send_media` of a file over the limit: `send_failed` with `too-large`, and nothing
    /// uploaded (MEDIA-23).
    async fn share_refused(
        &mut self,
        seq: u64,
        slot: Option<&UploadSlot>,
        deadline: Instant,
    ) -> Result<(), Deviation> {
        // A `sent` instead is skipped here and the wait ends without the refusal.
        let expected =
            serde_json::json!({"event": "send_failed", "seq": seq, "reason": "too-large"});
        self.expect_event(&[expected], deadline)
            .await
            .map_err(|d| relabel(d, req::SIZE_LIMIT))?;
        if let Some(s) = slot {
            let puts = self
                .media_host()?
                .requests()
                .into_iter()
                .filter(
                    |r| matches!(&r.kind, RequestKind::Upload { token } if *token == s.put_token),
                )
                .count();
            if puts > 0 {
                return Err(Deviation::fail(
                    req::SIZE_LIMIT,
                    "nothing uploaded for a file whose object would exceed 100 MiB",
                    format!("{puts} upload requests to the slot"),
                ));
            }
        }
        Ok(())
    }
}

/// The host's fault for the step's.
fn host_fault(f: Fault) -> host::Fault {
    match f {
        Fault::None => host::Fault::None,
        Fault::FlipTag => host::Fault::FlipTag,
        Fault::Truncate => host::Fault::Truncate,
        Fault::Swap => host::Fault::Swap,
        Fault::Status => host::Fault::Status,
        Fault::Redirect => host::Fault::Redirect,
        Fault::Announce => host::Fault::Announce,
    }
}

fn fault_name(f: Fault) -> &'static str {
    host_fault(f).name()
}

/// The deviation charged to `requirement` instead.
fn relabel(mut d: Deviation, requirement: &str) -> Deviation {
    if d.verdict == crate::runner::Verdict::Fail {
        d.requirement = Some(requirement.to_string());
    }
    d
}

/// A deviation of an upload request: what the host names, else MEDIA-20.
fn relabel_upload(d: Deviation) -> Deviation {
    if d.requirement.is_some() {
        d
    } else {
        relabel(d, req::UPLOAD)
    }
}
