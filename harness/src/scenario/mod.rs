//! Scenario files: the suite's scripts, loaded from `scenarios/<area>/<name>.toml`.
//!
//! A scenario names the SPEC.md requirements it verifies, the IUT role and
//! capabilities it needs, and an ordered list of steps. Loading validates
//! everything that can be checked before a run (requirement IDs exist, each
//! step has exactly one action, patterns are well-formed XML, fixtures exist)
//! and reports a mistake as `file:line: what is wrong`.

pub mod e2ee_step;
pub mod enroll_step;
pub mod http_step;
pub mod media_step;
pub mod pattern;
pub mod proxy_step;
pub mod push_step;
mod raw_step;
pub mod step;
pub mod vars;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::spec::Catalogue;
use crate::transport::TransportKind;
pub use step::{Action, HandshakeMode, Negotiate, SaslAnswer, Stage, Step};

/// A mistake in a scenario file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {message}", path.display())]
pub struct ScenarioError {
    pub path: PathBuf,
    pub line: usize,
    pub message: String,
}

/// The IUT roles a scenario can target (model.md).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Client,
    Server,
    Proxy,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Client => "client",
            Role::Server => "server",
            Role::Proxy => "proxy",
        })
    }
}

/// One loaded, validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub id: String,
    pub title: String,
    pub requirements: Vec<String>,
    pub role: Role,
    /// Capabilities the IUT must claim for the scenario to apply.
    pub needs: Vec<String>,
    /// Capabilities the IUT must not claim for the scenario to apply (what a client that
    /// lacks a feature must not advertise).
    pub needs_not: Vec<String>,
    /// The transport the scenario pins, if any; else the IUT's default.
    pub transport: Option<TransportKind>,
    /// When false, an initial presence (no `to`, no `type`) is ignored wherever it arrives.
    pub strict_presence: bool,
    /// Patterns of IUT stanzas that may arrive at any time without failing the scenario.
    pub ignore: Vec<String>,
    pub timeout_ms: Option<u64>,
    /// Named subsets of the suite the scenario belongs to (`xmpp-core`).
    pub profiles: Vec<String>,
    /// Gatekeeper users the harness plays besides its server (`actors = ["bob"]`): each has a
    /// full JID (`${bob.jid}`, `${bob.bare}`); stanzas the IUT addresses to one are routed to
    /// it, and steps with `actor = "bob"` send as or receive for it.
    pub actors: Vec<String>,
    /// Instances of the client IUT (`devices = ["phone", "laptop"]`): each is a process of
    /// its own with its own driver and connection, all logged in to the same account (one
    /// user's devices). Empty: one instance. Steps choose one with `device = "laptop"`.
    pub devices: Vec<String>,
    /// Role `client` with the IUT's own server launched beside it (SPEC.md §6.1: the whole
    /// chain of a combined IUT, proofs from its own server).
    pub chain: bool,
    pub steps: Vec<Step>,
    pub path: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    id: toml::Spanned<String>,
    title: String,
    requirements: toml::Spanned<Vec<String>>,
    role: Role,
    #[serde(default)]
    needs: Vec<String>,
    #[serde(default)]
    needs_not: Vec<String>,
    #[serde(default)]
    transport: Option<toml::Spanned<String>>,
    #[serde(default)]
    strict_presence: bool,
    #[serde(default)]
    ignore: Vec<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    profiles: Option<toml::Spanned<Vec<String>>>,
    #[serde(default)]
    actors: Option<toml::Spanned<Vec<String>>>,
    #[serde(default)]
    devices: Option<toml::Spanned<Vec<String>>>,
    #[serde(default)]
    chain: bool,
    #[serde(rename = "step")]
    steps: Vec<toml::Spanned<raw_step::RawStep>>,
}

/// Capability names a scenario may require and an IUT may claim: the optional capabilities
/// of SPEC.md §3.3, read from the embedded SPEC.md.
pub fn known_capabilities() -> &'static [String] {
    crate::spec::embedded_capabilities()
}

