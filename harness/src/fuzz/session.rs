//! One bound session of a campaign: the cases it carries and the scenario file that runs them.
//!
//! A session costs far more than a case (an IUT process, its driver's start-up, a Noise
//! handshake, SASL and bind; a case is a write and a ping's round trip), so a session carries
//! many cases: every case the IUT must survive ([`Expect::Live`]), each followed by its own
//! ping, which must be answered before the next case is sent; then at most one case that must
//! end the stream ([`Expect::StreamError`]), since nothing can follow it on that stream. Each
//! case keeps exactly the steps and the checks it has alone (its writes, then a ping and its
//! answer, or the stream error and the close), so a failure's step names its case
//! ([`case_of`]), and a session of one case is the scenario a case always was. A case split
//! into pieces ([`Case::writes`]) has a `send_fixture` step per piece, and a `sleep` after the
//! pieces that pause; what is checked after it is the same.

use std::collections::HashMap;
use std::path::PathBuf;

use super::cases::{Case, Expect};
use crate::scenario::{Action, Scenario, Step};

/// Steps a case written at once adds to a session's scenario: its fixture, then a ping and its
/// answer, or the stream error and the close.
pub const STEPS_PER_CASE: usize = 3;
/// Steps `session = {}` expands to before the first case (connect, negotiate).
pub const SESSION_STEPS: usize = 2;

/// What the IUT may send while a case runs without failing it: the stanza errors, results,
/// messages and presence the case's stanzas may cause.
const LIVE_IGNORE: &str =
    "[\"<iq type='error'/>\", \"<iq type='result'/>\", \"<message/>\", \"<presence/>\"]";

/// The fixture of piece `p` of `pieces` of case `k` of a session of `n` cases, relative to
/// the fixtures directory.
fn fixture_name(id: &str, k: usize, n: usize, p: usize, pieces: usize) -> String {
    let case = if n == 1 {
        id.to_owned()
    } else {
        format!("{id}-{k}")
    };
    if pieces == 1 {
        format!("fuzz/{case}.bin")
    } else {
        format!("fuzz/{case}.{p}.bin")
    }
}

/// Every fixture of a session's scenario (relative to the fixtures directory) and its bytes.
pub fn fixtures<'a>(id: &str, cases: &'a [Case]) -> Vec<(String, &'a [u8])> {
    let n = cases.len();
    let mut out = Vec::new();
    for (k, case) in cases.iter().enumerate() {
        let pieces = case.pieces();
        let count = pieces.len();
        for (p, (bytes, _)) in pieces.into_iter().enumerate() {
            out.push((fixture_name(id, k, n, p, count), bytes));
        }
    }
    out
}

/// The steps a case adds to a scenario: one per piece, one per pause, and two to judge it.
pub fn steps_of(case: &Case) -> usize {
    let pieces = case.pieces();
    pieces.len() + pieces.iter().filter(|(_, pause)| *pause > 0).count() + 2
}

/// The requirements a case's checks cite.
fn requirements(expect: &Expect) -> &'static [&'static str] {
    match expect {
        Expect::Live => &["STANZA-7", "STREAM-31"],
        Expect::StreamError(conditions) => match conditions.first().map(String::as_str) {
            Some("not-well-formed") => &["STREAM-30", "STREAM-24"],
            Some("unsupported-stanza-type") => &["STANZA-1", "STREAM-24"],
            Some("bad-format") => &["STANZA-2", "STREAM-24"],
            Some("restricted-xml") => &["STREAM-41", "STREAM-24"],
            _ => &["STREAM-24"],
        },
    }
}

