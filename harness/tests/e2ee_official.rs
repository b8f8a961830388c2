//! gatecheck's e2ee layer against Signal's official library (@signalapp/libsignal-client,
//! driven through fixtures/e2ee/official.mjs), live both ways, and replayed from the vectors
//! that library recorded (fixtures/e2ee/vectors.json), which needs no node.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use gatecheck::e2ee::{
    Address, Bundle, Device, DeviceKeys, Envelope, IdentityStatus, KeyElement, test_identity,
};
use gatecheck::wire::{Limits, parse_fragment};
use serde_json::{Value, json};

/// How long one answer of the official peer may take (it answers in milliseconds).
const ANSWER_DEADLINE: Duration = Duration::from_secs(30);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

fn unb64(v: &Value) -> Vec<u8> {
    STANDARD
        .decode(v.as_str().expect("a base64 string"))
        .expect("valid base64")
}

/// The official library behind official.mjs's line protocol.
struct Official {
    child: Child,
    stdin: ChildStdin,
    answers: Receiver<String>,
}

impl Official {
    /// Starts the peer, or says why it cannot run here (no node, or no `npm ci` yet).
    fn start() -> Result<Official, String> {
        let root = root();
        let module = root.join("fixtures/e2ee/node/node_modules/@signalapp/libsignal-client");
        if !module.is_dir() {
            return Err(format!(
                "{} is missing: run `npm ci --prefix fixtures/e2ee/node`",
                module.display()
            ));
        }
        let mut child = Command::new("node")
            .arg("fixtures/e2ee/official.mjs")
            .current_dir(&root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot run node: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        // A reader thread turns the blocking pipe into a channel read with a deadline.
        let (tx, answers) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Official {
            child,
            stdin,
            answers,
        })
    }

    /// Sends one request; the answer, or the peer's error message.
    fn try_call(&mut self, request: Value) -> Result<Value, String> {
        writeln!(self.stdin, "{request}").expect("write to node");
        self.stdin.flush().expect("flush");
        let line = self
            .answers
            .recv_timeout(ANSWER_DEADLINE)
            .unwrap_or_else(|e| panic!("no answer to {request}: {e}"));
        let answer: Value = serde_json::from_str(&line).expect("a JSON answer");
        if answer["ok"] == json!(true) {
            Ok(answer)
        } else {
            Err(answer["error"].as_str().unwrap_or("?").to_owned())
        }
    }

    fn call(&mut self, request: Value) -> Value {
        let shown = request.to_string();
        self.try_call(request)
            .unwrap_or_else(|e| panic!("official peer refused {shown}: {e}"))
    }
}

impl Drop for Official {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{}", json!({"cmd": "quit"}));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The official peer, or None (with the reason printed) where node or its modules are
/// absent; under CI=true their absence fails the test instead.
fn official() -> Option<Official> {
    match Official::start() {
        Ok(o) => Some(o),
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but the official library cannot run: {why}")
        }
        Err(why) => {
            eprintln!("skipped: {why}");
            None
        }
    }
}

fn bundle_json(b: &Bundle) -> Value {
    json!({
        "signed_prekey_id": b.signed_prekey_id,
        "signed_prekey": b64(&b.signed_prekey),
        "signature": b64(&b.signature),
        "identity_key": b64(&b.identity_key),
        "prekeys": b.prekeys.iter().map(|(id, k)| json!([id, b64(k)])).collect::<Vec<_>>(),
    })
}

fn bundle_from_json(v: &Value) -> Bundle {
    Bundle {
        signed_prekey_id: v["signed_prekey_id"].as_u64().expect("id") as u32,
        signed_prekey: unb64(&v["signed_prekey"]),
        signature: unb64(&v["signature"]),
        identity_key: unb64(&v["identity_key"]),
        prekeys: v["prekeys"]
            .as_array()
            .expect("prekeys")
            .iter()
            .map(|p| (p[0].as_u64().expect("id") as u32, unb64(&p[1])))
            .collect(),
    }
}

fn envelope_json(e: &Envelope) -> Value {
    json!({
        "sid": e.sid,
        "keys": e.keys.iter().map(|k| json!({"rid": k.rid, "prekey": k.prekey, "data": b64(&k.data)})).collect::<Vec<_>>(),
        "iv": b64(&e.iv),
        "payload": e.payload.as_deref().map(b64),
    })
}

/// An envelope from its XML, through the harness's codec.
fn parse_envelope(xml: &str) -> Envelope {
    let el = parse_fragment(xml.as_bytes(), &Limits::harness_ceilings()).expect("well-formed");
    Envelope::from_element(&el).expect("a valid envelope")
}

/// The harness's envelope as it would travel: written by the codec and parsed back.
fn over_the_wire(e: &Envelope) -> Envelope {
    parse_envelope(&e.to_element().to_xml())
}

const ALICE: &str = "alice@official.example";
const BOB: &str = "bob@gatekeeper.example";
const CAROL: &str = "carol@official.example";

