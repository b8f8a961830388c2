//! Enrollment (SPEC.md §10) and the enrolled login (§7.4): the reference binary, driven over
//! the driver protocol, against the harness's own enrollment API (which records every request
//! and what the client did wrong in it) and a scripted gatekeeper for the login.

mod common;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::{DOMAIN, FEATURES_BIND, Gatekeeper, Iut, SERVER_HEADER};
use ed25519_dalek::SigningKey;
use gatecheck::e2ee::Bundle;
use gatecheck::idproof::{Proof, ProofFields, Registry, sasl};
use gatecheck::roles::enroll_api::{
    EnrollApi, EnrollConfig, EnrollState, Forced, accept_all_tokens, lock,
};
use gatecheck::transport::{Established, TlsIdentity, TransportKind};
use gatecheck::wire::{Element, Framing, Limits, StreamEvent, StreamParser, ns};
use serde_json::{Value, json};
use tokio::time::{Instant, timeout};

const PROVIDER: &str = "test-provider";
const IDENTIFIER: &str = "+4915100000001";
const NODE_PREFIX: &str = "eu.siacs.conversations.axolotl.bundles:";

/// The provider's signing key, as the harness holds it when it stands in for the provider.
fn provider_key() -> SigningKey {
    SigningKey::from_bytes(&[42u8; 32])
}

/// The enrollment API for `DOMAIN`, handing out `server_key` as the Noise key.
async fn start_api(server_key: &[u8]) -> EnrollApi {
    let mut registry = Registry::new();
    registry.add(PROVIDER, provider_key().verifying_key());
    let key: [u8; 32] = server_key.try_into().expect("32-byte key");
    EnrollApi::start(
        EnrollConfig::new(DOMAIN, key),
        EnrollState::new(registry).shared(),
        accept_all_tokens(),
    )
    .await
    .expect("enrollment API starts")
}

/// A fresh proof for the device the client reported (a new nonce each time).
fn proof_for(identity_key: &str, device_id: u32) -> Value {
    let key: [u8; 33] = STANDARD
        .decode(identity_key)
        .expect("base64")
        .try_into()
        .expect("33 bytes");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let proof = Proof::sign(
        &provider_key(),
        &ProofFields {
            provider_id: PROVIDER,
            identifier: IDENTIFIER,
            identity_key: &key,
            device_id,
            issued_at: now,
            expires_at: now + 300,
            nonce: gatecheck::idproof::random_nonce(),
        },
    );
    serde_json::from_str(&proof.to_json()).expect("proof JSON")
}

/// `identity`: the key (checked to be 33 bytes, type 0x05) and device id.
async fn identity(iut: &mut Iut, seq: i64) -> (String, u32) {
    iut.send(json!({"cmd":"identity","seq":seq})).await;
    let event = iut.expect("identity").await;
    assert_eq!(event["seq"], seq);
    let key = event["identity_key"].as_str().expect("key").to_owned();
    let bytes = STANDARD.decode(&key).expect("base64 key");
    assert_eq!((bytes.len(), bytes[0]), (33, 0x05), "{event}");
    let device_id = event["device_id"].as_u64().expect("device id");
    assert!((1..=2_147_483_647).contains(&device_id), "{event}");
    (key, device_id as u32)
}

fn enroll_command(seq: i64, api: &EnrollApi, ca_pem: &str, opted_in: bool, proof: Value) -> Value {
    json!({"cmd":"enroll","seq":seq,"url":api.base_url(),"ca_pem":ca_pem,
           "identifier":IDENTIFIER,"token":"tok-valid-1","opted_in":opted_in,"proof":proof})
}

/// Reports the device, then enrolls it; returns the answer and the device.
async fn identity_and_enroll(iut: &mut Iut, api: &EnrollApi) -> (Value, String, u32) {
    let (key, device_id) = identity(iut, 1).await;
    let proof = proof_for(&key, device_id);
    iut.send(enroll_command(2, api, api.ca_pem(), true, proof))
        .await;
    let answer = iut.event().await;
    assert_eq!(answer["seq"], 2, "{answer}");
    (answer, key, device_id)
}

