//! Every report format for a fixed run (fixed seed, run id, times and transcripts; a small
//! fixed requirement catalogue), as insta snapshots: what a CI system, a pull request and a
//! person get to read.

use gatecheck::report::fixed::{catalogue, fixed_interrupted_report, fixed_report};
use gatecheck::report::{Report, html, junit, markdown};

fn json(report: &Report) -> String {
    serde_json::to_string_pretty(report).expect("serializes")
}

fn junit_xml(report: &Report) -> String {
    let mut out = Vec::new();
    junit::write(report, &mut out).expect("writes");
    String::from_utf8(out).expect("UTF-8")
}

#[test]
fn report_json() {
    insta::assert_snapshot!(json(&fixed_report()));
}

#[test]
fn junit() {
    insta::assert_snapshot!(junit_xml(&fixed_report()));
}

#[test]
fn summary_md() {
    insta::assert_snapshot!(markdown::render(&fixed_report()));
}

#[test]
fn index_html() {
    insta::assert_snapshot!(html::render(&fixed_report(), catalogue()));
}

/// An interrupted run says so in every format, and lists what it did not start.
#[test]
fn interrupted_run() {
    let report = fixed_interrupted_report();
    let v: serde_json::Value = serde_json::from_str(&json(&report)).expect("JSON");
    assert_eq!(v["interrupted"], "SIGINT");
    assert_eq!(v["not_run"].as_array().map(Vec::len), Some(2));
    let xml = junit_xml(&report);
    assert!(
        xml.contains("<testcase name=\"stanza/presence\" classname=\"gatecheck.stanza\">"),
        "{xml}"
    );
    assert_eq!(xml.matches("type=\"not-run\"").count(), 2, "{xml}");
    insta::assert_snapshot!(markdown::render(&report));
    let page = html::render(&report, catalogue());
    assert!(
        page.contains("interrupted by SIGINT, 2 not run"),
        "headline"
    );
    assert_eq!(page.matches("class=\"scenario not-run\"").count(), 2);
}

/// Whatever a scenario's data holds, no format breaks: markup is escaped in the page,
/// characters XML cannot carry are spelled out in junit.xml, and the XML parses.
#[test]
fn hostile_data_is_escaped() {
    let mut report = fixed_report();
    let nasty = "</pre></td><script>alert(1)</script>\u{0}\u{1b}[31m|`x`|]]>";
    let r = &mut report.scenarios[2].result;
    if let Some(f) = r.failure.as_mut() {
        f.got = nasty.into();
    }
    if let Some(t) = r.transcript.as_mut() {
        t[0].data = nasty.into();
    }
    let page = html::render(&report, catalogue());
    assert!(!page.contains("<script>alert"), "markup escaped");
    assert!(page.contains("&lt;/pre&gt;&lt;/td&gt;&lt;script&gt;"));
    let xml = junit_xml(&report);
    assert!(xml.contains("\\u{0}"), "NUL spelled out");
    let parsed = quick_junit::Report::deserialize_from_str(&xml);
    assert!(parsed.is_ok(), "junit.xml parses: {parsed:?}");
    let md = markdown::render(&report);
    assert!(md.contains("\\|"), "pipes escaped in table cells");
}