#[test]
fn e2ee_live_exchange_with_the_official_library() {
    let Some(mut official) = official() else {
        return;
    };
    let alice_addr = Address::new(ALICE, 3001);
    let (seed, bob_id) = test_identity("bob", 0).expect("fixture");
    let mut bob = Device::generate(bob_id, seed, 5);
    let bob_addr = Address::new(BOB, bob_id);
    let peer = |a: &Address| json!({"jid": a.jid, "device": a.device});
    let me = |a: &Address, mut req: Value| {
        req["jid"] = json!(a.jid);
        req["device"] = json!(a.device);
        req
    };

    // The official bundle is well-formed and its XEdDSA signature verifies here.
    let created = official.call(json!({"cmd": "new", "jid": ALICE, "device": 3001, "prekeys": 3}));
    let alice_bundle = bundle_from_json(&created["bundle"]);
    assert_eq!(alice_bundle.verify(), Ok(()));
    let el = parse_fragment(
        alice_bundle.to_element().to_xml().as_bytes(),
        &Limits::harness_ceilings(),
    )
    .expect("xml");
    assert_eq!(Bundle::from_element(&el), Ok(alice_bundle.clone()));

    // A harness bundle with a broken signature is refused by the official library too.
    let mut forged = bob.bundle().with_prekeys(&[1]);
    forged.signature[0] ^= 1;
    let refused = official.try_call(me(
        &alice_addr,
        json!({"cmd": "start", "peer": peer(&bob_addr), "bundle": bundle_json(&forged)}),
    ));
    assert!(
        refused.is_err(),
        "the official library took a bad signature"
    );

    // Official -> harness: X3DH on the harness's bundle (one prekey, as handed out).
    let handed = bob.bundle().with_prekeys(&[2]);
    official.call(me(
        &alice_addr,
        json!({"cmd": "start", "peer": peer(&bob_addr), "bundle": bundle_json(&handed)}),
    ));
    let first = official.call(me(
        &alice_addr,
        json!({"cmd": "omemo_encrypt", "peers": [peer(&bob_addr)], "text": "hello from libsignal ✓"}),
    ));
    let envelope = parse_envelope(first["xml"].as_str().expect("xml"));
    assert!(envelope.keys[0].prekey);
    let got = bob
        .decrypt(ALICE, &envelope)
        .expect("harness decrypts official");
    assert_eq!(got.text.as_deref(), Some("hello from libsignal ✓"));
    assert!(got.prekey_message);
    assert_eq!(got.consumed_prekey, Some(2));
    assert_eq!(got.identity, alice_bundle.identity_key);
    assert_eq!(got.identity_status, IdentityStatus::New);

    // Harness -> official: the reply is a SignalMessage.
    let reply = over_the_wire(
        &bob.encrypt(
            std::slice::from_ref(&alice_addr),
            "reply from gatecheck".as_bytes(),
        )
        .expect("encrypt"),
    );
    assert!(!reply.keys[0].prekey);
    let answer = official.call(me(
        &alice_addr,
        json!({"cmd": "omemo_decrypt", "from": peer(&bob_addr), "envelope": envelope_json(&reply)}),
    ));
    assert_eq!(answer["text"], json!("reply from gatecheck"));

    // Ratchet steps both ways, each side receiving out of order.
    for round in 0..4 {
        let sent: Vec<Envelope> = (0..3)
            .map(|i| {
                let a = official.call(me(
                    &alice_addr,
                    json!({"cmd": "omemo_encrypt", "peers": [peer(&bob_addr)], "text": format!("o{round}.{i}")}),
                ));
                parse_envelope(a["xml"].as_str().expect("xml"))
            })
            .collect();
        for i in [2, 0, 1] {
            let got = bob.decrypt(ALICE, &sent[i]).expect("decrypt");
            assert_eq!(got.text, Some(format!("o{round}.{i}")));
            assert!(!got.prekey_message);
        }
        let replayed = bob.decrypt(ALICE, &sent[1]).expect_err("replay");
        assert_eq!(replayed.reason(), "duplicate");

        let back: Vec<Envelope> = (0..3)
            .map(|i| {
                over_the_wire(
                    &bob.encrypt(
                        std::slice::from_ref(&alice_addr),
                        format!("h{round}.{i}").as_bytes(),
                    )
                    .expect("encrypt"),
                )
            })
            .collect();
        for i in [1, 2, 0] {
            let a = official.call(me(
                &alice_addr,
                json!({"cmd": "omemo_decrypt", "from": peer(&bob_addr), "envelope": envelope_json(&back[i])}),
            ));
            assert_eq!(a["text"], json!(format!("h{round}.{i}")));
        }
        // The official library refuses the replay as well.
        assert!(
            official
                .try_call(me(
                    &alice_addr,
                    json!({"cmd": "omemo_decrypt", "from": peer(&bob_addr), "envelope": envelope_json(&back[0])}),
                ))
                .is_err()
        );
    }

    // Harness -> official prekey message: the harness sets up the session this time.
    let carol_addr = Address::new(CAROL, 4001);
    let created = official.call(json!({"cmd": "new", "jid": CAROL, "device": 4001, "prekeys": 2}));
    let carol_bundle = bundle_from_json(&created["bundle"]).with_prekeys(&[1]);
    assert_eq!(
        bob.start_session(&carol_addr, &carol_bundle),
        Ok(IdentityStatus::New)
    );
    let to_carol = over_the_wire(
        &bob.encrypt(std::slice::from_ref(&carol_addr), "hi carol".as_bytes())
            .expect("encrypt"),
    );
    assert!(to_carol.keys[0].prekey);
    let a = official.call(me(
        &carol_addr,
        json!({"cmd": "omemo_decrypt", "from": peer(&bob_addr), "envelope": envelope_json(&to_carol)}),
    ));
    assert_eq!(a["text"], json!("hi carol"));
    let from_carol = official.call(me(
        &carol_addr,
        json!({"cmd": "omemo_encrypt", "peers": [peer(&bob_addr)], "text": "hi bob", "iv_len": 16}),
    ));
    let env = parse_envelope(from_carol["xml"].as_str().expect("xml"));
    assert_eq!(env.iv.len(), 16);
    assert!(!env.keys[0].prekey);
    assert_eq!(
        bob.decrypt(CAROL, &env).expect("decrypt").text.as_deref(),
        Some("hi bob")
    );

    // The bare Signal layer: K || T bytes in both directions, as the OMEMO keys carry them.
    let k = bob
        .signal_encrypt(&carol_addr, &[7u8; 32])
        .expect("signal encrypt");
    let a = official.call(me(
        &carol_addr,
        json!({"cmd": "decrypt", "peer": peer(&bob_addr), "prekey": k.prekey, "data": b64(&k.data)}),
    ));
    assert_eq!(unb64(&a["data"]), vec![7u8; 32]);
    let m = official.call(me(
        &carol_addr,
        json!({"cmd": "encrypt", "peer": peer(&bob_addr), "data": b64(&[9u8; 32])}),
    ));
    let key = KeyElement {
        rid: bob_id,
        prekey: m["prekey"] == json!(true),
        data: unb64(&m["data"]),
    };
    let got = bob
        .signal_decrypt(&carol_addr, &key)
        .expect("signal decrypt");
    assert_eq!(got.plaintext, vec![9u8; 32]);
}

