//! The upload body: `{"consistency_result": [...], "finished_time": N, ...}`.
//!
//! Parsed strictly (UTF-8, one JSON object, no duplicate keys, integers that are
//! integers) into types that cannot hold an out-of-range value. Unknown fields are
//! allowed; they stay in the stored raw body.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// Default cap on `consistency_result` items (`--max-results` raises it).
pub const DEFAULT_MAX_RESULTS: usize = 30;
/// The largest count SMS accepts.
pub const MAX_COUNT: u64 = 1_000_000;
/// The largest `finished_time` accepted (seconds since the epoch).
pub const MAX_FINISHED_TIME: u64 = 100_000_000_000;
/// The longest `dir_check`, in characters.
pub const MAX_DIR_CHECK_CHARS: usize = 1024;

/// The four count fields, in their order.
pub const COUNT_FIELDS: [&str; 4] = [
    "num_total_files",
    "num_different_files",
    "num_target_miss_files",
    "num_target_more_files",
];

/// A file count from 0 to 1,000,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Count(u32);

impl Count {
    /// A count, when within 0 to [`MAX_COUNT`].
    pub fn new(n: u64) -> Option<Self> {
        (n <= MAX_COUNT).then_some(Self(n as u32))
    }
    /// The count.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// The checked directory: a string of at most 1024 characters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct DirCheck(String);

impl DirCheck {
    /// A directory, when at most [`MAX_DIR_CHECK_CHARS`] characters.
    pub fn new(s: &str) -> Option<Self> {
        (s.chars().count() <= MAX_DIR_CHECK_CHARS).then(|| Self(s.to_string()))
    }
    /// The directory as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The four counts of an upload, summed over its results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    /// Files checked.
    pub num_total_files: i64,
    /// Files that differ.
    pub num_different_files: i64,
    /// Files missing on the target.
    pub num_target_miss_files: i64,
    /// Files only on the target.
    pub num_target_more_files: i64,
}

impl Totals {
    /// Different, missing and extra files: what is still wrong.
    pub fn problems(&self) -> i64 {
        self.num_different_files + self.num_target_miss_files + self.num_target_more_files
    }
}

/// One item of `consistency_result`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConsistencyResult {
    /// The checked directory.
    pub dir_check: DirCheck,
    /// Files checked.
    pub num_total_files: Count,
    /// Files that differ.
    pub num_different_files: Count,
    /// Files missing on the target.
    pub num_target_miss_files: Count,
    /// Files only on the target.
    pub num_target_more_files: Count,
}

impl ConsistencyResult {
    /// The four counts, in [`COUNT_FIELDS`] order.
    pub fn counts(&self) -> [Count; 4] {
        [
            self.num_total_files,
            self.num_different_files,
            self.num_target_miss_files,
            self.num_target_more_files,
        ]
    }
}

/// A parsed, valid upload body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadBody {
    /// The `consistency_result` items, in order.
    pub results: Vec<ConsistencyResult>,
    /// When the agent finished (seconds since the epoch), if it said.
    pub finished_time: Option<i64>,
}

impl UploadBody {
    /// Sums of the four counts over all items.
    /// The four counts summed over every result.
    pub fn totals(&self) -> Totals {
        let sum = |count: fn(&ConsistencyResult) -> Count| {
            self.results.iter().map(|r| i64::from(count(r).get())).sum()
        };
        Totals {
            num_total_files: sum(|r| r.num_total_files),
            num_different_files: sum(|r| r.num_different_files),
            num_target_miss_files: sum(|r| r.num_target_miss_files),
            num_target_more_files: sum(|r| r.num_target_more_files),
        }
    }

    /// Reads a body byte for byte as SMS would: UTF-8 JSON, an object, every field's rule; at most `max_results` items.
    pub fn parse(bytes: &[u8], max_results: usize) -> Result<Self, BodyError> {
        let text = std::str::from_utf8(bytes).map_err(|_| BodyError::NotUtf8)?;
        if text.starts_with('\u{feff}') {
            return Err(BodyError::NotJson(
                "it starts with a UTF-8 byte order mark (BOM), which JSON does not allow; send the body without it".into(),
            ));
        }
        // Valid bodies, the common case, are read straight into their types; any
        // other is read again as a tree, which names every problem.
        if let Some(body) = direct::parse(text, max_results) {
            return Ok(body);
        }
        Self::parse_tree(text, max_results)
    }

