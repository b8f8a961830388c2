//! The gatekeeper server's handshake and negotiation against a scripted client over an
//! in-memory pipe (`tokio::io::duplex`): no sockets, no processes.

use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;

use super::*;
use crate::transport::{NoiseKeypair, SecureReader, SecureWriter, noise_connect};

const ACCOUNT: &str = "alice";
const CREDENTIAL: &str = "s3cret";

/// The client's half: writes what the script says, reads until a marker arrives.
struct ScriptedClient {
    reader: SecureReader,
    writer: SecureWriter,
    seen: String,
}

impl ScriptedClient {
    async fn send(&mut self, text: &str) {
        self.writer
            .send(text.as_bytes())
            .await
            .expect("client write");
    }

    /// Header, SASL PLAIN with the right credentials, restart: up to the bind feature.
    async fn log_in_until_bind(&mut self) {
        self.send(&header()).await;
        self.until("</stream:features>").await;
        self.send(&auth(ACCOUNT, CREDENTIAL)).await;
        self.until("<success").await;
        self.send(&header()).await;
        self.until("</stream:features>").await;
    }

    /// Reads until `marker` has arrived; returns everything read so far.
    async fn until(&mut self, marker: &str) -> String {
        while !self.seen.contains(marker) {
            let chunk = tokio::time::timeout(Duration::from_secs(5), self.reader.recv())
                .await
                .expect("server answers in time")
                .expect("server bytes")
                .expect("server still open");
            self.seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        std::mem::take(&mut self.seen)
    }
}

fn header() -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='{DOMAIN}' version='1.0'>"
    )
}

fn auth(account: &str, credential: &str) -> String {
    let plain =
        base64::engine::general_purpose::STANDARD.encode(format!("\0{account}\0{credential}"));
    format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{plain}</auth>")
}

/// Runs `negotiate` up to `upto` against a client following `script`.
async fn negotiate_against<F, Fut>(upto: Stage, script: F) -> Result<Negotiated, Deviation>
where
    F: FnOnce(ScriptedClient) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let n = Negotiate {
        upto,
        mechanisms: vec!["PLAIN".into()],
        sasl: SaslAnswer::Verify,
        features_delay: None,
        idle_limit: None,
    };
    negotiate_with(n, script).await
}

