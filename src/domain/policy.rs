//! C2SP `tlog-policy`: which logs a verifier accepts, which witnesses it knows,
//! and the quorum of them a checkpoint needs (a witness, or a group of `k` of
//! its members, groups nesting; `none` for no witnesses).

use std::collections::{BTreeMap, BTreeSet};

use super::cosignature::CosignatureVerifier;

/// A quorum rule's node.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Member {
    Witness(String),
    Group { k: usize, members: Vec<String> },
}

/// A parsed policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The logs' verifier keys.
    pub logs: Vec<String>,
    /// The witnesses, by name.
    pub witnesses: BTreeMap<String, CosignatureVerifier>,
    names: BTreeMap<String, Member>,
    quorum: Option<String>,
}

/// The most logs, witnesses and groups a policy may define (the spec asks for
/// at least 32 of each).
const LIMIT: usize = 256;

fn err(line: usize, why: impl std::fmt::Display) -> String {
    format!("policy line {line}: {why}")
}

impl Policy {
    /// Reads a policy file.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text
            .bytes()
            .any(|b| b < 0x20 && b != b'\t' && b != b'\n' || b == 0x7f)
        {
            return Err("policy: control characters other than tab and newline".into());
        }
        let mut policy = Policy {
            logs: Vec::new(),
            witnesses: BTreeMap::new(),
            names: BTreeMap::new(),
            quorum: None,
        };
        for (i, line) in text.lines().enumerate() {
            let words: Vec<&str> = line.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
            match words.as_slice() {
                [] => {}
                [first, ..] if first.starts_with('#') => {}
                ["log", vkey] | ["log", vkey, _] => policy.add_log(i + 1, vkey)?,
                ["witness", name, vkey] | ["witness", name, vkey, _] => {
                    policy.add_witness(i + 1, name, vkey)?
                }
                ["group", name, k, members @ ..] if !members.is_empty() => {
                    policy.add_group(i + 1, name, k, members)?
                }
                ["quorum", name] => {
                    if policy.quorum.is_some() {
                        return Err(err(i + 1, "a second quorum line"));
                    }
                    if *name != "none" && !policy.names.contains_key(*name) {
                        return Err(err(i + 1, format!("quorum {name}: not defined above")));
                    }
                    policy.quorum = Some(name.to_string());
                }
                _ => return Err(err(i + 1, format!("not a policy line: {line:?}"))),
            }
            if policy.logs.len() + policy.names.len() > LIMIT {
                return Err(err(
                    i + 1,
                    "more logs, witnesses and groups than this verifier takes",
                ));
            }
        }
        if policy.quorum.is_none() {
            return Err("policy: no quorum line".into());
        }
        Ok(policy)
    }

    fn add_log(&mut self, line: usize, vkey: &str) -> Result<(), String> {
        signed_note::StandardVerifier::new(vkey)
            .map_err(|e| err(line, format!("log: not a log verifier key ({e})")))?;
        let key = vkey.rsplit('+').next().unwrap_or_default().to_string();
        if self
            .logs
            .iter()
            .any(|l| l.rsplit('+').next() == Some(key.as_str()))
        {
            return Err(err(line, "the same log key twice"));
        }
        self.logs.push(vkey.to_string());
        Ok(())
    }

    fn add_witness(&mut self, line: usize, name: &str, vkey: &str) -> Result<(), String> {
        let verifier = CosignatureVerifier::new(vkey)
            .map_err(|e| err(line, format!("witness {name}: {e}")))?;
        let key = vkey.rsplit('+').next().unwrap_or_default();
        if self
            .witnesses
            .values()
            .any(|w| w.vkey().rsplit('+').next() == Some(key))
        {
            return Err(err(
                line,
                format!("witness {name}: the same key as another witness"),
            ));
        }
        self.define(line, name, Member::Witness(name.to_string()))?;
        self.witnesses.insert(name.to_string(), verifier);
        Ok(())
    }

    fn add_group(
        &mut self,
        line: usize,
        name: &str,
        k: &str,
        members: &[&str],
    ) -> Result<(), String> {
        let mut seen = BTreeSet::new();
        for member in members {
            if *member == "none" || !self.names.contains_key(*member) {
                return Err(err(
                    line,
                    format!("group {name}: member {member} is not defined above"),
                ));
            }
            if !seen.insert(*member) {
                return Err(err(line, format!("group {name}: member {member} twice")));
            }
        }
        let n = members.len();
        let k = match k {
            "all" => n,
            "any" => 1,
            digits => digits
                .parse::<usize>()
                .ok()
                .filter(|k| (1..=n).contains(k) && !digits.starts_with('0'))
                .ok_or_else(|| {
                    err(
                        line,
                        format!("group {name}: threshold {digits} is not all, any or 1 to {n}"),
                    )
                })?,
        };
        let members = members.iter().map(|m| m.to_string()).collect();
        self.define(line, name, Member::Group { k, members })
    }

    fn define(&mut self, line: usize, name: &str, member: Member) -> Result<(), String> {
        if name == "none" || self.names.contains_key(name) {
            return Err(err(line, format!("the name {name} is taken")));
        }
        self.names.insert(name.to_string(), member);
        Ok(())
    }

    /// A policy of `k` of these witnesses (`--witness VKEY --quorum K`).
    pub fn k_of(witnesses: &[String], k: usize) -> Result<Self, String> {
        let mut text = String::new();
        for (i, vkey) in witnesses.iter().enumerate() {
            text.push_str(&format!("witness w{i} {vkey}\n"));
        }
        match witnesses.len() {
            0 => text.push_str("quorum none\n"),
            n => {
                let names: Vec<String> = (0..n).map(|i| format!("w{i}")).collect();
                text.push_str(&format!(
                    "group quorum-of-flags {k} {}\nquorum quorum-of-flags\n",
                    names.join(" ")
                ));
            }
        }
        Self::parse(&text)
    }

    /// Whether witnesses with these names cosigned enough.
    pub fn satisfied(&self, cosigned: &BTreeSet<String>) -> bool {
        match self.quorum.as_deref() {
            None | Some("none") => true,
            Some(name) => self.witnessed(name, cosigned),
        }
    }

    fn witnessed(&self, name: &str, cosigned: &BTreeSet<String>) -> bool {
        match self.names.get(name) {
            Some(Member::Witness(w)) => cosigned.contains(w),
            Some(Member::Group { k, members }) => {
                members
                    .iter()
                    .filter(|m| self.witnessed(m, cosigned))
                    .count()
                    >= *k
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::cosignature::WitnessKey;

    fn vkey(name: &str) -> String {
        WitnessKey::generate(name).unwrap().verifier_key()
    }

    #[test]
    fn the_specs_example_policy_reads_and_counts_groups() {
        let text = format!(
            "# a comment\nwitness X1 {}\nwitness X2 {}\nwitness X3 {}\ngroup X-witnesses 2 X1 X2 X3\n\n\
             witness Y1 {}\n  witness Y2 {} https://y2.example\ngroup Y-witnesses any Y1 Y2\n\
             group X-and-Y all X-witnesses Y-witnesses\nquorum X-and-Y\n",
            vkey("x1.example"), vkey("x2.example"), vkey("x3.example"), vkey("y1.example"), vkey("y2.example")
        );
        let policy = Policy::parse(&text).unwrap();
        let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
        assert!(policy.satisfied(&set(&["X1", "X3", "Y2"])));
        assert!(!policy.satisfied(&set(&["X1", "Y2"])), "one X is not two");
        assert!(!policy.satisfied(&set(&["X1", "X2", "X3"])), "no Y");
    }

    #[test]
    fn malformed_policies_are_refused_naming_the_line() {
        let a = vkey("a.example");
        for (text, says) in [
            ("".to_string(), "no quorum"),
            (format!("witness A {a}\nquorum B\n"), "line 2"),
            (
                format!("witness A {a}\nwitness B {a}\nquorum A\n"),
                "the same key",
            ),
            (
                format!("witness A {a}\ngroup G 2 A\nquorum G\n"),
                "threshold",
            ),
            (
                format!("witness A {a}\ngroup G any A A\nquorum G\n"),
                "twice",
            ),
            (
                format!("witness A {a}\nquorum A\nquorum A\n"),
                "second quorum",
            ),
            ("quorum none\nwhat is this\n".to_string(), "line 2"),
            (format!("witness none {a}\nquorum none\n"), "taken"),
        ] {
            let e = Policy::parse(&text).unwrap_err();
            assert!(e.contains(says), "{text:?}: {e}");
        }
        assert!(Policy::parse("quorum none\n")
            .unwrap()
            .satisfied(&BTreeSet::new()));
        let two = Policy::k_of(&[a, vkey("b.example")], 2).unwrap();
        let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
        assert!(two.satisfied(&set(&["w0", "w1"])) && !two.satisfied(&set(&["w1"])));
    }
}