    /// Parses the whole body as a JSON tree first, then applies the rules to it,
    /// collecting every problem (the reference behaviour: `direct` must accept
    /// exactly the bodies this accepts, with the same values).
    fn parse_tree(text: &str, max_results: usize) -> Result<Self, BodyError> {
        let json: Json =
            serde_json::from_str(text).map_err(|e| BodyError::NotJson(e.to_string()))?;
        let Json::Object(fields) = &json else {
            return Err(BodyError::NotObject);
        };
        let mut problems = Problems::default();
        find_duplicate_keys(&json, &At::Root, &mut problems);
        let results_at = At::Key(&At::Root, "consistency_result");

        let mut results = Vec::new();
        match field(fields, "consistency_result") {
            None | Some(Json::Null) => {}
            Some(Json::Array(items)) if items.len() > max_results => problems.push(
                &results_at,
                format!(
                    "must have at most {} (got {})",
                    super::counted(max_results as u64, "item"),
                    items.len()
                ),
            ),
            Some(Json::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(r) = parse_item(item, &At::Index(&results_at, i), &mut problems) {
                        results.push(r);
                    }
                }
            }
            Some(_) => problems.push(
                &results_at,
                format!(
                    "must be an array of at most {}, or null",
                    super::counted(max_results as u64, "item")
                ),
            ),
        }

        let finished_time = match field(fields, "finished_time") {
            None | Some(Json::Null) => None,
            Some(Json::Uint(n)) if *n <= MAX_FINISHED_TIME => Some(*n as i64),
            Some(_) => {
                problems.push(
                    &At::Key(&At::Root, "finished_time"),
                    format!(
                        "must be an integer from 0 to {MAX_FINISHED_TIME}: a Unix time in seconds (not milliseconds)"
                    ),
                );
                None
            }
        };

        if problems.0.is_empty() {
            Ok(Self {
                results,
                finished_time,
            })
        } else {
            Err(BodyError::Fields(problems.0))
        }
    }
}

fn parse_item(item: &Json, at: &At, problems: &mut Problems) -> Option<ConsistencyResult> {
    let Json::Object(fields) = item else {
        problems.push(at, "must be an object".into());
        return None;
    };
    let dir_check_at = At::Key(at, "dir_check");
    let dir_check = match field(fields, "dir_check") {
        None => {
            problems.push(&dir_check_at, "is required".into());
            None
        }
        Some(Json::Str(s)) => DirCheck::new(s).or_else(|| {
            problems.push(
                &dir_check_at,
                format!("must be a string of at most {MAX_DIR_CHECK_CHARS} characters"),
            );
            None
        }),
        Some(_) => {
            problems.push(
                &dir_check_at,
                format!("must be a string of at most {MAX_DIR_CHECK_CHARS} characters"),
            );
            None
        }
    };
    let mut counts = [None; 4];
    for (slot, name) in counts.iter_mut().zip(COUNT_FIELDS) {
        let p = At::Key(at, name);
        *slot = match field(fields, name) {
            None => {
                problems.push(&p, "is required".into());
                None
            }
            Some(Json::Uint(n)) if Count::new(*n).is_some() => Count::new(*n),
            Some(_) => {
                problems.push(&p, format!("must be an integer from 0 to {MAX_COUNT}"));
                None
            }
        };
    }
    let [Some(t), Some(d), Some(m), Some(x)] = counts else {
        return None;
    };
    Some(ConsistencyResult {
        dir_check: dir_check?,
        num_total_files: t,
        num_different_files: d,
        num_target_miss_files: m,
        num_target_more_files: x,
    })
}

/// Reading a body straight into [`UploadBody`], without a tree: gives up (`None`)
/// at the first thing that is not valid, for `parse_tree` to explain. Keys are
/// still checked for duplicates at every level (values of unknown keys are read
/// as trees for that).
mod direct {
    use std::borrow::Cow;
    use std::fmt;

    use serde::de::{DeserializeSeed, Deserializer, Error, MapAccess, SeqAccess, Visitor};

    use super::*;

    pub(super) fn parse(text: &str, max_results: usize) -> Option<UploadBody> {
        let mut de = serde_json::Deserializer::from_str(text);
        let body = Top { max_results }.deserialize(&mut de).ok()?;
        de.end().ok()?;
        Some(body)
    }

    /// Keys an object may have here; more means a body worth the tree.
    const MAX_KEYS: usize = 8;

