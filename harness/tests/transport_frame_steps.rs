//! `send_frame`, `expect_abort` and `features_delay_ms` in scenario files: what loads, and the
//! load errors for frames on a connection that has none of its own.

use std::path::Path;

use gatecheck::scenario::step::FrameMode;
use gatecheck::scenario::{Action, Scenario, SuiteDirs};
use gatecheck::spec::Catalogue;

fn load(text: &str) -> Result<Scenario, String> {
    Scenario::parse(
        Path::new("scenarios/transport/x.toml"),
        text,
        Catalogue::embedded(),
        &SuiteDirs::bundled(),
    )
    .map_err(|e| e.to_string())
}

fn scenario(top: &str, steps: &str) -> String {
    format!(
        "id = \"transport/x\"\ntitle = \"t\"\nrequirements = [\"STREAM-8\"]\nrole = \"client\"\n{top}\n{steps}"
    )
}

const SESSION: &str = "[[step]]\nsession = {}\n";

#[test]
fn a_frame_step_on_a_pinned_noise_session_loads() {
    let steps = format!(
        "{SESSION}[[step]]\nsend_frame = {{ text = \"<presence/>\", mode = \"corrupt\" }}\n[[step]]\nexpect_abort = true\n"
    );
    let s = load(&scenario("transport = \"noise\"", &steps)).expect("loads");
    assert!(s.steps.iter().any(|st| st.action
        == Action::SendFrame {
            text: Some("<presence/>".into()),
            mode: FrameMode::Corrupt
        }));
    assert!(s.steps.iter().any(|st| st.action == Action::ExpectAbort));
    // The pin may sit on the session step instead.
    let steps = "[[step]]\nsession = { transport = \"noise\" }\n[[step]]\nsend_frame = { mode = \"empty\" }\n";
    load(&scenario("", steps)).expect("loads");
}

#[test]
fn frames_need_a_noise_connection() {
    let frame = "[[step]]\nsend_frame = { mode = \"empty\" }\n";
    let unpinned = load(&scenario("", &format!("{SESSION}{frame}"))).expect_err("refused");
    assert!(unpinned.contains("pin transport"), "{unpinned}");
    let tls = load(&scenario(
        "transport = \"tls\"",
        &format!("{SESSION}{frame}"),
    ))
    .expect_err("refused");
    assert!(tls.contains("TLS has no frames"), "{tls}");
    let before = load(&scenario("transport = \"noise\"", frame)).expect_err("refused");
    assert!(before.contains("needs a connection"), "{before}");
    let broken = format!("[[step]]\nconnect = {{ handshake = \"garbage\" }}\n{frame}");
    let broken = load(&scenario("", &broken)).expect_err("refused");
    assert!(broken.contains("completed Noise handshake"), "{broken}");
}

#[test]
fn frame_modes_and_texts_are_checked_when_loading() {
    let with = |f: &str| {
        load(&scenario(
            "transport = \"noise\"",
            &format!("{SESSION}[[step]]\nsend_frame = {f}\n"),
        ))
        .expect_err("refused")
    };
    assert!(with("{ text = \"x\", mode = \"shuffle\" }").contains("not one of split"));
    assert!(with("{ mode = \"corrupt\" }").contains("needs a `text`"));
    assert!(with("{ text = \"x\", mode = \"empty\" }").contains("takes no `text`"));
    assert!(with("{ text = \"x\", mode = \"reorder\" }").contains("two bytes"));
    let server = "id = \"transport/x\"\ntitle = \"t\"\nrequirements = [\"STREAM-8\"]\nrole = \"server\"\n[[step]]\nexpect_abort = true\n";
    assert!(load(server).is_err());
}

#[test]
fn features_delay_is_a_negotiate_option() {
    let steps = "[[step]]\nconnect = {}\n[[step]]\nnegotiate = { features_delay_ms = 300 }\n";
    let s = load(&scenario("", steps)).expect("loads");
    let delay = s.steps.iter().find_map(|st| match &st.action {
        Action::Negotiate(n) => n.features_delay,
        _ => None,
    });
    assert_eq!(delay, Some(std::time::Duration::from_millis(300)));
    let header = "[[step]]\nconnect = {}\n[[step]]\nnegotiate = { upto = \"header\", features_delay_ms = 300 }\n";
    assert!(load(&scenario("", header)).is_err());
}
