//! The suite's files: every bundled scenario loads and cites real requirements,
//! and a broken scenario file is reported with file:line and what is wrong.

use std::path::Path;

use gatecheck::roles::gatekeeper_server::req;
use gatecheck::scenario::proxy_step::ProxyAction;
use gatecheck::scenario::{Action, Role, Scenario, SuiteDirs, load_suite};
use gatecheck::spec::{BasisKind, Catalogue};

#[test]
fn the_bundled_suite_loads_and_cites_only_spec_ids() {
    let dirs = SuiteDirs::bundled();
    let suite = load_suite(&dirs, Catalogue::embedded()).unwrap_or_else(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        panic!("invalid scenario files:\n{}", lines.join("\n"))
    });
    assert!(suite.len() >= 30, "only {} scenarios", suite.len());
    for s in &suite {
        for r in &s.requirements {
            assert!(Catalogue::embedded().contains(r), "{} cites {r}", s.id);
        }
    }
}

/// `profiles = ["xmpp-core"]` promises that a plain XMPP implementation is judged only on
/// RFC 6120/6121 (and the XEPs they name) at their RFC level: every requirement such a
/// scenario cites has an `rfc` basis in SPEC.md, and none is one only the gatekeeper breaks.
#[test]
fn xmpp_core_scenarios_cite_only_rfc_requirements() {
    let dirs = SuiteDirs::bundled();
    let catalogue = Catalogue::embedded();
    let suite = load_suite(&dirs, catalogue).expect("bundled suite loads");
    let core: Vec<_> = suite
        .iter()
        .filter(|s| s.profiles.iter().any(|p| p == "xmpp-core"))
        .collect();
    assert!(core.len() >= 5, "only {} xmpp-core scenarios", core.len());
    for s in core {
        for id in &s.requirements {
            let r = catalogue.get(id).expect("cited requirement exists");
            assert_eq!(
                r.basis.kind,
                BasisKind::Rfc,
                "{} is xmpp-core but cites {id}, whose basis is {}",
                s.id,
                r.basis.describe()
            );
            assert!(!r.gatekeeper_only, "{} cites {id}", s.id);
        }
        // The checks a step attributes to a requirement of its own are covered too.
        for step in &s.steps {
            if let Some(id) = &step.requirement {
                let r = catalogue.get(id).expect("step requirement exists");
                assert_eq!(r.basis.kind, BasisKind::Rfc, "{} step cites {id}", s.id);
            }
        }
        if s.role == Role::Proxy {
            proxy_scenario_is_fair_to_a_plain_server(s, catalogue);
        }
    }
}

/// An xmpp-core proxy scenario judges the client-facing stream only, so that an XMPP server
/// in the proxy's place (fixtures/iut/prosody) is judged on RFC 6120 alone: each requirement
/// it cites constrains a proxy, and each client connects with `upstream = "optional"` (no
/// upstream connection is then not a PROXY-3 failure; the loader refuses the steps that
/// need one).
fn proxy_scenario_is_fair_to_a_plain_server(s: &Scenario, catalogue: &Catalogue) {
    for id in &s.requirements {
        let r = catalogue.get(id).expect("cited requirement exists");
        assert!(
            r.applies_to.iter().any(|a| a == "proxy"),
            "{} is an xmpp-core proxy scenario but cites {id}, which applies to {:?}",
            s.id,
            r.applies_to
        );
    }
    let mut connects = 0;
    for step in &s.steps {
        if let Action::Proxy(ProxyAction::Connect(c)) = &step.action {
            connects += 1;
            assert!(
                c.upstream_optional,
                "{} line {}: an xmpp-core proxy scenario connects with upstream = \"optional\"",
                s.id, step.line
            );
        }
    }
    assert!(connects > 0, "{} connects no client", s.id);
}

#[test]
fn requirement_ids_cited_by_the_harness_exist() {
    for id in req::ALL {
        assert!(
            Catalogue::embedded().contains(id),
            "harness check cites {id}, not in SPEC.md"
        );
    }
}