    /// An object's keys so far, kept inline (no allocation per object).
    #[derive(Default)]
    struct Keys<'a> {
        seen: [Cow<'a, str>; MAX_KEYS],
        len: usize,
    }

    impl<'a> Keys<'a> {
        fn add<E: Error>(&mut self, key: Cow<'a, str>) -> Result<(), E> {
            if self.len == MAX_KEYS || self.seen[..self.len].contains(&key) {
                return Err(E::custom("duplicate or too many keys"));
            }
            self.seen[self.len] = key;
            self.len += 1;
            Ok(())
        }
    }

    /// The value of a key the body rules do not name: any JSON without duplicate keys.
    fn other_value<'de, A: MapAccess<'de>>(map: &mut A) -> Result<(), A::Error> {
        let value: Json<'de> = map.next_value()?;
        let mut problems = Problems::default();
        find_duplicate_keys(&value, &At::Root, &mut problems);
        if problems.0.is_empty() {
            Ok(())
        } else {
            Err(A::Error::custom("duplicate key"))
        }
    }

    /// A non-negative integer up to `max` (as `Json::Uint` reads it).
    struct Uint {
        max: u64,
        null: bool,
    }

    impl<'de> Visitor<'de> for Uint {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "an integer from 0 to {}", self.max)
        }
        fn visit_u64<E: Error>(self, n: u64) -> Result<Option<u64>, E> {
            if n <= self.max {
                Ok(Some(n))
            } else {
                Err(E::custom("out of range"))
            }
        }
        fn visit_i64<E: Error>(self, n: i64) -> Result<Option<u64>, E> {
            u64::try_from(n)
                .map_err(|_| E::custom("negative"))
                .and_then(|n| self.visit_u64(n))
        }
        fn visit_unit<E: Error>(self) -> Result<Option<u64>, E> {
            if self.null {
                Ok(None)
            } else {
                Err(E::custom("null"))
            }
        }
    }

    impl<'de> DeserializeSeed<'de> for Uint {
        type Value = Option<u64>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<u64>, D::Error> {
            d.deserialize_any(self)
        }
    }

    struct Top {
        max_results: usize,
    }

    impl<'de> DeserializeSeed<'de> for Top {
        type Value = UploadBody;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<UploadBody, D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for Top {
        type Value = UploadBody;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an upload body")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UploadBody, A::Error> {
            let mut keys = Keys::default();
            let (mut results, mut finished_time) = (Vec::new(), None);
            while let Some(Key(key)) = map.next_key()? {
                match key.as_ref() {
                    "consistency_result" => {
                        results = map
                            .next_value_seed(Results {
                                max_results: self.max_results,
                            })?
                            .unwrap_or_default()
                    }
                    "finished_time" => {
                        finished_time = map
                            .next_value_seed(Uint {
                                max: MAX_FINISHED_TIME,
                                null: true,
                            })?
                            .map(|n| n as i64)
                    }
                    _ => other_value(&mut map)?,
                }
                keys.add(key)?;
            }
            Ok(UploadBody {
                results,
                finished_time,
            })
        }
    }

    /// `consistency_result`: null, or an array of at most `max_results` items.
    struct Results {
        max_results: usize,
    }

    impl<'de> DeserializeSeed<'de> for Results {
        type Value = Option<Vec<ConsistencyResult>>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Results {
        type Value = Option<Vec<ConsistencyResult>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an array of results, or null")
        }
        fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut items = Vec::with_capacity(4);
            while let Some(item) = seq.next_element_seed(Item)? {
                if items.len() == self.max_results {
                    return Err(A::Error::custom("too many items"));
                }
                items.push(item);
            }
            Ok(Some(items))
        }
    }

    /// One item of `consistency_result`.
    struct Item;

    impl<'de> DeserializeSeed<'de> for Item {
        type Value = ConsistencyResult;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ConsistencyResult, D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for Item {
        type Value = ConsistencyResult;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a result object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ConsistencyResult, A::Error> {
            let mut keys = Keys::default();
            let mut dir_check = None;
            let mut counts = [None; 4];
            while let Some(Key(key)) = map.next_key()? {
                if key == "dir_check" {
                    let Key(text) = map.next_value()?;
                    dir_check = Some(
                        DirCheck::new(&text)
                            .ok_or_else(|| A::Error::custom("dir_check too long"))?,
                    );
                } else if let Some(i) = COUNT_FIELDS.iter().position(|f| key == *f) {
                    let n = map.next_value_seed(Uint {
                        max: MAX_COUNT,
                        null: false,
                    })?;
                    counts[i] = n.and_then(Count::new);
                } else {
                    other_value(&mut map)?;
                }
                keys.add(key)?;
            }
            match (dir_check, counts) {
                (Some(dir_check), [Some(t), Some(d), Some(m), Some(x)]) => Ok(ConsistencyResult {
                    dir_check,
                    num_total_files: t,
                    num_different_files: d,
                    num_target_miss_files: m,
                    num_target_more_files: x,
                }),
                _ => Err(A::Error::custom("a field is missing")),
            }
        }
    }
}