/// The official library's recorded messages, replayed into a Device rebuilt from the
/// recorded receiver's private keys: no node needed.
#[test]
fn e2ee_official_vectors_replay() {
    let text = std::fs::read_to_string(root().join("fixtures/e2ee/vectors.json"))
        .expect("fixtures/e2ee/vectors.json");
    let v: Value = serde_json::from_str(&text).expect("JSON");
    let b = &v["bob"];
    let id = |v: &Value| v.as_u64().expect("a number") as u32;
    let keys = DeviceKeys {
        device_id: id(&b["device_id"]),
        registration_id: id(&b["registration_id"]),
        identity_private: unb64(&b["identity_private"]),
        signed_prekey_id: id(&b["signed_prekey_id"]),
        signed_prekey_private: unb64(&b["signed_prekey_private"]),
        signed_prekey_signature: unb64(&b["signed_prekey_signature"]),
        prekeys: b["prekeys"]
            .as_array()
            .expect("prekeys")
            .iter()
            .map(|p| (id(&p[0]), unb64(&p[1])))
            .collect(),
    };
    let mut bob = Device::from_keys(&keys, [42; 32]).expect("keys load");

    // The same public keys as the official library derived, and its XEdDSA signature
    // verifies here; its bundle XML parses to the same bundle.
    let official_bundle = bundle_from_json(&b["bundle"]);
    assert_eq!(bob.bundle(), official_bundle);
    assert_eq!(official_bundle.verify(), Ok(()));
    let el = parse_fragment(
        b["bundle_xml"].as_str().expect("xml").as_bytes(),
        &Limits::harness_ceilings(),
    )
    .expect("well-formed");
    assert_eq!(Bundle::from_element(&el), Ok(official_bundle));

    let messages = v["messages"].as_array().expect("messages");
    assert!(messages.len() >= 8);
    for (i, m) in messages.iter().enumerate() {
        let envelope = parse_envelope(m["xml"].as_str().expect("xml"));
        let from = m["from_jid"].as_str().expect("jid");
        assert_eq!(envelope.sid, id(&m["from_device"]));
        let result = bob.decrypt(from, &envelope);
        match m["expect"].as_str().expect("expect") {
            "ok" => {
                let got = result.unwrap_or_else(|e| panic!("message {i}: {e}"));
                assert_eq!(got.text.as_deref(), m["text"].as_str(), "message {i}");
            }
            reason => assert_eq!(
                result.map(|d| d.text).map_err(|e| e.reason()),
                Err(reason),
                "message {i}"
            ),
        }
    }
    assert_eq!(bob.consumed_prekeys(), vec![1, 2]);
}