fn parse(text: &str) -> Result<Scenario, String> {
    let dirs = SuiteDirs::bundled();
    let path = dirs.scenarios.join("stream/example.toml");
    Scenario::parse(&path, text, Catalogue::embedded(), &dirs).map_err(|e| {
        let shown = e.to_string();
        // Strip the directory so the assertion reads the same on every machine.
        let file = Path::new(&shown).to_string_lossy().into_owned();
        file.rsplit_once("scenarios/")
            .map(|(_, rest)| rest.to_string())
            .unwrap_or(file)
    })
}

const HEAD: &str =
    "id = \"stream/example\"\ntitle = \"t\"\nrequirements = [\"STREAM-13\"]\nrole = \"client\"\n";

#[test]
fn a_valid_example_parses() {
    let s = parse(&format!(
        "{HEAD}\n[[step]]\nsession = {{}}\n\n[[step]]\nexpect_nothing = 10\n"
    ))
    .expect("valid");
    assert_eq!(s.steps.len(), 3, "session expands into connect + negotiate");
    assert_eq!(s.steps[2].line, 9);
}

#[test]
fn mistakes_are_reported_with_file_and_line() {
    let cases: &[(&str, &str)] = &[
        (
            "id = \"stream/example\"\ntitle = \"t\"\nrequirements = [\"STREAM-999\"]\nrole = \"client\"\n[[step]]\nsleep = 1\n",
            "stream/example.toml:3: requirement STREAM-999 is not in SPEC.md",
        ),
        (
            "id = \"stream/other\"\ntitle = \"t\"\nrequirements = [\"STREAM-13\"]\nrole = \"client\"\n[[step]]\nsleep = 1\n",
            "stream/example.toml:1: id \"stream/other\" does not match the file's place in the suite (\"stream/example\")",
        ),
        (
            &format!("{HEAD}\n[[step]]\nsend = \"<a/>\"\nsleep = 5\n"),
            "stream/example.toml:8: a step has one action, this one has send, sleep",
        ),
        (
            &format!("{HEAD}\n[[step]]\nexpect = \"<iq type='result'\"\n"),
            "stream/example.toml:6: expect: pattern is not well-formed XML",
        ),
        (
            &format!("{HEAD}\n[[step]]\nsend_fixture = \"stanzas/bad/nope.xml\"\n"),
            "stream/example.toml:6: send_fixture: no fixture \"stanzas/bad/nope.xml\"",
        ),
        (
            // An absolute path would replace the fixtures directory when joined to it.
            &format!("{HEAD}\n[[step]]\nsend_fixture = \"/etc/hostname\"\n"),
            "stream/example.toml:6: send_fixture: no fixture \"/etc/hostname\"",
        ),
        (
            &format!("{HEAD}\n[[step]]\nexpect_stream_error = [\"restricted-xmll\"]\n"),
            "stream/example.toml:6: \"restricted-xmll\" is not an RFC 6120 stream error condition",
        ),
        (
            &format!(
                "{HEAD}\n[[step]]\nconnect = {{ handshake = \"wrong-key\", transport = \"tls\" }}\n"
            ),
            "stream/example.toml:6: handshake mode needs transport noise, but the step pins tls",
        ),
        (
            &format!("{HEAD}\n[[step]]\nsend = \"${{oops\"\n"),
            "stream/example.toml:6: unclosed `${` in \"${oops\"",
        ),
        (
            &format!("{HEAD}\n[[step]]\nsendd = \"<a/>\"\n"),
            "stream/example.toml:7: unknown field `sendd`",
        ),
        (HEAD, "stream/example.toml:1: missing field `step`"),
        (
            &format!("{HEAD}\n[[step]]\nclose_stream = false\n"),
            "stream/example.toml:6: `close_stream = false` does nothing: write `close_stream = true`",
        ),
        (
            &format!("{HEAD}\n[[step]]\ntimeout_ms = 5\n"),
            "stream/example.toml:6: a step needs one action (session, connect, keep_connected, negotiate, send",
        ),
        (
            &format!("{HEAD}\n[[step]]\nexpect_closed = {{ close_tags = true }}\n"),
            "stream/example.toml:7: expect_closed: unknown field `close_tags`",
        ),
        (
            &format!("{HEAD}\n[[step]]\nsend = \"<iq/>\"\nactor = \"bob\"\n"),
            "stream/example.toml:6: actor \"bob\" is not declared in the scenario's `actors`",
        ),
        (
            &format!("{HEAD}actors = [\"bob\"]\n[[step]]\nsleep = 1\nactor = \"bob\"\n"),
            "stream/example.toml:6: `actor` goes with send, expect, expect_any, e2ee_send, e2ee_expect, e2ee_devices, media_send and media_share only (who sends, who receives)",
        ),
        (
            &format!("{HEAD}actors = [\"Bob\"]\n[[step]]\nsleep = 1\n"),
            "stream/example.toml:5: actor \"Bob\" must be lowercase letters, digits and '-', starting with a letter",
        ),
        (
            &format!("{HEAD}needs = [\"e2ee\"]\n[[step]]\nsleep = 1\n"),
            "stream/example.toml:1: unknown capability \"e2ee\" in needs (known: transport.noise, transport.tls, media, push, proxy, e2ee.pqxdh, chatstates)",
        ),
        (
            &format!("{HEAD}\n[[step]]\nhttp = {{ method = \"GET\", path = \"/\" }}\n"),
            "stream/example.toml:6: `http` talks to a provider server: it needs role = \"server\"",
        ),
        (
            "id = \"stream/example\"\ntitle = \"t\"\nrequirements = [\"AUTH-1\"]\nrole = \"server\"\n[[step]]\nexpect_event = { event = \"ready\" }\n",
            "stream/example.toml:5: `expect_event` needs a driven client connection: it needs role = \"client\" (a server scenario has only http, expect_http, media_store, media_fetch, media_clock and sleep)",
        ),
        (
            "id = \"stream/example\"\ntitle = \"t\"\nrequirements = [\"AUTH-1\"]\nrole = \"server\"\n[[step]]\ndriver = { cmd = \"connect\" }\n",
            "stream/example.toml:5: `driver` needs a driven client connection: it needs role = \"client\" (a server scenario has only http, expect_http, media_store, media_fetch, media_clock and sleep)",
        ),
        (
            "id = \"stream/example\"\ntitle = \"t\"\nrequirements = [\"STREAM-34\"]\nrole = \"client\"\n[[step]]\nsleep = 1\n",
            "stream/example.toml:5: STREAM-34 is a MAY: it permits, so no failure can be charged to it (cite the MUST it implies first, or set the step's requirement)",
        ),
        (
            &format!(
                "{HEAD}\n[[step]]\nexpect_stream_error = {{ pass = [\"restricted-xml\"], warn = [\"*\"], should = \"STREAM-13\" }}\n"
            ),
            "stream/example.toml:6: expect_stream_error: should = \"STREAM-13\" is not a SHOULD-level requirement",
        ),
        (
            &format!(
                "{HEAD}\n[[step]]\nexpect_stream_error = {{ pass = [\"restricted-xml\"], warn = [\"*\"] }}\n"
            ),
            "stream/example.toml:6: expect_stream_error: `warn` conditions and the SHOULD requirement they miss (`should`) go together",
        ),
        (
            &format!("{HEAD}profiles = [\"xmpp-kore\"]\n[[step]]\nsleep = 1\n"),
            "stream/example.toml:5: unknown profile \"xmpp-kore\" in profiles (known: xmpp-core, omemo)",
        ),
        (
            &format!("{HEAD}profiles = [\"xmpp-core\", \"xmpp-core\"]\n[[step]]\nsleep = 1\n"),
            "stream/example.toml:5: profile \"xmpp-core\" is listed twice",
        ),
        (
            &format!("{HEAD}\n[[step]]\nsleep = 5\nrequirement = \"STANZA-7\"\n"),
            "stream/example.toml:6: step requirement STANZA-7 is not among the scenario's requirements",
        ),
    ];
    for (text, want) in cases {
        let got = parse(text).expect_err(want);
        assert!(got.starts_with(want), "\n got: {got}\nwant: {want}");
    }
}
