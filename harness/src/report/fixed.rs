//! A fixed report: one scenario of each verdict, with a fixed seed, run id, times and
//! transcripts, so that the tests of every format (insta snapshots, the browser test of
//! index.html) see the same bytes on every machine. Not used by any command.

use std::time::{Duration, UNIX_EPOCH};

use super::{IutInfo, Report, RunFacts};
use crate::runner::{Failure, NotRun, ScenarioResult, Summary, Verdict, Warning};
use crate::spec::Catalogue;
use crate::transcript::{Direction, Entry};

/// A small requirement catalogue in SPEC.md's format, so that the fixed report does not
/// change when SPEC.md does: the requirements the fixed run cites, and one of each standing
/// the coverage matrix shows (a gap, one waiting for a later area, one only the gatekeeper
/// can break).
const SPEC: &str = "\
#### STREAM-10 [MUST] Direct TLS 1.3 with ALPN
A client MUST offer TLS 1.3 with ALPN xmpp-client.
Basis: profile (stricter than RFC 6120 §5, which allows STARTTLS)
Applies to: client

#### STREAM-12 [MUST] Gatekeeper certificate
The gatekeeper MUST present a certificate for its domain.
Basis: rfc (RFC 6120 §13.7.2); gatekeeper-only
Applies to: gatekeeper

#### STREAM-28 [MUST] Restricted XML refused
A receiver MUST refuse comments, processing instructions and DTDs.
Basis: rfc (RFC 6120 §11.1)
Applies to: client, server

#### STREAM-37 [MUST] Reconnection
A client MUST reconnect after losing its connection.
Basis: profile
Applies to: client

#### STREAM-38 [SHOULD] Exponential backoff
A client SHOULD back off exponentially between attempts.
Basis: profile
Applies to: client

#### STREAM-41 [SHOULD] Restricted XML condition
The condition SHOULD be restricted-xml.
Basis: rfc (RFC 6120 §11.1)
Applies to: client, server

#### STREAM-44 [MUST] Closing within 5 seconds of a stream error
A client MUST close its stream within 5 seconds of a stream error.
Basis: profile (stricter than RFC 6120 §4.9.1.1, which sets no time)
Applies to: client

#### STANZA-3 [MUST] One answer per request
An entity MUST answer each get or set exactly once.
Basis: rfc (RFC 6120 §8.2.3)
Applies to: client, server

#### STANZA-5 [MUST NOT] No answer to a result or an error
An entity MUST NOT answer an iq of type result or error.
Basis: rfc (RFC 6120 §8.2.3)
Applies to: client, server

#### STANZA-7 [MUST] XMPP Ping
A client MUST answer a ping with an empty result.
Basis: rfc (XEP-0199 §4.1)
Applies to: client

#### STANZA-8 [MUST] Service discovery
A client MUST answer disco#info.
Basis: profile (after XEP-0030)
Applies to: client

#### STANZA-11 [MUST] One-to-one messages
A client MUST send one-to-one messages of type chat.
Basis: profile; waits-for E2EE
Applies to: client
";

/// The fixed catalogue ([`SPEC`]).
pub fn catalogue() -> &'static Catalogue {
    static CATALOGUE: std::sync::OnceLock<Catalogue> = std::sync::OnceLock::new();
    CATALOGUE.get_or_init(|| Catalogue::parse(SPEC).expect("the fixed catalogue parses"))
}

fn entry(t_ms: f64, dir: Direction, data: &str) -> Entry {
    Entry {
        t_ms,
        dir,
        device: None,
        data: data.to_string(),
    }
}

fn session(ping_answer: &str) -> Vec<Entry> {
    vec![
        entry(0.03, Direction::Note, "launching gatecheck-reference"),
        entry(
            1.3,
            Direction::DriverEvent,
            r#"{"driver":1,"event":"ready","features":["transport.noise"],"name":"gatecheck-reference","roles":["client"],"version":"0.1.0"}"#,
        ),
        entry(1.4, Direction::Note, "step 1 (line 7): connect"),
        entry(
            1.6,
            Direction::DriverCommand,
            r#"{"cmd":"connect","seq":1,"host":"127.0.0.1","port":40000,"transport":"noise"}"#,
        ),
        entry(3.2, Direction::Note, "noise: handshake complete"),
        entry(
            3.9,
            Direction::FromIut,
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='gk.gatecheck.test' version='1.0'>",
        ),
        entry(
            4.0,
            Direction::ToIut,
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='gk.gatecheck.test' version='1.0'><stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>",
        ),
        entry(
            4.2,
            Direction::DriverEvent,
            r#"{"event":"connected","seq":1}"#,
        ),
        entry(4.4, Direction::Note, "step 2 (line 10): send"),
        entry(
            4.5,
            Direction::ToIut,
            "<iq type='get' id='p1' from='gk.gatecheck.test'><ping xmlns='urn:xmpp:ping'/></iq>",
        ),
        entry(4.6, Direction::Note, "step 3 (line 14): expect"),
        entry(5.1, Direction::FromIut, ping_answer),
    ]
}