/// The requirements named by the API's record of the client's deviations.
fn deviations(api: &EnrollApi) -> Vec<String> {
    api.client_deviations()
        .into_iter()
        .map(|d| d.requirement.unwrap_or(d.expected))
        .collect()
}

/// Waits a moment for requests the client should not make, and counts the requests.
async fn settled_requests(api: &EnrollApi) -> usize {
    tokio::time::sleep(Duration::from_millis(300)).await;
    api.requests().len()
}

#[tokio::test]
async fn identity_is_stable_and_enrollment_succeeds() {
    let api = start_api(&[9u8; 32]).await;
    let mut iut = Iut::spawn(&[]).await;
    let (answer, key, device_id) = identity_and_enroll(&mut iut, &api).await;
    assert_eq!(answer["event"], "enrolled", "{answer}");
    assert_eq!(answer["domain"], DOMAIN);
    assert_eq!(answer["device_id"], device_id);
    assert!(answer.get("credential").is_none(), "ENROLL-10: {answer}");
    let account = answer["account"].as_str().expect("account").to_owned();

    let requests = api.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/v1/enroll")
    );
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.outcome.status, Some(201));
    assert!(deviations(&api).is_empty(), "{:?}", api.client_deviations());
    let body: Value = serde_json::from_slice(&request.body).expect("JSON body");
    let mut members: Vec<&str> = body
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    members.sort_unstable();
    assert_eq!(
        members,
        [
            "device_id",
            "identifier",
            "identifier_proof",
            "identity_key",
            "one_time_prekeys",
            "provider_id",
            "provider_token",
            "signed_prekey",
            "v"
        ]
    );
    assert_eq!(body["identity_key"], key.as_str());
    assert_eq!(body["one_time_prekeys"].as_array().map(Vec::len), Some(100));
    {
        let shared = api.state();
        let state = lock(&shared);
        assert_eq!(state.account_of(IDENTIFIER), Some(account.as_str()));
        assert!(state.device(IDENTIFIER, device_id).is_some());
    }
    // The same device on later asks (ENROLL-5 draws once).
    assert_eq!(identity(&mut iut, 3).await, (key, device_id));
    iut.shutdown().await;
}

#[tokio::test]
async fn refused_enrollment_is_reported_and_not_repeated() {
    for (args, expected) in [
        (&[][..], 1),
        (&["--mutant", "repeat-refused-enrollment"][..], 2),
    ] {
        let api = start_api(&[9u8; 32]).await;
        api.force(Forced::Refuse(400, "bad_field".into()));
        let mut iut = Iut::spawn(args).await;
        let (answer, _, _) = identity_and_enroll(&mut iut, &api).await;
        assert_eq!(answer["event"], "enroll_failed", "{answer}");
        assert_eq!(
            (answer["status"].as_u64(), answer["code"].as_str()),
            (Some(400), Some("bad_field"))
        );
        assert_eq!(settled_requests(&api).await, expected, "{args:?}");
        let named_11 = deviations(&api).iter().any(|r| r.contains("ENROLL-11"));
        assert_eq!(named_11, expected == 2, "{args:?}: {:?}", deviations(&api));
        iut.shutdown().await;
    }
}

#[tokio::test]
async fn rate_limit_is_waited_out_once() {
    let api = start_api(&[9u8; 32]).await;
    api.force(Forced::Status {
        status: 429,
        retry_after: Some(1),
    });
    let mut iut = Iut::spawn(&[]).await;
    let (answer, _, _) = identity_and_enroll(&mut iut, &api).await;
    assert_eq!(answer["event"], "enrolled", "{answer}");
    let requests = api.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests[1].at.duration_since(requests[0].at) >= Duration::from_millis(950));
    assert!(deviations(&api).is_empty(), "{:?}", api.client_deviations());
    iut.shutdown().await;

    // The mutant comes back at once, which the API records as ENROLL-13.
    let api = start_api(&[9u8; 32]).await;
    api.force(Forced::Status {
        status: 429,
        retry_after: Some(1),
    });
    let mut iut = Iut::spawn(&["--mutant", "ignore-retry-after"]).await;
    let (answer, _, _) = identity_and_enroll(&mut iut, &api).await;
    assert_eq!(answer["event"], "enrolled", "{answer}");
    assert!(
        deviations(&api).iter().any(|r| r.contains("ENROLL-13")),
        "{:?}",
        deviations(&api)
    );
    iut.shutdown().await;
}