/// Runs `negotiate` as `n` says against a client following `script`.
async fn negotiate_with<F, Fut>(n: Negotiate, script: F) -> Result<Negotiated, Deviation>
where
    F: FnOnce(ScriptedClient) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let keys = ServerKeys::new(&mut rng).expect("keys");
    let (server_end, client_end) = tokio::io::duplex(64 * 1024);
    let pinned = keys.noise.public.clone();
    let client = tokio::spawn(async move {
        let me = NoiseKeypair::from_seed([9; 32]);
        let est = noise_connect(client_end, &me, &pinned)
            .await
            .expect("noise handshake");
        script(ScriptedClient {
            reader: est.reader,
            writer: est.writer,
            seen: String::new(),
        })
        .await;
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    let transcript = Transcript::new(std::time::Instant::now());
    let mut conn = handshake(
        server_end,
        TransportKind::Noise,
        HandshakeMode::Normal,
        &keys,
        deadline,
        &transcript,
        &mut rng,
    )
    .await?
    .expect("a connection after a normal handshake");
    let creds = Credentials {
        account: ACCOUNT,
        credential: CREDENTIAL,
        enrolled: None,
    };
    let out = negotiate(&mut conn, &n, &creds, deadline, &mut rng).await;
    client.abort();
    out
}

#[tokio::test]
async fn a_correct_client_is_bound_to_the_jid_the_server_chose() {
    let got = negotiate_against(Stage::Session, |mut c| async move {
        c.log_in_until_bind().await;
        c.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
            .await;
        let result = c.until("</iq>").await;
        assert!(result.contains("type=\"result\""), "{result}");
    })
    .await
    .expect("negotiation succeeds");
    let jid = got.jid.expect("a bound JID");
    assert!(jid.starts_with(&format!("{ACCOUNT}@{DOMAIN}/gk-")), "{jid}");
}

#[tokio::test]
async fn wrong_credentials_fail_the_sasl_requirement() {
    let d = negotiate_against(Stage::Session, |mut c| async move {
        c.send(&header()).await;
        c.until("</stream:features>").await;
        c.send(&auth(ACCOUNT, "not-the-credential")).await;
        c.until("<failure").await;
    })
    .await
    .expect_err("refused");
    assert_eq!(d.requirement.as_deref(), Some(req::SASL_PLAIN));
}

#[tokio::test]
async fn a_comment_from_the_client_fails_the_sender_rule() {
    let d = negotiate_against(Stage::Session, |mut c| async move {
        c.send(&header()).await;
        c.send("<!-- hello -->").await;
        c.until("</stream:features>").await;
    })
    .await
    .expect_err("refused");
    assert_eq!(d.requirement.as_deref(), Some(req::RESTRICTED_XML_SENT));
}

#[tokio::test]
async fn a_stanza_before_binding_fails_bind_first() {
    let d = negotiate_against(Stage::Session, |mut c| async move {
        c.log_in_until_bind().await;
        c.send("<presence/>").await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    })
    .await
    .expect_err("refused");
    assert_eq!(d.requirement.as_deref(), Some(req::BIND_FIRST));
}

fn held_features() -> Negotiate {
    Negotiate {
        upto: Stage::Session,
        mechanisms: vec!["PLAIN".into()],
        sasl: SaslAnswer::Verify,
        features_delay: Some(Duration::from_millis(200)),
        idle_limit: None,
    }
}

#[tokio::test]
async fn held_features_pass_a_client_that_waits_for_them() {
    let got = negotiate_with(held_features(), |mut c| async move {
        c.log_in_until_bind().await;
        c.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
            .await;
        c.until("</iq>").await;
    })
    .await
    .expect("negotiation succeeds");
    assert!(got.jid.is_some());
}

#[tokio::test]
async fn auth_before_held_features_fails_the_waiting_rule() {
    let d = negotiate_with(held_features(), |mut c| async move {
        c.send(&header()).await;
        c.until("<stream:stream").await;
        c.send(&auth(ACCOUNT, CREDENTIAL)).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    })
    .await
    .expect_err("refused");
    assert_eq!(d.requirement.as_deref(), Some(req::WAIT_FEATURES));
    assert!(d.got.contains("<auth"), "{}", d.got);
}

#[tokio::test]
async fn bind_before_the_restarted_features_fails_the_waiting_rule() {
    let d = negotiate_with(held_features(), |mut c| async move {
        c.send(&header()).await;
        c.until("</stream:features>").await;
        c.send(&auth(ACCOUNT, CREDENTIAL)).await;
        c.until("<success").await;
        c.send(&header()).await;
        c.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
            .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    })
    .await
    .expect_err("refused");
    assert_eq!(d.requirement.as_deref(), Some(req::WAIT_FEATURES));
}

#[tokio::test]
async fn a_zero_length_frame_from_the_client_fails_stream_5() {
    let d = negotiate_against(Stage::Session, |c| async move {
        let ScriptedClient { mut writer, .. } = c;
        writer
            .send_framed(&[], crate::transport::FrameMode::Empty)
            .await
            .expect("write");
        tokio::time::sleep(Duration::from_secs(1)).await;
    })
    .await
    .expect_err("refused");
    assert_eq!(d.requirement.as_deref(), Some(req::ZERO_LENGTH_FRAME));
}

#[tokio::test]
async fn a_frame_that_does_not_decrypt_fails_the_frame_format() {
    let d = negotiate_against(Stage::Session, |c| async move {
        let ScriptedClient { mut writer, .. } = c;
        writer
            .send_framed(header().as_bytes(), crate::transport::FrameMode::Corrupt)
            .await
            .expect("write");
        tokio::time::sleep(Duration::from_secs(1)).await;
    })
    .await
    .expect_err("refused");
    assert_eq!(d.requirement.as_deref(), Some(req::FRAMING));
}

#[tokio::test]
async fn an_idle_limit_is_announced_with_bind_and_only_then() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let out = std::sync::Arc::clone(&seen);
    let n = Negotiate {
        upto: Stage::Session,
        mechanisms: vec!["PLAIN".into()],
        sasl: SaslAnswer::Verify,
        features_delay: None,
        idle_limit: Some(Duration::from_secs(12)),
    };
    negotiate_with(n, move |mut c| async move {
        c.send(&header()).await;
        let first = c.until("</stream:features>").await;
        c.send(&auth(ACCOUNT, CREDENTIAL)).await;
        c.until("<success").await;
        c.send(&header()).await;
        let second = c.until("</stream:features>").await;
        // Kept before the bind request: the server's part ends with the bind result.
        *out.lock().expect("lock") = format!("{first}|{second}");
        c.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
            .await;
        c.until("</iq>").await;
    })
    .await
    .expect("negotiation succeeds");
    let all = seen.lock().expect("lock").clone();
    let idle = "<idle xmlns='urn:gatecheck:idle:0' seconds='12'/>";
    assert_eq!(all.matches(idle).count(), 1, "{all}");
    let (before_auth, with_bind) = all.split_once('|').expect("both features");
    assert!(!before_auth.contains(idle), "{all}");
    assert!(
        with_bind.contains(idle) && with_bind.contains("xmpp-bind"),
        "{all}"
    );
}