/// Profiles a scenario may belong to (`profiles = [...]`, `--profile NAME`).
///
/// `xmpp-core`: every requirement the scenario cites has an `rfc` basis in SPEC.md, and
/// what its steps check is what RFC 6120/6121 (or the XEP they name) requires of that
/// party, at the RFC's level: a plain XMPP implementation is measured fairly by it.
///
/// `omemo`: end-to-end encryption scenarios a stock OMEMO client (XEP-0384 v0.3.0) can take
/// without this profile's enrollment: the checks rest on XEP-0384 and the Signal
/// specifications, with the profile's stricter rules (E2EE-31, receipts tied to decryption)
/// named as such in their requirements.
pub const KNOWN_PROFILES: &[&str] = &["xmpp-core", "omemo"];

/// Where scenario files and fixtures live, for resolving `send_fixture` paths.
///
/// Either may be under [`crate::bundle::ROOT`]: read files through [`crate::bundle`] (or
/// [`crate::wire::fixture_bytes`]), never with `std::fs` directly.
#[derive(Debug, Clone)]
pub struct SuiteDirs {
    pub scenarios: PathBuf,
    pub fixtures: PathBuf,
}

impl SuiteDirs {
    /// The suite compiled into this binary ([`crate::bundle`]): the same wherever the
    /// binary is installed and whatever the working directory.
    pub fn bundled() -> SuiteDirs {
        let root = Path::new(crate::bundle::ROOT);
        SuiteDirs {
            scenarios: root.join("scenarios"),
            fixtures: root.join("fixtures"),
        }
    }
}

/// Converts a byte offset in `text` to a 1-based line number.
pub fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

