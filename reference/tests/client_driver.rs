//! The driver protocol's framing and the command line, without any server.

mod common;

use common::Iut;
use serde_json::json;

fn reference() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_gatecheck-reference"))
}

#[test]
fn list_mutants_prints_name_requirement_description() {
    let out = reference().arg("--list-mutants").output().expect("run");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 16, "{} mutants", lines.len());
    for line in &lines {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 3, "{line:?}");
        assert!(
            !fields[0].is_empty() && !fields[0].contains(' '),
            "{line:?}"
        );
        let (prefix, number) = fields[1].split_once('-').expect("REQ-ID");
        assert!(
            [
                "STREAM", "STANZA", "E2EE", "AUTH", "PUSH", "IDPROOF", "ENROLL", "MEDIA", "PROXY",
                "DRIVER"
            ]
            .contains(&prefix),
            "{line:?}"
        );
        assert!(number.parse::<u32>().is_ok(), "{line:?}");
        assert!(!fields[2].is_empty());
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("accept-doctype\tSTREAM-28\t"))
    );
}

#[test]
fn unknown_mutants_roles_and_missing_arguments_exit_2() {
    let out = reference()
        .args(["--mutant", "no-such-mutant"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-mutant"));
    assert!(out.stdout.is_empty());
    // The proxy role without its arguments names the first one missing.
    let out = reference().arg("proxy").output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen is required"));
    let out = reference().arg("no-such-role").output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-role"));
    // The server role without its arguments is a usage error that names what is missing.
    let out = reference().arg("server").output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--"));
}

#[tokio::test]
async fn ready_unsupported_bad_command_and_shutdown() {
    let mut iut = Iut::spawn(&[]).await;
    // send_text without a session answers at once (DRIVER.md: not-connected).
    iut.send(json!({"cmd":"send_text","seq":1,"to":"bob@gk.gatecheck.test","text":"hi"}))
        .await;
    let e = iut.expect("send_failed").await;
    assert_eq!(
        e,
        json!({"event":"send_failed","seq":1,"reason":"not-connected"})
    );
    // send_media: a file that is not there is a bad command; a real one needs a session.
    iut.send(
        json!({"cmd":"send_media","seq":5,"to":"bob@gk.gatecheck.test","path":"/nonexistent/x"}),
    )
    .await;
    let e = iut.expect("error").await;
    assert_eq!(
        (e["code"].as_str(), e["seq"].as_i64()),
        (Some("bad-command"), Some(5))
    );
    let file = std::env::temp_dir().join(format!("gatecheck-driver-test-{}", std::process::id()));
    std::fs::write(&file, b"a small file").expect("write");
    iut.send(json!({"cmd":"send_media","seq":8,"to":"bob@gk.gatecheck.test","path":file}))
        .await;
    let e = iut.expect("send_failed").await;
    assert_eq!(
        e,
        json!({"event":"send_failed","seq":8,"reason":"not-connected"})
    );
    let _ = std::fs::remove_file(&file);
    // A text E2EE-24 forbids, or a recipient that is not a bare JID, is a bad command.
    for (seq, to, text) in [(6, "bob@gk.gatecheck.test", ""), (7, "bob@gk/r", "hi")] {
        iut.send(json!({"cmd":"send_text","seq":seq,"to":to,"text":text}))
            .await;
        let e = iut.expect("error").await;
        assert_eq!(
            (e["code"].as_str(), e["seq"].as_i64()),
            (Some("bad-command"), Some(seq))
        );
    }
    iut.send(json!({"cmd":"teleport","seq":2})).await;
    assert_eq!(iut.expect("unsupported").await["cmd"], "teleport");
    iut.send_line("{not json").await;
    let e = iut.expect("error").await;
    assert_eq!(e["code"], "bad-command");
    assert!(e.get("seq").is_none());
    iut.send(json!({"cmd":"connect","seq":3})).await;
    let e = iut.expect("error").await;
    assert_eq!(
        (e["code"].as_str(), e["seq"].as_i64()),
        (Some("bad-command"), Some(3))
    );
    iut.send(json!({"cmd":"disconnect","seq":4})).await;
    assert_eq!(iut.expect("error").await["detail"], "not connected");
    iut.shutdown().await;
}

#[tokio::test]
async fn ready_line_is_exact() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatecheck-reference"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let line = lines.next_line().await.expect("read").expect("a line");
    assert_eq!(
        line,
        r#"{"event":"ready","driver":1,"name":"gatecheck-reference","version":"0.1.0","roles":["client"],"features":["transport.noise","transport.tls","media","chatstates"]}"#
    );
    drop(child.stdin.take());
    let status = child.wait().await.expect("wait");
    assert!(status.success(), "EOF on stdin ends the run cleanly");
}