#[tokio::test]
async fn long_rate_limit_fails_without_waiting_and_server_errors_are_retried() {
    let api = start_api(&[9u8; 32]).await;
    api.force(Forced::Status {
        status: 429,
        retry_after: Some(30),
    });
    let mut iut = Iut::spawn(&[]).await;
    let started = Instant::now();
    let (answer, key, device_id) = identity_and_enroll(&mut iut, &api).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(answer["event"], "enroll_failed", "{answer}");
    assert_eq!(
        (answer["status"].as_u64(), answer["code"].as_str()),
        (Some(429), Some("rate_limited"))
    );
    assert_eq!(settled_requests(&api).await, 1);

    // A 503, then (a second later, with a fresh proof) success.
    api.force(Forced::Status {
        status: 503,
        retry_after: None,
    });
    iut.send(enroll_command(
        5,
        &api,
        api.ca_pem(),
        true,
        proof_for(&key, device_id),
    ))
    .await;
    let answer = iut.expect("enrolled").await;
    assert_eq!(answer["seq"], 5);
    let requests = api.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[1].outcome.status, Some(503));
    assert!(requests[2].at.duration_since(requests[1].at) >= Duration::from_millis(950));
    iut.shutdown().await;
}

#[tokio::test]
async fn no_opt_in_sends_nothing() {
    let api = start_api(&[9u8; 32]).await;
    let mut iut = Iut::spawn(&[]).await;
    let (key, device_id) = identity(&mut iut, 1).await;
    iut.send(enroll_command(
        2,
        &api,
        api.ca_pem(),
        false,
        proof_for(&key, device_id),
    ))
    .await;
    let answer = iut.expect("enroll_failed").await;
    assert_eq!(
        answer,
        json!({"event":"enroll_failed","seq":2,"status":0,"code":"not_opted_in"})
    );
    assert_eq!(settled_requests(&api).await, 0);
    assert!(api.connection_events().is_empty());
    iut.shutdown().await;

    let mut iut = Iut::spawn(&["--mutant", "enroll-without-opt-in"]).await;
    let (key, device_id) = identity(&mut iut, 1).await;
    iut.send(enroll_command(
        2,
        &api,
        api.ca_pem(),
        false,
        proof_for(&key, device_id),
    ))
    .await;
    iut.expect("enrolled").await;
    assert_eq!(api.requests().len(), 1);
    iut.shutdown().await;
}

#[tokio::test]
async fn untrusted_certificate_is_a_tls_failure() {
    let other_ca = TlsIdentity::generate("127.0.0.1").ca_pem;
    let api = start_api(&[9u8; 32]).await;
    let mut iut = Iut::spawn(&[]).await;
    let (key, device_id) = identity(&mut iut, 1).await;
    iut.send(enroll_command(
        2,
        &api,
        &other_ca,
        true,
        proof_for(&key, device_id),
    ))
    .await;
    let answer = iut.expect("enroll_failed").await;
    assert_eq!(
        (answer["status"].as_u64(), answer["code"].as_str()),
        (Some(0), Some("tls"))
    );
    assert_eq!(settled_requests(&api).await, 0);
    iut.shutdown().await;

    let mut iut = Iut::spawn(&["--mutant", "enroll-any-certificate"]).await;
    let (key, device_id) = identity(&mut iut, 1).await;
    iut.send(enroll_command(
        2,
        &api,
        &other_ca,
        true,
        proof_for(&key, device_id),
    ))
    .await;
    iut.expect("enrolled").await;
    iut.shutdown().await;
}

#[tokio::test]
async fn device_id_conflict_draws_a_new_id() {
    for (args, renumbered) in [
        (&[][..], true),
        (&["--mutant", "same-device-id-after-conflict"][..], false),
    ] {
        let api = start_api(&[9u8; 32]).await;
        api.force(Forced::Conflict);
        let mut iut = Iut::spawn(args).await;
        let (answer, key, device_id) = identity_and_enroll(&mut iut, &api).await;
        assert_eq!(
            (answer["status"].as_u64(), answer["code"].as_str()),
            (Some(409), Some("device_id_conflict"))
        );
        let (key_after, id_after) = identity(&mut iut, 3).await;
        assert_eq!(key_after, key, "only the id collided");
        assert_eq!(id_after != device_id, renumbered, "{args:?}");
        iut.shutdown().await;
    }
}