impl Scenario {
    /// Parses and validates one scenario file's text.
    pub fn parse(
        path: &Path,
        text: &str,
        catalogue: &Catalogue,
        dirs: &SuiteDirs,
    ) -> Result<Scenario, ScenarioError> {
        let err = |offset: usize, message: String| ScenarioError {
            path: path.to_path_buf(),
            line: line_of(text, offset),
            message,
        };
        let raw: RawScenario = toml::from_str(text).map_err(|e| {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            match raw_step::key_offset(e.message()) {
                Some((key_at, message)) => err(key_at, message.to_string()),
                None => err(offset, e.message().to_string()),
            }
        })?;

        let id_at = raw.id.span().start;
        let id = raw.id.into_inner();
        let id_ok = !id.is_empty()
            && id.split('/').all(|part| {
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            });
        if !id_ok {
            return Err(err(
                id_at,
                format!("id {id:?} must be `area/name` in lowercase letters, digits and '-'"),
            ));
        }
        let expected_id = expected_id_from_path(path, &dirs.scenarios);
        if let Some(expected) = expected_id
            && expected != id
        {
            return Err(err(
                id_at,
                format!(
                    "id {id:?} does not match the file's place in the suite ({expected:?}); ids are paths below the suite's root, so give --scenarios the root directory and select an area with --filter {}/",
                    id.split('/').next().unwrap_or_default()
                ),
            ));
        }

        let req_at = raw.requirements.span().start;
        let requirements = raw.requirements.into_inner();
        if requirements.is_empty() {
            return Err(err(
                req_at,
                "a scenario must cite at least one SPEC.md requirement".into(),
            ));
        }
        let mut seen = BTreeSet::new();
        for r in &requirements {
            if !catalogue.contains(r) {
                return Err(err(req_at, format!("requirement {r} is not in SPEC.md")));
            }
            if !seen.insert(r) {
                return Err(err(req_at, format!("requirement {r} is cited twice")));
            }
        }
        for (key, list) in [("needs", &raw.needs), ("needs_not", &raw.needs_not)] {
            for need in list {
                if !known_capabilities().contains(need) {
                    return Err(err(
                        0,
                        format!(
                            "unknown capability {need:?} in {key} (known: {})",
                            known_capabilities().join(", ")
                        ),
                    ));
                }
            }
        }
        if let Some(both) = raw.needs.iter().find(|n| raw.needs_not.contains(n)) {
            return Err(err(
                0,
                format!("{both:?} is in both needs and needs_not: the scenario could never apply"),
            ));
        }
        let transport = match raw.transport {
            None => None,
            Some(t) => {
                let at = t.span().start;
                let t = t.into_inner();
                Some(t.parse::<TransportKind>().map_err(|_| {
                    err(at, format!("transport {t:?} must be \"noise\" or \"tls\""))
                })?)
            }
        };
        let (profiles, _) = distinct_names(raw.profiles, "profile", |name| {
            if KNOWN_PROFILES.contains(&name) {
                Ok(())
            } else {
                Err(format!(
                    "unknown profile {name:?} in profiles (known: {})",
                    KNOWN_PROFILES.join(", ")
                ))
            }
        })
        .map_err(|(at, m)| err(at, m))?;
        let mut needs = raw.needs;
        if let Some(t) = transport {
            let cap = format!("transport.{t}");
            if !needs.contains(&cap) {
                needs.push(cap);
            }
        }
        for p in &raw.ignore {
            pattern::validate_template(p).map_err(|m| err(0, format!("ignore pattern: {m}")))?;
        }
        if raw.steps.is_empty() {
            return Err(err(
                text.len(),
                "a scenario needs at least one [[step]]".into(),
            ));
        }
        let (actors, actors_at) =
            distinct_names(raw.actors, "actor", actor_name_ok).map_err(|(at, m)| err(at, m))?;
        if !actors.is_empty() && raw.role != Role::Client {
            return Err(err(
                actors_at,
                "gatekeeper-user actors talk to a client IUT: they need role = \"client\"".into(),
            ));
        }
        let (devices, devices_at) =
            distinct_names(raw.devices, "device", actor_name_ok).map_err(|(at, m)| err(at, m))?;
        if !devices.is_empty() && raw.role != Role::Client {
            return Err(err(
                devices_at,
                "devices are instances of a client IUT: they need role = \"client\"".into(),
            ));
        }
        if devices.len() == 1 {
            return Err(err(
                devices_at,
                "one device is the default: name devices only when there are two or more".into(),
            ));
        }
        if let Some(both) = devices.iter().find(|d| actors.contains(d)) {
            return Err(err(
                devices_at,
                format!("{both:?} is both a gatekeeper user (actors) and a device"),
            ));
        }
        let mut steps = Vec::with_capacity(raw.steps.len());
        for s in raw.steps {
            let at = s.span().start;
            let line = line_of(text, at);
            let step = step::Step::from_raw(s.into_inner(), line, dirs).map_err(|m| err(at, m))?;
            if let Some(r) = step.first().and_then(|s| s.requirement.as_ref())
                && !requirements.contains(r)
            {
                return Err(err(
                    at,
                    format!("step requirement {r} is not among the scenario's requirements"),
                ));
            }
            for st in &step {
                if let Some(a) = &st.actor
                    && !actors.contains(a)
                {
                    return Err(err(
                        at,
                        format!("actor {a:?} is not declared in the scenario's `actors`"),
                    ));
                }
                if let Some(d) = &st.device
                    && !devices.contains(d)
                {
                    return Err(err(
                        at,
                        format!("device {d:?} is not declared in the scenario's `devices`"),
                    ));
                }
                level_ok(st, &requirements, catalogue).map_err(|m| err(at, m))?;
                st.action.fits_role(raw.role).map_err(|m| err(at, m))?;
            }
            steps.extend(step);
        }
        step::frames_need_noise(&steps, transport).map_err(|(line, message)| ScenarioError {
            path: path.to_path_buf(),
            line,
            message,
        })?;
        if raw.role == Role::Proxy {
            proxy_step::clients_connected_first(&steps).map_err(|(line, message)| {
                ScenarioError {
                    path: path.to_path_buf(),
                    line,
                    message,
                }
            })?;
        }
        Ok(Scenario {
            id,
            title: raw.title,
            requirements,
            role: raw.role,
            needs,
            needs_not: raw.needs_not,
            transport,
            strict_presence: raw.strict_presence,
            ignore: raw.ignore,
            timeout_ms: raw.timeout_ms,
            profiles,
            actors,
            devices,
            chain: raw.chain,
            steps,
            path: path.to_path_buf(),
        })
    }
}