fn quoted(list: &[&str]) -> String {
    list.iter()
        .map(|r| format!("\"{r}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The scenario file of a session (its fixtures are [`fixtures`]). `limit_ms` is the
/// scenario's time limit, for sessions of more than one case: the sum of what each case has
/// alone, so no case gets less time than it would alone.
pub fn scenario_text(id: &str, cases: &[Case], limit_ms: Option<u64>) -> String {
    let mut text = header_text(id, cases, limit_ms);
    let all_live = cases.iter().all(|c| c.expect == Expect::Live);
    for (k, case) in cases.iter().enumerate() {
        push_case_text(&mut text, id, k, cases.len(), case, all_live);
    }
    text
}

/// The start of a session's [`scenario_text`]: everything before the first case's steps (its
/// title, requirements, allowances and time limit, and the `session = {}` step).
pub fn header_text(id: &str, cases: &[Case], limit_ms: Option<u64>) -> String {
    let n = cases.len();
    let mut cited: Vec<&str> = Vec::new();
    for case in cases {
        for r in requirements(&case.expect) {
            if !cited.contains(r) {
                cited.push(r);
            }
        }
    }
    let title = match cases {
        [case] => {
            let how = case.how.replace(['"', '\\'], "'");
            match &case.expect {
                Expect::Live => format!(
                    "gatecheck fuzz ({how}): the IUT keeps serving (a ping after it is answered)"
                ),
                Expect::StreamError(c) => format!(
                    "gatecheck fuzz ({how}): refused with the stream error {}",
                    c.first().map_or("", String::as_str)
                ),
            }
        }
        _ => format!(
            "gatecheck fuzz: {n} cases on one stream (each must leave the IUT serving, a ping after it answered; a last one may have to end the stream)"
        ),
    };
    let mut text = format!(
        "id = \"fuzz/{id}\"\ntitle = \"{title}\"\nrequirements = [{}]\nrole = \"client\"\n",
        quoted(&cited)
    );
    if let Some(ms) = limit_ms.filter(|_| n > 1) {
        text.push_str(&format!("timeout_ms = {ms}\n"));
    }
    // With only cases that must leave the IUT serving, what they may cause is allowed
    // throughout, as for a case alone. A case that must end the stream allows nothing before
    // its stream error, so then the allowance goes on each ping's answer instead.
    let all_live = cases.iter().all(|c| c.expect == Expect::Live);
    if all_live {
        text.push_str(
            "# Stanza errors, results, messages and presence the cases may cause are allowed.\n",
        );
        text.push_str(&format!("ignore = {LIVE_IGNORE}\n"));
    }
    text.push_str("\n[[step]]\nsession = {}\n");
    text
}

/// The steps of case `k` of `n` in a session's [`scenario_text`].
fn push_case_text(text: &mut String, id: &str, k: usize, n: usize, case: &Case, all_live: bool) {
    if n > 1 {
        let how = case.how.replace(['\n', '\r'], " ");
        text.push_str(&format!("\n# case {k}: {how}\n"));
    }
    let pieces = case.pieces();
    let count = pieces.len();
    for (p, (_, pause)) in pieces.into_iter().enumerate() {
        text.push_str(&format!(
            "[[step]]\nsend_fixture = \"{}\"\n",
            fixture_name(id, k, n, p, count)
        ));
        if pause > 0 {
            text.push_str(&format!("\n[[step]]\nsleep = {pause}\n"));
        }
        if p + 1 < count {
            text.push('\n');
        }
    }
    match &case.expect {
        Expect::Live => {
            let probe = probe_name(k, n);
            text.push_str(&format!(
                "\n[[step]]\nsend = \"<iq type='get' id='${{rand:{probe}}}' from='${{gk.domain}}' to='${{client.jid}}'><ping xmlns='urn:xmpp:ping'/></iq>\"\n\n\
                 [[step]]\nexpect = \"<iq type='result' id='${{rand:{probe}}}'/>\"\n"
            ));
            if !all_live {
                text.push_str(&format!("ignore = {LIVE_IGNORE}\n"));
            }
        }
        Expect::StreamError(conditions) => {
            let first = conditions.first().map_or("", String::as_str);
            let list = conditions
                .iter()
                .map(|c| format!("\"{c}\""))
                .collect::<Vec<_>>()
                .join(", ");
            // restricted-xml is a SHOULD (STREAM-41): another condition passes with a
            // warning.
            let expect = if first == "restricted-xml" {
                format!("{{ pass = [{list}], warn = [\"*\"], should = \"STREAM-41\" }}")
            } else {
                format!("[{list}]")
            };
            text.push_str(&format!(
                "\n[[step]]\nexpect_stream_error = {expect}\n\n\
                 [[step]]\nexpect_closed = {{ close_tag = true }}\nrequirement = \"STREAM-24\"\n"
            ));
        }
    }
}

/// The name of case `k`'s ping id (`${rand:probe3}`) in a session of `n` cases.
fn probe_name(k: usize, n: usize) -> String {
    if n == 1 {
        "probe".to_owned()
    } else {
        format!("probe{k}")
    }
}

/// Makes the scenario of a session of many cases as [`Scenario::parse`] makes it from its
/// [`scenario_text`], without parsing each case's steps again: parsing a session's whole
/// text took 7 % of a campaign's CPU (`perf`), on steps that differ only in their fixture,
/// their ping's id and their line. The session's header and `session`
/// step are parsed ([`header_text`], the start of the same text); each case's steps are
/// those of a template case, parsed once ([`Composer::templates`]), with the case's fixture
/// names, ping id and lines put in. A session of one case, or one with pauses, is parsed whole.
#[derive(Debug, Default)]
pub struct Composer {
    /// The three steps of a case that must leave the IUT serving (its fixture, the ping, the
    /// answer) in a session with a stream-ending case (`[0]`) and without (`[1]`).
    live: [Option<Vec<Step>>; 2],
    /// The three steps of a case that must end the stream (its fixture, the stream error, the
    /// close), by its conditions.
    enders: HashMap<Vec<String>, Vec<Step>>,
}

impl Composer {
    /// Whether [`Composer::compose`] makes this session's scenario (else it is parsed whole).
    pub fn composes(cases: &[Case]) -> bool {
        cases.len() > 1
            && cases
                .iter()
                .all(|c| c.writes.iter().all(|piece| piece.pause_ms == 0))
    }

    /// The sessions whose parsed steps serve as templates: the case written at once that must
    /// leave the IUT serving is case 0 of each, and a case that must end the stream is the last.
    pub fn templates(all_live: bool, ender: Option<&[String]>) -> Vec<Case> {
        let case = |expect| Case {
            bytes: b"<message/>".to_vec(),
            how: "template".into(),
            expect,
            writes: Vec::new(),
        };
        let last = match (ender, all_live) {
            (Some(conditions), _) => Expect::StreamError(conditions.to_vec()),
            (None, true) => Expect::Live,
            (None, false) => Expect::StreamError(vec!["not-well-formed".into()]),
        };
        vec![case(Expect::Live), case(last)]
    }

    /// The scenario of session `id` of `cases` (see [`Composer::composes`]): `head` is the parse
    /// of its [`header_text`], `text` its [`scenario_text`], and `load` parses the template
    /// sessions ([`Composer::templates`]) the first time each is needed.
    pub fn compose(
        &mut self,
        mut head: Scenario,
        id: &str,
        cases: &[Case],
        text: &str,
        load: &mut dyn FnMut(&[Case]) -> Result<Scenario, String>,
    ) -> Result<Scenario, String> {
        let n = cases.len();
        let all_live = cases.iter().all(|c| c.expect == Expect::Live);
        // The line of each `[[step]]` after the session's, in order.
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| *l == "[[step]]")
            .map(|(i, _)| i + 1)
            .skip(1);
        let mut line = || {
            lines
                .next()
                .ok_or("a composed session has more steps than its text")
        };
        let mut steps = Vec::with_capacity(head.steps.len() + n * STEPS_PER_CASE);
        steps.append(&mut head.steps);
        for (k, case) in cases.iter().enumerate() {
            // Each template case is its fixture's step, then the two that judge it.
            let template = match &case.expect {
                Expect::Live => self.live_steps(all_live, load)?,
                Expect::StreamError(conditions) => self.ender_steps(conditions, load)?,
            };
            let [fixture, judge @ ..] = template else {
                return Err("a template case without its steps".into());
            };
            let pieces = case.pieces().len();
            for p in 0..pieces {
                let mut step = fixture.clone();
                step.action = Action::SendFixture(PathBuf::from(fixture_name(id, k, n, p, pieces)));
                step.line = line()?;
                steps.push(step);
            }
            // The ping's id is the only other thing that differs from case to case.
            let (from, to) = (
                format!("${{rand:{}}}", probe_name(0, 2)),
                format!("${{rand:{}}}", probe_name(k, n)),
            );
            for template in judge {
                let mut step = template.clone();
                match &mut step.action {
                    Action::Send(text) => *text = text.replace(&from, &to),
                    Action::Expect(patterns) => {
                        for p in patterns {
                            *p = p.replace(&from, &to);
                        }
                    }
                    _ => {}
                }
                step.line = line()?;
                steps.push(step);
            }
        }
        if line().is_ok() {
            return Err("a composed session has fewer steps than its text".into());
        }
        head.steps = steps;
        Ok(head)
    }

    fn live_steps(
        &mut self,
        all_live: bool,
        load: &mut dyn FnMut(&[Case]) -> Result<Scenario, String>,
    ) -> Result<&[Step], String> {
        let slot = &mut self.live[usize::from(all_live)];
        if slot.is_none() {
            let parsed = load(&Composer::templates(all_live, None))?;
            let case = parsed
                .steps
                .get(SESSION_STEPS..SESSION_STEPS + STEPS_PER_CASE)
                .ok_or("a template session without its first case's steps")?;
            *slot = Some(case.to_vec());
        }
        Ok(slot.as_deref().unwrap_or_default())
    }

    fn ender_steps(
        &mut self,
        conditions: &[String],
        load: &mut dyn FnMut(&[Case]) -> Result<Scenario, String>,
    ) -> Result<&[Step], String> {
        if !self.enders.contains_key(conditions) {
            let parsed = load(&Composer::templates(false, Some(conditions)))?;
            let last = parsed
                .steps
                .get(SESSION_STEPS + STEPS_PER_CASE..)
                .filter(|s| s.len() == STEPS_PER_CASE)
                .ok_or("a template session without its stream-ending case's steps")?;
            self.enders.insert(conditions.to_vec(), last.to_vec());
        }
        Ok(self
            .enders
            .get(conditions)
            .map(Vec::as_slice)
            .unwrap_or_default())
    }
}

/// The case a failure at (1-based) `step` of a session's scenario belongs to, and the step it
/// is in that case's scenario alone, written at once (so the same failure has the same step
/// whether the case was split or not). A failure outside the steps, or in setting the session
/// up, is charged to the first case; one after the last case's steps, to the last case.
pub fn case_of(step: Option<usize>, cases: &[Case]) -> (usize, Option<usize>) {
    let Some(s) = step.filter(|s| *s > SESSION_STEPS) else {
        return (0, step);
    };
    // The steps before case k.
    let mut before = 0;
    for (k, case) in cases.iter().enumerate() {
        let steps = steps_of(case);
        if s <= SESSION_STEPS + before + steps || k + 1 == cases.len() {
            // The case's writes count as its one send_fixture step.
            let writes = steps - 2;
            let local = s - before - SESSION_STEPS;
            let at_once = if local <= writes {
                1
            } else {
                local - writes + 1
            };
            return (k, Some(SESSION_STEPS + at_once));
        }
        before += steps;
    }
    (0, step)
}

/// The Live cases of `cases` before the one that must end the stream, if any, and that one.
pub fn split_ender(cases: &[Case]) -> (&[Case], Option<&Case>) {
    match cases.split_last() {
        Some((last, live)) if last.expect != Expect::Live => (live, Some(last)),
        _ => (cases, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::cases::Piece;
    use crate::scenario::{Action, Scenario, SuiteDirs};
    use crate::spec::Catalogue;

    fn case(bytes: &[u8], expect: Expect) -> Case {
        Case {
            bytes: bytes.to_vec(),
            how: "a \"quoted\" test".into(),
            expect,
            writes: Vec::new(),
        }
    }

    fn load(id: &str, cases: &[Case], limit: Option<u64>) -> Scenario {
        let dir = std::env::temp_dir().join(format!(
            "gatecheck-fuzz-session-{}-{id}",
            std::process::id()
        ));
        let dirs = SuiteDirs {
            scenarios: dir.join("scenarios"),
            fixtures: dir.join("fixtures"),
        };
        std::fs::create_dir_all(dirs.fixtures.join("fuzz")).unwrap();
        std::fs::create_dir_all(dirs.scenarios.join("fuzz")).unwrap();
        for (name, bytes) in fixtures(id, cases) {
            std::fs::write(dirs.fixtures.join(name), bytes).unwrap();
        }
        let path = dirs.scenarios.join(format!("fuzz/{id}.toml"));
        let text = scenario_text(id, cases, limit);
        let loaded = Scenario::parse(&path, &text, Catalogue::embedded(), &dirs);
        let _ = std::fs::remove_dir_all(&dir);
        loaded.unwrap_or_else(|e| panic!("{text}\n{e:?}"))
    }

    #[test]
    fn each_case_keeps_its_three_steps_and_their_checks() {
        let live = case(b"<message/>", Expect::Live);
        let ender = case(
            b"<message><a></message>",
            Expect::StreamError(vec!["not-well-formed".into()]),
        );
        let cases = vec![live.clone(), live.clone(), ender];
        let s = load("mixed", &cases, Some(60_000));
        assert_eq!(s.steps.len(), SESSION_STEPS + STEPS_PER_CASE * cases.len());
        assert_eq!(s.timeout_ms, Some(60_000));
        // A stream error case allows nothing before its error: the allowance is per ping.
        assert!(s.ignore.is_empty());
        for k in 0..2 {
            let expect = &s.steps[SESSION_STEPS + k * STEPS_PER_CASE + 2];
            assert!(matches!(expect.action, Action::Expect(_)));
            assert_eq!(expect.ignore.len(), 4, "case {k}");
        }
        let last = &s.steps[SESSION_STEPS + 2 * STEPS_PER_CASE + 1];
        assert!(matches!(last.action, Action::ExpectStreamError(_)));
        assert!(last.ignore.is_empty());
        assert_eq!(
            s.requirements,
            ["STANZA-7", "STREAM-31", "STREAM-30", "STREAM-24"]
        );

        // Only live cases: allowed throughout, as a case alone has it.
        let s = load("live", &[live.clone(), live.clone()], Some(40_000));
        assert_eq!(s.ignore.len(), 4);
        assert!(s.steps.iter().all(|st| st.ignore.is_empty()));

        // One case: the scenario a case alone always was, no time limit of its own.
        let s = load("one", std::slice::from_ref(&live), Some(20_000));
        assert_eq!(s.steps.len(), SESSION_STEPS + STEPS_PER_CASE);
        assert_eq!(s.timeout_ms, None);
        assert_eq!(s.ignore.len(), 4);
    }

    #[test]
    fn a_failing_step_names_its_case() {
        let five = vec![case(b"<message/>", Expect::Live); 5];
        // Connect and negotiate: the session, charged to the first case.
        assert_eq!(case_of(Some(1), &five), (0, Some(1)));
        assert_eq!(case_of(Some(2), &five), (0, Some(2)));
        assert_eq!(case_of(None, &five), (0, None));
        // Case 0 is steps 3 to 5, case 1 steps 6 to 8, as each is alone: 3 to 5.
        assert_eq!(case_of(Some(3), &five), (0, Some(3)));
        assert_eq!(case_of(Some(5), &five), (0, Some(5)));
        assert_eq!(case_of(Some(6), &five), (1, Some(3)));
        assert_eq!(case_of(Some(8), &five), (1, Some(5)));
        assert_eq!(case_of(Some(17), &five), (4, Some(5)));
        // Beyond the last case's steps: the last case.
        assert_eq!(case_of(Some(30), &five), (4, Some(18)));

        // Case 1 in three pieces, the first followed by a pause: steps 6 to 11.
        let mut split = five.clone();
        split[1].bytes = b"<message><body>x</body></message>".to_vec();
        split[1].writes = vec![
            Piece {
                len: 3,
                pause_ms: 5,
            },
            Piece {
                len: 4,
                pause_ms: 0,
            },
            Piece {
                len: 26,
                pause_ms: 0,
            },
        ];
        assert_eq!(steps_of(&split[1]), 6);
        // Its writes count as one step; the ping's answer is step 5, as written at once.
        assert_eq!(case_of(Some(7), &split), (1, Some(3)));
        assert_eq!(case_of(Some(9), &split), (1, Some(3)));
        assert_eq!(case_of(Some(10), &split), (1, Some(4)));
        assert_eq!(case_of(Some(11), &split), (1, Some(5)));
        assert_eq!(case_of(Some(12), &split), (2, Some(3)));
    }

    #[test]
    fn a_split_case_writes_each_piece_and_sleeps_where_it_pauses() {
        let mut c = case(b"<message><body>x</body></message>", Expect::Live);
        c.writes = vec![
            Piece {
                len: 3,
                pause_ms: 5,
            },
            Piece {
                len: 4,
                pause_ms: 0,
            },
            Piece {
                len: 26,
                pause_ms: 0,
            },
        ];
        let s = load("split", std::slice::from_ref(&c), None);
        let actions: Vec<&str> = s.steps.iter().map(|st| st.action.name()).collect();
        assert_eq!(
            actions[SESSION_STEPS..],
            [
                "send_fixture",
                "sleep",
                "send_fixture",
                "send_fixture",
                "send",
                "expect"
            ]
        );
        let names: Vec<String> = fixtures("split", std::slice::from_ref(&c))
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            names,
            ["fuzz/split.0.bin", "fuzz/split.1.bin", "fuzz/split.2.bin"]
        );
    }
}