#[tokio::test]
async fn request_mutants_are_caught_by_the_api() {
    let api = start_api(&[9u8; 32]).await;
    let mut iut = Iut::spawn(&["--mutant", "fixed-device-id"]).await;
    assert_eq!(identity(&mut iut, 1).await.1, 1);
    iut.shutdown().await;

    for (mutant, status, code) in [
        ("few-enrollment-prekeys", 400, "too_few_prekeys"),
        ("no-proof-at-enrollment", 401, "proof_missing"),
    ] {
        let mut iut = Iut::spawn(&["--mutant", mutant]).await;
        let (answer, _, _) = identity_and_enroll(&mut iut, &api).await;
        assert_eq!(answer["event"], "enroll_failed", "{mutant}: {answer}");
        assert_eq!(
            (answer["status"].as_u64(), answer["code"].as_str()),
            (Some(status), Some(code)),
            "{mutant}"
        );
        iut.shutdown().await;
    }

    let mut iut = Iut::spawn(&["--mutant", "credential-in-event"]).await;
    let (answer, _, _) = identity_and_enroll(&mut iut, &api).await;
    assert!(
        answer["credential"].as_str().is_some_and(|c| !c.is_empty()),
        "{answer}"
    );
    iut.shutdown().await;
}

#[tokio::test]
async fn enrolled_connect_without_enrollment_is_refused_as_not_enrolled() {
    let mut iut = Iut::spawn(&[]).await;
    iut.send(json!({"cmd":"connect","seq":1,"host":"127.0.0.1","port":1,"transport":"noise","proof":{"v":1}}))
        .await;
    let error = iut.expect("error").await;
    // ENROLL-1: no enrollment succeeded, so there is nothing to log in with.
    assert_eq!(
        (error["seq"].as_i64(), error["code"].as_str()),
        (Some(1), Some("not-enrolled"))
    );
    iut.shutdown().await;
}

/// The server side of one login, with a parser of the test's own.
struct Server {
    est: Established,
    parser: StreamParser,
}

impl Server {
    async fn accept(gk: &Gatekeeper) -> Server {
        Server {
            est: gk.accept().await.est,
            parser: StreamParser::new(Framing::Stream, Limits::harness_ceilings()),
        }
    }

    async fn send(&mut self, xml: &str) {
        self.est.writer.send(xml.as_bytes()).await.expect("send");
    }