/// A list of names (profiles, actors), each checked by `check` and none twice; with the list's
/// offset in the file for errors. An absent list is empty.
fn distinct_names(
    list: Option<toml::Spanned<Vec<String>>>,
    what: &str,
    check: impl Fn(&str) -> Result<(), String>,
) -> Result<(Vec<String>, usize), (usize, String)> {
    let Some(list) = list else {
        return Ok((Vec::new(), 0));
    };
    let at = list.span().start;
    let names = list.into_inner();
    let mut seen = BTreeSet::new();
    for name in &names {
        check(name).map_err(|m| (at, m))?;
        if !seen.insert(name) {
            return Err((at, format!("{what} {name:?} is listed twice")));
        }
    }
    Ok((names, at))
}

/// Actor and device names become variable prefixes (`${bob.jid}`): lowercase letters, digits
/// and '-', starting with a letter, and none of the harness's own prefixes.
fn actor_name_ok(name: &str) -> Result<(), String> {
    let well_formed = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !well_formed {
        return Err(format!(
            "actor {name:?} must be lowercase letters, digits and '-', starting with a letter"
        ));
    }
    if ["gk", "client", "rand", "server"].contains(&name) {
        return Err(format!("actor {name:?} is a name the harness uses itself"));
    }
    Ok(())
}

/// A step's failure can only be charged to a requirement whose level can fail (MUST, MUST
/// NOT; a SHOULD becomes a warning, a MAY is a permission and can break nothing), and a
/// graded stream error names a SHOULD-level requirement the scenario cites.
fn level_ok(
    step: &step::Step,
    requirements: &[String],
    catalogue: &Catalogue,
) -> Result<(), String> {
    use crate::spec::Level;
    let level = |id: &str| catalogue.get(id).map(|r| r.level);
    let blamed = step
        .requirement
        .as_deref()
        .or(requirements.first().map(String::as_str));
    if let Some(id) = blamed
        && level(id) == Some(Level::May)
    {
        return Err(format!(
            "{id} is a MAY: it permits, so no failure can be charged to it (cite the MUST it implies first, or set the step's requirement)"
        ));
    }
    let graded = match &step.action {
        step::Action::ExpectStreamError(e) => Some(e),
        step::Action::Proxy(proxy_step::ProxyAction::ExpectStreamError { expect, .. }) => {
            Some(expect)
        }
        _ => None,
    };
    if let Some(e) = graded
        && let Some(should) = &e.should
    {
        let name = step.action.name();
        if !requirements.contains(should) {
            return Err(format!(
                "{name}: should = {should:?} is not among the scenario's requirements"
            ));
        }
        if !matches!(level(should), Some(Level::Should | Level::ShouldNot)) {
            return Err(format!(
                "{name}: should = {should:?} is not a SHOULD-level requirement"
            ));
        }
    }
    Ok(())
}

/// `scenarios/stream/open.toml` must have id `stream/open`.
fn expected_id_from_path(path: &Path, root: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let rel = rel.with_extension("");
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    Some(parts.join("/"))
}

/// Loads every `*.toml` below `dirs.scenarios`, sorted by id. All errors are
/// collected so that one run reports every broken file at once.
pub fn load_suite(
    dirs: &SuiteDirs,
    catalogue: &Catalogue,
) -> Result<Vec<Scenario>, Vec<ScenarioError>> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    collect_toml(&dirs.scenarios, &mut files, &mut errors);
    files.sort();
    let mut scenarios: Vec<Scenario> = Vec::new();
    for path in files {
        match crate::bundle::read_to_string(&path) {
            Ok(text) => match Scenario::parse(&path, &text, catalogue, dirs) {
                Ok(s) => scenarios.push(s),
                Err(e) => errors.push(e),
            },
            Err(e) => errors.push(ScenarioError {
                path: path.clone(),
                line: 0,
                message: format!("cannot read: {e}"),
            }),
        }
    }
    scenarios.sort_by(|a, b| a.id.cmp(&b.id));
    for pair in scenarios.windows(2) {
        if pair[0].id == pair[1].id {
            errors.push(ScenarioError {
                path: pair[1].path.clone(),
                line: 1,
                message: format!("duplicate scenario id {}", pair[1].id),
            });
        }
    }
    if errors.is_empty() {
        Ok(scenarios)
    } else {
        Err(errors)
    }
}

