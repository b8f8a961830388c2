//! Scenario variables: `${name}` substitution and seeded random values.
//!
//! Built-ins are set by the runner (`client.jid`, `gk.domain`, ...); captures
//! from patterns (`@{name}`) add more; `${rand:NAME}` is a random token drawn
//! from the scenario's seeded generator the first time NAME is used, so a
//! rerun with the same seed sends the same bytes.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Variable values of one scenario run.
#[derive(Debug)]
pub struct Vars {
    values: BTreeMap<String, String>,
    rng: ChaCha8Rng,
}

fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

/// Checks `${...}` syntax without values: every opener is closed and names are valid.
pub fn check_template(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(at) = rest.find("${") {
        let after = &rest[at + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed `${{` in {template:?}"))?;
        let name = &after[..end];
        if !name_ok(name) {
            return Err(format!("bad variable name {name:?} in {template:?}"));
        }
        rest = &after[end + 1..];
    }
    Ok(())
}

pub use crate::roles::random_token;

/// A random (version 4) UUID in lowercase, drawn from the scenario's generator.
pub fn random_uuid(rng: &mut impl rand::Rng) -> String {
    let mut b: [u8; 16] = rng.random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

pub use crate::wire::xml_escape;

impl Vars {
    pub fn new(seed: u64) -> Vars {
        Vars {
            values: BTreeMap::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.values.insert(name.to_string(), value.into());
    }

    /// A value; `rand:NAME` draws and remembers a fresh token.
    pub fn get(&mut self, name: &str) -> Option<String> {
        if let Some(v) = self.values.get(name) {
            return Some(v.clone());
        }
        if name.starts_with("rand:") {
            let token = random_token(&mut self.rng, 12);
            self.values.insert(name.to_string(), token.clone());
            return Some(token);
        }
        if name.starts_with("uuid:") {
            let uuid = random_uuid(&mut self.rng);
            self.values.insert(name.to_string(), uuid.clone());
            return Some(uuid);
        }
        None
    }

    /// All values set so far.
    pub fn snapshot(&self) -> Vec<(String, String)> {
        self.values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The generator, for other seeded choices of the scenario (keys, ids).
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    /// Replaces every `${name}`, XML-escaping values. Unknown names are errors.
    pub fn substitute(&mut self, template: &str) -> Result<String, String> {
        self.substitute_with(template, xml_escape)
    }

    /// As `substitute`, with values inserted unchanged (for JSON strings).
    pub fn substitute_raw(&mut self, template: &str) -> Result<String, String> {
        self.substitute_with(template, str::to_string)
    }

    fn substitute_with(
        &mut self,
        template: &str,
        esc: fn(&str) -> String,
    ) -> Result<String, String> {
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(at) = rest.find("${") {
            out.push_str(&rest[..at]);
            let after = &rest[at + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("unclosed `${{` in {template:?}"))?;
            let name = &after[..end];
            let value = self
                .get(name)
                .ok_or_else(|| format!("unknown variable ${{{name}}} (known: {})", self.known()))?;
            out.push_str(&esc(&value));
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn known(&self) -> String {
        let mut names: Vec<&str> = self.values.keys().map(String::as_str).collect();
        names.push("rand:NAME");
        names.push("uuid:NAME");
        names.join(", ")
    }

    /// Substitutes inside every string of a JSON value (driver commands, expected events).
    pub fn substitute_json(
        &mut self,
        value: &serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        Ok(match value {
            // `"${int:NAME}"`, the whole string, is NAME's value as a JSON number.
            serde_json::Value::String(s)
                if s.starts_with("${int:") && s.ends_with('}') && s.matches("${").count() == 1 =>
            {
                let name = &s[6..s.len() - 1];
                let v = self.get(name).ok_or_else(|| {
                    format!("unknown variable ${{{name}}} (known: {})", self.known())
                })?;
                let n: i64 = v
                    .parse()
                    .map_err(|_| format!("${{int:{name}}}: {v:?} is not an integer"))?;
                serde_json::Value::from(n)
            }
            serde_json::Value::String(s) => serde_json::Value::String(self.substitute_raw(s)?),
            serde_json::Value::Array(a) => serde_json::Value::Array(
                a.iter()
                    .map(|v| self.substitute_json(v))
                    .collect::<Result<_, _>>()?,
            ),
            serde_json::Value::Object(o) => {
                let mut m = serde_json::Map::new();
                for (k, v) in o {
                    m.insert(k.clone(), self.substitute_json(v)?);
                }
                serde_json::Value::Object(m)
            }
            other => other.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_and_integers() {
        let mut v = Vars::new(3);
        let u = v.get("uuid:k").unwrap();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_eq!(v.get("uuid:k").unwrap(), u, "remembered");
        v.set("n", "1767225600");
        let j = serde_json::json!({"t": "${int:n}", "s": "${n}"});
        assert_eq!(
            v.substitute_json(&j).unwrap(),
            serde_json::json!({"t": 1767225600, "s": "1767225600"})
        );
        v.set("x", "abc");
        assert!(v.substitute_json(&serde_json::json!("${int:x}")).is_err());
    }

    #[test]
    fn substitutes_and_escapes() {
        let mut v = Vars::new(1);
        v.set("client.jid", "a@b/c");
        v.set("odd", "x'<y");
        assert_eq!(v.substitute("to='${client.jid}'").unwrap(), "to='a@b/c'");
        assert_eq!(v.substitute("${odd}").unwrap(), "x&apos;&lt;y");
        assert_eq!(v.substitute_raw("${odd}").unwrap(), "x'<y");
        let e = v.substitute("${nope}").unwrap_err();
        assert!(e.starts_with("unknown variable ${nope}"), "{e}");
    }

    #[test]
    fn random_tokens_are_seeded_and_stable() {
        let mut a = Vars::new(7);
        let mut b = Vars::new(7);
        let mut c = Vars::new(8);
        let t1 = a.get("rand:x").unwrap();
        assert_eq!(a.get("rand:x").unwrap(), t1, "same name, same value");
        assert_eq!(b.get("rand:x").unwrap(), t1, "same seed, same value");
        assert_ne!(c.get("rand:x").unwrap(), t1, "other seed, other value");
        assert_ne!(a.get("rand:y").unwrap(), t1);
    }

    #[test]
    fn template_syntax() {
        assert!(check_template("a ${b.c} d").is_ok());
        assert!(check_template("a ${b").is_err());
        assert!(check_template("a ${} d").is_err());
        assert!(check_template("a ${b c} d").is_err());
    }
}