    async fn next(&mut self) -> Option<StreamEvent> {
        loop {
            if let Some(event) = self.parser.next_event().expect("valid XML") {
                return Some(event);
            }
            match timeout(common::LIMIT, self.est.reader.recv())
                .await
                .expect("data in time")
            {
                Ok(Some(bytes)) => self.parser.feed(&bytes),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    async fn stanza(&mut self) -> Element {
        match self.next().await {
            Some(StreamEvent::Stanza(el)) => el,
            other => panic!("expected a stanza, got {other:?}"),
        }
    }

    /// Header and features offering `mechanisms`; returns the client's header's `to` and
    /// its `<auth>` (or `None` when it sent no auth but closed).
    async fn until_auth(&mut self, mechanisms: &[&str]) -> (Option<String>, Option<Element>) {
        let to = match self.next().await {
            Some(StreamEvent::Header(h)) => h.to,
            other => panic!("expected a header, got {other:?}"),
        };
        let offered: String = mechanisms
            .iter()
            .map(|m| format!("<mechanism>{m}</mechanism>"))
            .collect();
        self.send(&format!(
            "{SERVER_HEADER}<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{offered}</mechanisms></stream:features>"
        ))
        .await;
        match self.next().await {
            Some(StreamEvent::Stanza(auth)) => (to, Some(auth)),
            _ => (to, None),
        }
    }

    /// Success, restart, bind as `jid`, presence; then the bundle publication, answered.
    async fn finish_login(&mut self, jid: &str) -> Element {
        self.send("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
            .await;
        self.parser = StreamParser::new(Framing::Stream, Limits::harness_ceilings());
        assert!(matches!(self.next().await, Some(StreamEvent::Header(_))));
        self.send(&format!("{SERVER_HEADER}{FEATURES_BIND}")).await;
        let bind = self.stanza().await;
        let id = bind.attr("id").expect("bind id").to_owned();
        self.send(&format!(
            "<iq type='result' id='{id}'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>{jid}</jid></bind></iq>"
        ))
        .await;
        assert!(self.stanza().await.is("presence", ns::JABBER_CLIENT));
        loop {
            let iq = self.stanza().await;
            let id = iq.attr("id").unwrap_or_default().to_owned();
            if let Some(publish) = find(&iq, "publish")
                && publish
                    .attr("node")
                    .is_some_and(|n| n.starts_with(NODE_PREFIX))
            {
                self.send(&format!("<iq type='result' id='{id}'/>")).await;
                return publish.clone();
            }
            self.send(&format!(
                "<iq type='error' id='{id}'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
            ))
            .await;
        }
    }
}

/// The first element named `name` at any depth.
fn find<'a>(el: &'a Element, name: &str) -> Option<&'a Element> {
    if el.name == name {
        return Some(el);
    }
    el.child_elements().find_map(|c| find(c, name))
}

/// The fields of a PLAIN-IDPROOF (or PLAIN) `<auth>`.
fn auth_fields(auth: &Element) -> (String, Vec<Vec<u8>>) {
    assert!(auth.is("auth", ns::SASL), "{auth:?}");
    let mechanism = auth.attr("mechanism").unwrap_or_default().to_owned();
    let message = STANDARD.decode(auth.text().trim()).expect("base64 auth");
    (
        mechanism,
        message.split(|&b| b == 0).map(<[u8]>::to_vec).collect(),
    )
}

/// Enrolls a client running `args` with the API of a Noise gatekeeper, then sends the
/// enrolled `connect` with a fresh proof; returns what the login needs to check.
struct Enrolled {
    iut: Iut,
    api: EnrollApi,
    gk: Gatekeeper,
    key: String,
    device_id: u32,
    account: String,
    enrollment_proof: Value,
    login_proof: Value,
}

async fn enroll_then_connect(args: &[&str]) -> Enrolled {
    let gk = Gatekeeper::start(TransportKind::Noise).await;
    let api = start_api(&gk.noise.public).await;
    let mut iut = Iut::spawn(args).await;
    let (key, device_id) = identity(&mut iut, 1).await;
    let enrollment_proof = proof_for(&key, device_id);
    iut.send(enroll_command(
        2,
        &api,
        api.ca_pem(),
        true,
        enrollment_proof.clone(),
    ))
    .await;
    let enrolled = iut.expect("enrolled").await;
    let account = enrolled["account"].as_str().expect("account").to_owned();
    let login_proof = proof_for(&key, device_id);
    let port = gk.listener.local_addr().expect("addr").port();
    // No domain, no server key: both come from the enrollment.
    iut.send(
        json!({"cmd":"connect","seq":3,"host":"127.0.0.1","port":port,
                    "transport":"noise","proof":login_proof}),
    )
    .await;
    Enrolled {
        iut,
        api,
        gk,
        key,
        device_id,
        account,
        enrollment_proof,
        login_proof,
    }
}

#[tokio::test]
async fn enrolled_login_uses_plain_idproof_and_publishes_the_enrolled_keys() {
    let Enrolled {
        mut iut,
        api,
        gk,
        key,
        device_id,
        account,
        login_proof,
        ..
    } = enroll_then_connect(&[]).await;
    let mut server = Server::accept(&gk).await;
    let (to, auth) = server.until_auth(&["PLAIN", sasl::MECHANISM]).await;
    assert_eq!(to.as_deref(), Some(DOMAIN));
    let (mechanism, fields) = auth_fields(&auth.expect("auth"));
    assert_eq!(mechanism, "PLAIN-IDPROOF");
    let [authzid, authcid, password, proof] = fields.as_slice() else {
        panic!("{} fields", fields.len())
    };
    assert!(authzid.is_empty());
    assert_eq!(authcid, account.as_bytes());
    let credential = String::from_utf8(password.clone()).expect("UTF-8");
    assert!(
        lock(&api.state())
            .check_login(&account, &credential)
            .is_some()
    );
    let presented: Value = serde_json::from_slice(proof).expect("proof JSON");
    assert_eq!(presented, login_proof);

    let jid = format!("{account}@{DOMAIN}/r1");
    let publish = server.finish_login(&jid).await;
    let connected = iut.expect("connected").await;
    assert_eq!(connected["jid"], jid.as_str());
    assert_eq!(
        publish.attr("node"),
        Some(format!("{NODE_PREFIX}{device_id}").as_str())
    );
    let bundle = Bundle::from_element(find(&publish, "bundle").expect("bundle")).expect("bundle");
    assert_eq!(STANDARD.encode(&bundle.identity_key), key);
    let enrolled = lock(&api.state())
        .device(IDENTIFIER, device_id)
        .expect("enrolled")
        .keys
        .clone();
    assert_eq!(bundle.signed_prekey, enrolled.signed_prekey.public);
    assert_eq!(bundle.signature, enrolled.signed_prekey.signature);
    assert_eq!(bundle.prekeys.len(), enrolled.one_time_prekeys.len());
    iut.shutdown().await;
}

#[tokio::test]
async fn enrolled_login_without_plain_idproof_sends_no_credentials() {
    let Enrolled { mut iut, gk, .. } = enroll_then_connect(&[]).await;
    let mut server = Server::accept(&gk).await;
    let (_, auth) = server.until_auth(&["PLAIN"]).await;
    assert!(
        auth.is_none(),
        "no credentials without PLAIN-IDPROOF: {auth:?}"
    );
    let error = iut.expect("error").await;
    assert_eq!(
        (error["seq"].as_i64(), error["code"].as_str()),
        (Some(3), Some("no-mechanism"))
    );
    iut.shutdown().await;
}

#[tokio::test]
async fn login_mutants_leave_out_or_reuse_the_proof() {
    let Enrolled { iut, gk, .. } =
        enroll_then_connect(&["--mutant", "login-plain-without-proof"]).await;
    let mut server = Server::accept(&gk).await;
    let (_, auth) = server.until_auth(&["PLAIN", sasl::MECHANISM]).await;
    let (mechanism, fields) = auth_fields(&auth.expect("auth"));
    assert_eq!((mechanism.as_str(), fields.len()), ("PLAIN", 3));
    drop(iut);

    let Enrolled {
        iut,
        gk,
        enrollment_proof,
        ..
    } = enroll_then_connect(&["--mutant", "reuse-enrollment-proof"]).await;
    let mut server = Server::accept(&gk).await;
    let (_, auth) = server.until_auth(&["PLAIN", sasl::MECHANISM]).await;
    let (mechanism, fields) = auth_fields(&auth.expect("auth"));
    assert_eq!(mechanism, "PLAIN-IDPROOF");
    let presented: Value = serde_json::from_slice(&fields[3]).expect("proof JSON");
    assert_eq!(presented, enrollment_proof);
    drop(iut);
}

#[tokio::test]
async fn no_connection_is_retried_once_then_a_transport_failure() {
    let api = start_api(&[9u8; 32]).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let mut iut = Iut::spawn(&[]).await;
    let (key, device_id) = identity(&mut iut, 1).await;
    let mut command = enroll_command(2, &api, api.ca_pem(), true, proof_for(&key, device_id));
    command["url"] = json!(format!("https://127.0.0.1:{port}"));
    let started = Instant::now();
    iut.send(command).await;
    let answer = iut.expect("enroll_failed").await;
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "ENROLL-14: a pause before the retry"
    );
    assert_eq!(
        (answer["status"].as_u64(), answer["code"].as_str()),
        (Some(0), Some("transport"))
    );
    // A URL that is not https:// is never used (ENROLL-7).
    let mut command = enroll_command(3, &api, api.ca_pem(), true, proof_for(&key, device_id));
    command["url"] = json!(api.base_url().replace("https://", "http://"));
    iut.send(command).await;
    let answer = iut.expect("enroll_failed").await;
    assert_eq!(
        (answer["status"].as_u64(), answer["code"].as_str()),
        (Some(0), Some("tls"))
    );
    assert_eq!(settled_requests(&api).await, 0);
    assert!(api.connection_events().is_empty());
    iut.shutdown().await;
}