fn collect_toml(dir: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<ScenarioError>) {
    if let Some(bundled) = crate::bundle::bundled_files_under(dir) {
        files.extend(
            bundled
                .into_iter()
                .filter(|p| p.extension().is_some_and(|e| e == "toml")),
        );
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push(ScenarioError {
                path: dir.to_path_buf(),
                line: 0,
                message: format!("cannot read scenario directory: {e}"),
            });
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_toml(&path, files, errors);
        } else if path.extension().is_some_and(|e| e == "toml") {
            files.push(path);
        }
    }
}

/// Selects scenarios by `--filter` (glob with `*`, else substring; repeatable, any match
/// selects), `--profile` (the scenario lists it in `profiles`), `--scenario` (exact ids)
/// and `--partition K/N` (every N-th scenario of what the others selected).
pub fn select<'a>(
    scenarios: &'a [Scenario],
    filters: &[String],
    profile: Option<&str>,
    exact: &[String],
    partition: Option<(usize, usize)>,
) -> Vec<&'a Scenario> {
    scenarios
        .iter()
        .filter(|s| filters.is_empty() || filters.iter().any(|f| filter_matches(f, &s.id)))
        .filter(|s| profile.is_none_or(|p| s.profiles.iter().any(|q| q == p)))
        .filter(|s| exact.is_empty() || exact.iter().any(|e| e == &s.id))
        .enumerate()
        .filter(|(i, _)| partition.is_none_or(|(k, n)| i % n == k - 1))
        .map(|(_, s)| s)
        .collect()
}

/// `*` matches any run of characters; a pattern without `*` matches as a substring.
pub fn filter_matches(pattern: &str, id: &str) -> bool {
    if !pattern.contains('*') {
        return id.contains(pattern);
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let mut rest = id;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_filter() {
        assert!(filter_matches("stream/", "stream/open"));
        assert!(filter_matches("stream/*", "stream/open"));
        assert!(filter_matches("*open", "stream/open"));
        assert!(filter_matches("s*m/o*", "stream/open"));
        assert!(!filter_matches("stanza/*", "stream/open"));
        assert!(!filter_matches("*close", "stream/open"));
    }

    #[test]
    fn partitions_cover_the_suite_once() {
        let dirs = SuiteDirs::bundled();
        let suite = load_suite(&dirs, Catalogue::embedded()).expect("bundled suite loads");
        let mut seen: Vec<&str> = Vec::new();
        for k in 1..=3 {
            seen.extend(
                select(&suite, &[], None, &[], Some((k, 3)))
                    .iter()
                    .map(|s| s.id.as_str()),
            );
        }
        seen.sort();
        let all: Vec<&str> = suite.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(seen, all);
        let exact = select(&suite, &[], None, &["stanza/ping".to_string()], None);
        assert_eq!(exact.len(), 1);
    }

    #[test]
    fn filters_and_profile_select() {
        let dirs = SuiteDirs::bundled();
        let suite = load_suite(&dirs, Catalogue::embedded()).expect("bundled suite loads");
        let ids = |v: Vec<&Scenario>| -> Vec<String> { v.iter().map(|s| s.id.clone()).collect() };
        let both = ids(select(
            &suite,
            &["stanza/ping".into(), "*whitespace*".into()],
            None,
            &[],
            None,
        ));
        assert_eq!(
            both,
            [
                "proxy/client-side-whitespace-keepalive",
                "stanza/ping",
                "stanza/ping-from-user",
                "stanza/ping-two-devices",
                "stream/whitespace-keepalive"
            ]
        );
        let none = select(&suite, &["no-such-scenario".into()], None, &[], None);
        assert!(none.is_empty());
        let core = ids(select(&suite, &[], Some("xmpp-core"), &[], None));
        assert!(core.contains(&"stanza/ping".to_string()), "{core:?}");
        assert!(
            !core.contains(&"transport/noise-session".to_string()),
            "{core:?}"
        );
        let core_stream = ids(select(
            &suite,
            &["stream/".into()],
            Some("xmpp-core"),
            &[],
            None,
        ));
        assert!(
            core_stream
                .iter()
                .all(|id| id.starts_with("stream/") && core.contains(id))
        );
    }

    #[test]
    fn line_numbers() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 99), 3);
    }
}