/// Why a body was refused. Every variant is a client error (400 `SMS.9001`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Not UTF-8.
    NotUtf8,
    /// Not JSON (the parser's message).
    NotJson(String),
    /// JSON, but not an object.
    NotObject,
    /// (path, problem) for every bad path, in document order.
    Fields(Vec<(String, String)>),
}

impl BodyError {
    /// The message naming the first problem.
    pub fn message(&self) -> String {
        match self {
            BodyError::NotUtf8 => "body: must be UTF-8 encoded JSON".into(),
            BodyError::NotJson(e) => format!("body: not valid JSON: {e}"),
            BodyError::NotObject => "body: must be a JSON object".into(),
            BodyError::Fields(p) => format!("{}: {}", p[0].0, p[0].1),
        }
    }

    /// Every bad path (field rules only).
    pub fn params(&self) -> Option<Vec<String>> {
        match self {
            BodyError::Fields(p) => Some(p.iter().map(|(path, _)| path.clone()).collect()),
            _ => None,
        }
    }
}

#[derive(Default)]
struct Problems(Vec<(String, String)>);

impl Problems {
    fn push(&mut self, at: &At, problem: String) {
        self.0.push((at.to_string(), problem));
    }
}

/// Where a value is in the body (`consistency_result[0].dir_check`), written out
/// only for a problem: valid bodies, the common case, allocate no paths.
#[derive(Clone, Copy)]
enum At<'p> {
    Root,
    Key(&'p At<'p>, &'p str),
    Index(&'p At<'p>, usize),
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Root => Ok(()),
            At::Key(At::Root, key) => f.write_str(key),
            At::Key(parent, key) => write!(f, "{parent}.{key}"),
            At::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

fn field<'a, 'b>(fields: &'a [(Cow<'b, str>, Json<'b>)], name: &str) -> Option<&'a Json<'b>> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// Objects up to this many keys are searched for duplicates pairwise; larger
/// ones (only a hostile body has them) through a set, so the cost stays linear.
const PAIRWISE_KEYS: usize = 32;

fn find_duplicate_keys(json: &Json, at: &At, problems: &mut Problems) {
    match json {
        Json::Object(fields) => {
            let mut seen = (fields.len() > PAIRWISE_KEYS)
                .then(|| std::collections::HashSet::with_capacity(fields.len()));
            for (i, (key, value)) in fields.iter().enumerate() {
                let child = At::Key(at, key);
                let duplicate = match &mut seen {
                    Some(seen) => !seen.insert(key.as_ref()),
                    None => fields[..i].iter().any(|(k, _)| k == key),
                };
                if duplicate {
                    problems.push(&child, "duplicate key".into());
                }
                find_duplicate_keys(value, &child, problems);
            }
        }
        Json::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                find_duplicate_keys(item, &At::Index(at, i), problems);
            }
        }
        _ => {}
    }
}