fn result(id: &str, title: &str, requirements: &[&str], verdict: Verdict) -> ScenarioResult {
    ScenarioResult {
        id: id.into(),
        title: title.into(),
        requirements: requirements.iter().map(|r| r.to_string()).collect(),
        verdict,
        duration_ms: 12,
        seed: 1_234_567,
        failure: None,
        warnings: Vec::new(),
        transcript: Some(session(
            "<iq type='result' id='p1' to='gk.gatecheck.test'/>",
        )),
        iut_stderr: None,
    }
}

/// The fixed run's results: one of each verdict, and a pass with a warning.
pub fn fixed_results() -> Vec<ScenarioResult> {
    let pass = result(
        "stanza/ping",
        "The client answers a ping",
        &["STANZA-7", "STANZA-3"],
        Verdict::Pass,
    );
    let mut warned = result(
        "stream/restricted-comment",
        "A comment from the server is refused",
        &["STREAM-28", "STREAM-41"],
        Verdict::Pass,
    );
    warned.warnings.push(Warning {
        step: Some(4),
        line: Some(12),
        requirement: "STREAM-41".into(),
        expected: "<stream:error> with condition restricted-xml".into(),
        got:
            "<stream:error><bad-format xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
                .into(),
    });
    let mut fail = result(
        "stanza/iq-error-not-answered",
        "An iq error is not answered",
        &["STANZA-5"],
        Verdict::Fail,
    );
    fail.failure = Some(Failure {
        step: Some(3),
        line: Some(14),
        after_steps: false,
        requirement: Some("STANZA-7".into()),
        expected: "<iq type='result' id='p1'/>".into(),
        got: "<iq type=\"error\" id=\"p1\"><error type=\"cancel\"><service-unavailable xmlns=\"urn:ietf:params:xml:ns:xmpp-stanzas\"/></error></iq> | (mismatch at /iq: attribute type)".into(),
    });
    fail.transcript = Some(session(
        "<iq type=\"error\" id=\"p1\"><error type=\"cancel\"><service-unavailable xmlns=\"urn:ietf:params:xml:ns:xmpp-stanzas\"/></error></iq>",
    ));
    fail.iut_stderr = Some("ref: ping handler answered with an error\n".into());
    let mut profile_fail = result(
        "stream/close-after-error",
        "The client closes within 5 s of a stream error",
        &["STREAM-44"],
        Verdict::Fail,
    );
    profile_fail.failure = Some(Failure {
        step: Some(5),
        line: Some(20),
        after_steps: false,
        requirement: Some("STREAM-44".into()),
        expected: "the connection closed within 5000 ms".into(),
        got: "still open after 5000 ms".into(),
    });
    let mut unsure = result(
        "stream/reconnect-backoff",
        "The client backs off between reconnections",
        &["STREAM-37", "STREAM-38"],
        Verdict::Inconclusive,
    );
    unsure.failure = Some(Failure::outside_steps(
        "an IUT that can be tested",
        "the IUT answered `unsupported` to keep_connected",
    ));
    let mut na = result(
        "transport/tls-session",
        "A session over TLS 1.3",
        &["STREAM-10"],
        Verdict::NotApplicable,
    );
    na.failure = Some(Failure::outside_steps(
        "a scenario that applies to this IUT",
        "the IUT does not claim transport.tls",
    ));
    na.transcript = Some(Vec::new());
    let mut err = result(
        "stanza/disco-info",
        "The client answers disco#info",
        &["STANZA-8"],
        Verdict::Error,
    );
    err.failure = Some(Failure::outside_steps(
        "a working harness",
        "fixture fixtures/stanzas/good/missing.xml: no such file",
    ));
    vec![pass, warned, fail, profile_fail, unsure, na, err]
}

/// The facts of the fixed run, for [`Report::new`].
pub fn fixed_facts() -> RunFacts {
    let results = fixed_results();
    let mut summary = Summary::default();
    for r in &results {
        summary.count(r);
    }
    RunFacts {
        run_id: "20261126T023045Z-s42".into(),
        seed: 42,
        started_at: UNIX_EPOCH + Duration::from_secs(1_795_660_245),
        elapsed_ms: 1500,
        iut: IutInfo {
            name: "gatecheck-reference".into(),
            roles: vec!["client".into()],
            features: vec!["transport.noise".into()],
            transport: "noise".into(),
        },
        summary,
        interrupted: None,
        partition: None,
        rerun_prefix: "gatecheck run --mutant ping-error".into(),
        results,
        not_run: Vec::new(),
    }
}

/// The fixed run's report, with the measured fields (peak memory) cleared.
pub fn fixed_report() -> Report {
    let mut r = Report::new_in(fixed_facts(), catalogue());
    r.harness = Default::default();
    r
}

/// The fixed run stopped by SIGINT with two scenarios not started.
pub fn fixed_interrupted_report() -> Report {
    let mut facts = fixed_facts();
    facts.interrupted = Some("SIGINT".into());
    facts.not_run = vec![
        NotRun {
            id: "stanza/presence".into(),
            reason: "not started: the run was interrupted (SIGINT)".into(),
        },
        NotRun {
            id: "stream/limits".into(),
            reason: "not started: the run was interrupted (SIGINT)".into(),
        },
    ];
    let mut r = Report::new_in(facts, catalogue());
    r.harness = Default::default();
    r
}