/// A JSON value that keeps every key of an object (so duplicates can be refused)
/// and tells integers from other numbers. Strings without escapes borrow from the
/// body.
#[derive(Debug)]
enum Json<'a> {
    Null,
    Bool,
    Uint(u64),
    OtherNumber,
    Str(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

/// An object key, borrowed from the body when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_string())))
            }
            fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_none<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool)
    }
    fn visit_u64<E>(self, n: u64) -> Result<Json<'de>, E> {
        Ok(Json::Uint(n))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Json<'de>, E> {
        Ok(u64::try_from(n).map_or(Json::OtherNumber, Json::Uint))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Json<'de>, E> {
        Ok(Json::OtherNumber)
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(s.to_string())))
    }
    fn visit_string<E>(self, s: String) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(s)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        // Bodies hold small arrays and objects: one allocation each, mostly.
        let mut items = Vec::with_capacity(8);
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut fields = Vec::with_capacity(8);
        while let Some((Key(k), v)) = map.next_entry::<Key<'de>, Json<'de>>()? {
            fields.push((k, v));
        }
        Ok(Json::Object(fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<UploadBody, BodyError> {
        UploadBody::parse(s.as_bytes(), DEFAULT_MAX_RESULTS)
    }

    #[test]
    fn example_fixture_parses() {
        let body = parse(include_str!("../../tests/fixtures/example-upload.json")).unwrap();
        assert_eq!(body.results.len(), 2);
        assert_eq!(body.results[0].dir_check.as_str(), "/root/data");
        let totals = body.totals();
        assert_eq!(totals.num_total_files, 2470);
        assert_eq!(totals.problems(), 72);
    }

    #[test]
    fn optional_fields() {
        assert_eq!(parse("{}").unwrap().results.len(), 0);
        assert_eq!(
            parse(r#"{"consistency_result": null}"#)
                .unwrap()
                .results
                .len(),
            0
        );
        assert_eq!(
            parse(r#"{"finished_time": 1700000000, "x": [1.5]}"#)
                .unwrap()
                .finished_time,
            Some(1_700_000_000)
        );
    }

    #[test]
    fn number_forms_are_refused() {
        for bad in ["1.0", "1e3", "\"5\"", "-1", "true", "1000001", "-0", "null"] {
            let body = format!(
                r#"{{"consistency_result":[{{"dir_check":"/","num_total_files":{bad},"num_different_files":0,"num_target_miss_files":0,"num_target_more_files":0}}]}}"#
            );
            let err = parse(&body).unwrap_err();
            assert_eq!(
                err.message(),
                "consistency_result[0].num_total_files: must be an integer from 0 to 1000000",
                "{bad}"
            );
        }
    }

    #[test]
    fn every_bad_path_is_listed() {
        let err = parse(
            r#"{"consistency_result":[{"dir_check":1},{"dir_check":"/"}], "finished_time": -1}"#,
        )
        .unwrap_err();
        let params = err.params().unwrap();
        assert_eq!(params[0], "consistency_result[0].dir_check");
        assert!(params.contains(&"consistency_result[1].num_target_more_files".to_string()));
        assert_eq!(params.last().unwrap(), "finished_time");
        assert_eq!(params.len(), 10);
    }

    #[test]
    fn duplicate_keys_are_found_in_large_objects_and_through_escapes() {
        let keys: Vec<String> = (0..200).map(|i| format!(r#""k{i}":0"#)).collect();
        let err = parse(&format!(r#"{{{},"k7":1}}"#, keys.join(","))).unwrap_err();
        assert_eq!(err.message(), "k7: duplicate key");
        let err = parse(r#"{"x":{"a":1,"\u0061":2}}"#).unwrap_err();
        assert_eq!(err.message(), "x.a: duplicate key");
        let err = parse(r#"{"consistency_result":[{},{"b":1,"b":2}]}"#).unwrap_err();
        assert_eq!(err.params().unwrap()[0], "consistency_result[1].b");
    }

    #[test]
    fn duplicates_and_shapes() {
        let err = parse(r#"{"a":1,"a":2}"#).unwrap_err();
        assert_eq!(err.message(), "a: duplicate key");
        assert_eq!(parse("[]").unwrap_err(), BodyError::NotObject);
        assert_eq!(
            UploadBody::parse(b"\xff", 30).unwrap_err(),
            BodyError::NotUtf8
        );
        assert!(matches!(parse("{").unwrap_err(), BodyError::NotJson(_)));
        assert!(matches!(parse("{} x").unwrap_err(), BodyError::NotJson(_)));
        let items = vec![r#"{"dir_check":"/","num_total_files":1,"num_different_files":0,"num_target_miss_files":0,"num_target_more_files":0}"#; 31].join(",");
        let err = parse(&format!(r#"{{"consistency_result":[{items}]}}"#)).unwrap_err();
        assert_eq!(
            err.message(),
            "consistency_result: must have at most 30 items (got 31)"
        );
        assert!(UploadBody::parse(
            format!(r#"{{"consistency_result":[{items}]}}"#).as_bytes(),
            31
        )
        .is_ok());
    }

    #[test]
    fn dir_check_limit_counts_characters() {
        let ok = "é".repeat(1024);
        let body = format!(
            r#"{{"consistency_result":[{{"dir_check":"{ok}","num_total_files":0,"num_different_files":0,"num_target_miss_files":0,"num_target_more_files":0}}]}}"#
        );
        assert!(parse(&body).is_ok());
        let body = body.replace(&ok, &format!("{ok}x"));
        assert!(parse(&body).is_err());
    }

    /// JSON text from a small grammar that names the body's fields often, and
    /// repeats keys (which a `serde_json::Value` cannot).
    mod text {
        use proptest::prelude::*;

        pub fn scalar() -> BoxedStrategy<String> {
            prop_oneof![
                Just("null".to_string()),
                Just("true".to_string()),
                (0u64..=1_000_001).prop_map(|n| n.to_string()),
                prop_oneof![
                    Just("1000000"),
                    Just("100000000000"),
                    Just("100000000001"),
                    Just("-0"),
                    Just("-1"),
                    Just("1.0"),
                    Just("1e3"),
                    Just("18446744073709551616"),
                ]
                .prop_map(str::to_string),
                "[a-z/ ]{0,6}".prop_map(|s| format!("{s:?}")),
                Just(r#""\u00e9\n""#.to_string()),
                (1023usize..1026).prop_map(|n| format!("{:?}", "é".repeat(n))),
            ]
            .boxed()
        }

        pub fn object(
            keys: &'static [&'static str],
            value: BoxedStrategy<String>,
        ) -> BoxedStrategy<String> {
            prop::collection::vec((prop::sample::select(keys), value), 0..7)
                .prop_map(|fields| {
                    let fields: Vec<String> =
                        fields.iter().map(|(k, v)| format!("{k:?}:{v}")).collect();
                    format!("{{{}}}", fields.join(","))
                })
                .boxed()
        }

        pub fn value() -> BoxedStrategy<String> {
            scalar()
                .prop_recursive(3, 16, 4, |inner| {
                    prop_oneof![
                        prop::collection::vec(inner.clone(), 0..4)
                            .prop_map(|v| format!("[{}]", v.join(","))),
                        object(&["a", "b", "dir_check"], inner),
                    ]
                })
                .boxed()
        }

        fn dir_check() -> BoxedStrategy<String> {
            prop_oneof![8 => "[a-z/é ]{0,8}".prop_map(|s| format!("{s:?}")), 1 => scalar()].boxed()
        }

        fn count() -> BoxedStrategy<String> {
            prop_oneof![8 => (0u64..=1_000_000).prop_map(|n| n.to_string()), 1 => scalar()].boxed()
        }

        pub fn item() -> BoxedStrategy<String> {
            prop_oneof![
                4 => object(
                    &[
                        "dir_check",
                        "num_total_files",
                        "num_different_files",
                        "num_target_miss_files",
                        "num_target_more_files",
                        "extra",
                    ],
                    value(),
                ),
                8 => (dir_check(), count(), count(), count(), count()).prop_map(|(d, t, x, m, o)| format!(
                    r#"{{"dir_check":{d},"num_total_files":{t},"num_different_files":{x},"num_target_miss_files":{m},"num_target_more_files":{o}}}"#
                )),
                1 => value(),
            ]
            .boxed()
        }

        pub fn body() -> BoxedStrategy<String> {
            let field = prop_oneof![
                6 => prop::collection::vec(item(), 0..5).prop_map(|items| format!(
                    r#""consistency_result":[{}]"#,
                    items.join(",")
                )),
                1 => value().prop_map(|v| format!(r#""consistency_result":{v}"#)),
                2 => count().prop_map(|v| format!(r#""finished_time":{v}"#)),
                2 => value().prop_map(|v| format!(r#""other":{v}"#)),
            ];
            prop_oneof![
                8 => prop::collection::vec(field, 0..4).prop_map(|f| format!("{{{}}}", f.join(","))),
                1 => value(),
            ]
            .boxed()
        }
    }

    proptest::proptest! {
        // As many cases as the body's other property tests (tests/body_properties.rs).
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(10_000)
        ))]
        /// The direct reading accepts exactly the bodies the tree accepts, with
        /// the same values.
        #[test]
        fn direct_parse_agrees_with_the_tree(body in text::body(), max in 1usize..6) {
            let direct = direct::parse(&body, max);
            let tree = UploadBody::parse_tree(&body, max).ok();
            proptest::prop_assert_eq!(direct, tree, "{}", body);
        }
    }
}
