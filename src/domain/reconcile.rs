//! Reconciliation with SMS: SMS's answer to `ShowConsistencyResult` read as
//! rounds, and the matching of those rounds with a task's uploads into a verdict.
//! Pure: the rounds and uploads come in, the outcome goes out.

use serde::{Deserialize, Serialize};

use super::time::Timestamp;

/// What a task's reconciliation found, worst first when a task has several
/// findings (`differs` over `foreign` over `missing-in-sms`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum Verdict {
    /// Every SMS round has its upload, and every upload delivered here is in SMS.
    Match,
    /// Uploads delivered (or replayed) to SMS that SMS does not hold.
    MissingInSms,
    /// SMS rounds that no upload here matches.
    Foreign,
    /// A round at an upload's time with other counts.
    Differs,
    /// SMS was not asked or did not answer (the reason says which).
    NotChecked,
}

impl Verdict {
    /// As stored and shown.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// A `verdict=` filter: none when absent or empty.
    pub fn parse_filter(v: Option<&str>) -> Result<Option<Self>, String> {
        v.filter(|v| !v.is_empty())
            .map(|v| {
                v.parse().map_err(|_| {
                    format!("verdict: must be match, missing-in-sms, foreign, differs or not-checked (got {v:?})")
                })
            })
            .transpose()
    }

    /// Whether an auditor must look (what notifications announce).
    pub fn is_discrepancy(self) -> bool {
        matches!(
            self,
            Verdict::MissingInSms | Verdict::Foreign | Verdict::Differs
        )
    }
}

/// One directory's counts, as an upload or SMS gives them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DirCounts {
    /// The directory.
    pub dir_check: String,
    /// Total, different, missing on the target, more on the target.
    pub counts: [u64; 4],
}

/// One verification round as SMS holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmsRound {
    /// When the round finished, as SMS gives it (milliseconds since the epoch,
    /// or seconds when the agent sent seconds).
    pub finished_time: Option<i64>,
    /// SMS's own verdict on the round, kept as SMS gives it.
    pub check_result: Option<String>,
    /// The directories' counts.
    pub dirs: Vec<DirCounts>,
}

/// Why SMS's answer could not be read as rounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SMS's answer is not a ShowConsistencyResult: {0}")]
pub struct NotAnAnswer(String);

#[derive(Deserialize)]
struct RawAnswer {
    #[serde(default)]
    result_list: Option<Vec<serde_json::Value>>,
}

#[derive(Deserialize)]
struct RawRound {
    finished_time: Option<i64>,
    check_result: Option<String>,
    #[serde(default)]
    consistency_result: Option<Vec<RawDir>>,
}

#[derive(Deserialize)]
struct RawDir {
    dir_check: String,
    num_total_files: u64,
    num_different_files: u64,
    num_target_miss_files: u64,
    num_target_more_files: u64,
}

/// SMS's rounds from its `ShowConsistencyResult` answer. A round may also come as
/// a string holding the round's JSON (the published Python SDK types
/// `result_list` as a list of strings).
pub fn parse_answer(bytes: &[u8]) -> Result<Vec<SmsRound>, NotAnAnswer> {
    let raw: RawAnswer = serde_json::from_slice(bytes).map_err(|e| NotAnAnswer(e.to_string()))?;
    let mut rounds = Vec::new();
    for (i, value) in raw.result_list.unwrap_or_default().into_iter().enumerate() {
        let round: RawRound = match value {
            serde_json::Value::String(s) => serde_json::from_str(&s),
            other => serde_json::from_value(other),
        }
        .map_err(|e| NotAnAnswer(format!("result_list[{i}]: {e}")))?;
        rounds.push(SmsRound {
            finished_time: round.finished_time,
            check_result: round.check_result,
            dirs: round
                .consistency_result
                .unwrap_or_default()
                .into_iter()
                .map(|d| DirCounts {
                    dir_check: d.dir_check,
                    counts: [
                        d.num_total_files,
                        d.num_different_files,
                        d.num_target_miss_files,
                        d.num_target_more_files,
                    ],
                })
                .collect(),
        });
    }
    Ok(rounds)
}

/// One upload of the task, as the matcher sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OurUpload {
    /// Its id in the ledger.
    pub id: i64,
    /// When it was received.
    pub received_at: Timestamp,
    /// The `finished_time` the agent sent, if it sent one.
    pub finished_time: Option<i64>,
    /// Each time SMS accepted it from this service (the successful attempt's
    /// start and end): once live, again for each replay.
    pub delivered: Vec<(Timestamp, Timestamp)>,
    /// Its directories; `None` once retention purged them.
    pub dirs: Option<Vec<DirCounts>>,
}

/// A round's `finished_time` as milliseconds: values below 10^11 are read as
/// seconds (10^11 ms is 1973; 10^11 s is the year 5138).
pub fn finished_time_ms(t: i64) -> Timestamp {
    if t.abs() < 100_000_000_000 {
        t.saturating_mul(1000)
    } else {
        t
    }
}

/// The same directories and counts, whatever their order.
fn same_counts(a: &[DirCounts], b: &[DirCounts]) -> bool {
    let sorted = |d: &[DirCounts]| {
        let mut d = d.to_vec();
        d.sort();
        d
    };
    a.len() == b.len() && sorted(a) == sorted(b)
}

impl OurUpload {
    fn same_counts(&self, round: &SmsRound) -> bool {
        // A purged upload's counts are gone: its moment alone is compared.
        self.dirs
            .as_ref()
            .is_none_or(|d| same_counts(d, &round.dirs))
    }

    /// One instance per delivery from here (SMS must hold each), or one for an
    /// upload never delivered from here (SMS may hold it, sent by the agent).
    fn instances(&self) -> Vec<Instance<'_>> {
        if self.delivered.is_empty() {
            return vec![Instance {
                upload: self,
                window: None,
            }];
        }
        self.delivered
            .iter()
            .map(|w| Instance {
                upload: self,
                window: Some(*w),
            })
            .collect()
    }
}

/// One time SMS should or may hold an upload.
struct Instance<'a> {
    upload: &'a OurUpload,
    /// The delivery's start and end; none when it was not delivered from here.
    window: Option<(Timestamp, Timestamp)>,
}

impl Instance<'_> {
    /// Whether SMS must hold it: it was delivered from here.
    fn expected(&self) -> bool {
        self.window.is_some()
    }

    /// Whether `round` is from this moment: the upload's own `finished_time`
    /// when the agent sent one; otherwise SMS's time within `tolerance_ms` of the
    /// delivery (or of the upload's arrival, when it was not delivered from here).
    fn same_time(&self, round: &SmsRound, tolerance_ms: i64) -> bool {
        let Some(t) = round.finished_time else {
            return false;
        };
        if let Some(own) = self.upload.finished_time {
            return own == t;
        }
        let at = self.upload.received_at;
        let (from, to) = self.window.unwrap_or((at, at));
        let t = finished_time_ms(t);
        t >= from.saturating_sub(tolerance_ms) && t <= to.saturating_add(tolerance_ms)
    }
}

/// A task's outcome: which rounds matched which uploads, and what did not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFindings {
    /// (round index, upload id) pairs that match.
    pub matched: Vec<(usize, i64)>,
    /// Uploads delivered here that SMS does not hold.
    pub missing_in_sms: Vec<i64>,
    /// Rounds no upload matches (indexes into SMS's answer).
    pub foreign: Vec<usize>,
    /// (round index, upload id): the same moment, other counts.
    pub differs: Vec<(usize, i64)>,
}

impl TaskFindings {
    /// The task's verdict: the worst finding.
    pub fn verdict(&self) -> Verdict {
        if !self.differs.is_empty() {
            Verdict::Differs
        } else if !self.foreign.is_empty() {
            Verdict::Foreign
        } else if !self.missing_in_sms.is_empty() {
            Verdict::MissingInSms
        } else {
            Verdict::Match
        }
    }
}

/// Matches SMS's rounds of a task with its uploads. A round matches an upload of
/// the same moment with the same directories' counts (their order does not
/// matter); each round and each delivery is used once, earliest first (an upload
/// replayed is expected in SMS once per delivery).
pub fn match_task(rounds: &[SmsRound], uploads: &[OurUpload], tolerance_ms: i64) -> TaskFindings {
    let mut order: Vec<usize> = (0..rounds.len()).collect();
    order.sort_by_key(|&i| (rounds[i].finished_time.map(finished_time_ms), i));
    // Deliveries SMS must hold are tried first, so that an upload that merely
    // could be there never takes a round from one that must.
    let mut instances: Vec<Instance<'_>> = uploads.iter().flat_map(OurUpload::instances).collect();
    instances.sort_by_key(|i| !i.expected());
    let mut used = vec![false; instances.len()];
    let mut findings = TaskFindings::default();
    let mut unmatched = Vec::new();
    for &r in &order {
        let round = &rounds[r];
        let found = (0..instances.len()).find(|&i| {
            !used[i]
                && instances[i].same_time(round, tolerance_ms)
                && instances[i].upload.same_counts(round)
        });
        match found {
            Some(i) => {
                used[i] = true;
                findings.matched.push((r, instances[i].upload.id));
            }
            None => unmatched.push(r),
        }
    }
    for r in unmatched {
        let round = &rounds[r];
        // Only a delivery SMS must hold, or an upload that names this very
        // moment, is the round's counterpart.
        let found = (0..instances.len()).find(|&i| {
            let inst = &instances[i];
            !used[i]
                && (inst.expected() || inst.upload.finished_time.is_some())
                && inst.same_time(round, tolerance_ms)
        });
        match found {
            Some(i) => {
                used[i] = true;
                findings.differs.push((r, instances[i].upload.id));
            }
            None => findings.foreign.push(r),
        }
    }
    findings.missing_in_sms = instances
        .iter()
        .zip(&used)
        .filter(|(inst, used)| !**used && inst.expected())
        .map(|(inst, _)| inst.upload.id)
        .collect();
    findings.missing_in_sms.sort_unstable();
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dir(name: &str, n: u64) -> DirCounts {
        DirCounts {
            dir_check: name.into(),
            counts: [n, 0, 0, 0],
        }
    }

    fn round(t: i64, dirs: Vec<DirCounts>) -> SmsRound {
        SmsRound {
            finished_time: Some(t),
            check_result: Some("success".into()),
            dirs,
        }
    }

    fn delivered(id: i64, at: i64, dirs: Vec<DirCounts>) -> OurUpload {
        OurUpload {
            id,
            received_at: at - 5,
            finished_time: None,
            delivered: vec![(at, at + 20)],
            dirs: Some(dirs),
        }
    }

    const T: i64 = 1_800_000_000_000;

    #[test]
    fn the_answer_is_read_from_objects_and_from_strings() {
        let body = br#"{"task_id":"t","result_list":[
            {"finished_time":1,"check_result":"success","consistency_result":[
              {"dir_check":"/a","num_total_files":3,"num_different_files":1,
               "num_target_miss_files":0,"num_target_more_files":2}]},
            "{\"finished_time\":2,\"consistency_result\":[]}"]}"#;
        let rounds = parse_answer(body).unwrap();
        assert_eq!(rounds.len(), 2);
        assert_eq!(rounds[0].dirs[0].counts, [3, 1, 0, 2]);
        assert_eq!(rounds[0].check_result.as_deref(), Some("success"));
        assert_eq!(rounds[1].finished_time, Some(2));
        assert!(parse_answer(b"{}").unwrap().is_empty());
        let bad = parse_answer(br#"{"result_list":[{"consistency_result":[{"dir_check":"/a"}]}]}"#);
        assert!(bad.unwrap_err().to_string().contains("result_list[0]"));
        assert!(parse_answer(b"<html>").is_err());
    }

    #[test]
    fn each_verdict() {
        let up = delivered(1, T, vec![dir("/a", 1), dir("/b", 2)]);
        // The directories in another order still match.
        let same = round(T + 10, vec![dir("/b", 2), dir("/a", 1)]);
        let f = match_task(std::slice::from_ref(&same), std::slice::from_ref(&up), 1000);
        assert_eq!(
            (f.verdict(), f.matched.clone()),
            (Verdict::Match, vec![(0, 1)])
        );
        let f = match_task(&[], std::slice::from_ref(&up), 1000);
        assert_eq!(
            (f.verdict(), f.missing_in_sms),
            (Verdict::MissingInSms, vec![1])
        );
        let other = round(T + 10, vec![dir("/a", 1), dir("/b", 3)]);
        let f = match_task(
            std::slice::from_ref(&other),
            std::slice::from_ref(&up),
            1000,
        );
        assert_eq!((f.verdict(), f.differs), (Verdict::Differs, vec![(0, 1)]));
        let later = round(T + 60_000, vec![dir("/a", 1), dir("/b", 2)]);
        let f = match_task(&[same.clone(), later], std::slice::from_ref(&up), 1000);
        assert_eq!((f.verdict(), f.foreign), (Verdict::Foreign, vec![1]));
    }

    #[test]
    fn an_agent_sent_finished_time_is_matched_exactly() {
        let mut up = delivered(1, T, vec![dir("/a", 1)]);
        up.finished_time = Some(1_700_000_000);
        let f = match_task(
            &[round(1_700_000_000, vec![dir("/a", 1)])],
            &[up.clone()],
            0,
        );
        assert_eq!(f.verdict(), Verdict::Match);
        let f = match_task(&[round(1_700_000_001, vec![dir("/a", 1)])], &[up], 0);
        assert_eq!((f.foreign, f.missing_in_sms), (vec![0], vec![1]));
    }

    #[test]
    fn an_upload_not_delivered_from_here_may_match_but_is_never_missing() {
        let up = OurUpload {
            delivered: vec![],
            ..delivered(1, T, vec![dir("/a", 1)])
        };
        assert_eq!(
            match_task(&[], std::slice::from_ref(&up), 1000).verdict(),
            Verdict::Match
        );
        let f = match_task(
            &[round(T, vec![dir("/a", 1)])],
            std::slice::from_ref(&up),
            1000,
        );
        assert_eq!(f.matched, vec![(0, 1)]);
        // Other counts at its moment: SMS holds something this upload is not.
        let f = match_task(&[round(T, vec![dir("/a", 2)])], &[up], 1000);
        assert_eq!(f.verdict(), Verdict::Foreign);
    }

    #[test]
    fn a_purged_upload_matches_by_its_moment() {
        let up = OurUpload {
            dirs: None,
            ..delivered(1, T, vec![])
        };
        let f = match_task(&[round(T + 1, vec![dir("/x", 9)])], &[up], 1000);
        assert_eq!(f.verdict(), Verdict::Match);
    }

    #[test]
    fn an_upload_replayed_is_expected_once_per_delivery() {
        let mut up = delivered(1, T, vec![dir("/a", 1)]);
        up.delivered.push((T + 600_000, T + 600_020));
        let first = round(T + 10, vec![dir("/a", 1)]);
        let again = round(T + 600_010, vec![dir("/a", 1)]);
        let f = match_task(&[first.clone(), again], std::slice::from_ref(&up), 1000);
        assert_eq!(
            (f.verdict(), f.matched),
            (Verdict::Match, vec![(0, 1), (1, 1)])
        );
        let f = match_task(&[first], &[up], 1000);
        assert_eq!(
            (f.verdict(), f.missing_in_sms),
            (Verdict::MissingInSms, vec![1])
        );
    }

    #[test]
    fn seconds_and_milliseconds() {
        assert_eq!(finished_time_ms(1_800_000_000), 1_800_000_000_000);
        assert_eq!(finished_time_ms(T), T);
    }

    fn arb_dirs() -> impl Strategy<Value = Vec<DirCounts>> {
        proptest::collection::vec(
            ("[a-c]", 0u64..3).prop_map(|(d, n)| dir(&format!("/{d}"), n)),
            0..3,
        )
    }

    proptest! {
        /// Every round and every delivered upload is accounted for exactly once,
        /// and the order SMS lists rounds or directories in changes no verdict.
        #[test]
        fn findings_account_for_everything(
            ups in proptest::collection::vec((arb_dirs(), 0i64..5, any::<bool>()), 0..6),
            extra in proptest::collection::vec((arb_dirs(), 0i64..5), 0..4),
        ) {
            let uploads: Vec<OurUpload> = ups.iter().enumerate().map(|(i, (d, slot, sent))| OurUpload {
                delivered: sent.then_some((T + slot * 60_000, T + slot * 60_000 + 10)).into_iter().collect(),
                ..delivered(i as i64 + 1, T + slot * 60_000, d.clone())
            }).collect();
            let mut rounds: Vec<SmsRound> = uploads.iter().filter(|u| !u.delivered.is_empty())
                .map(|u| round(u.delivered[0].0 + 5, u.dirs.clone().unwrap())).collect();
            rounds.extend(extra.iter().map(|(d, slot)| round(T + slot * 60_000 + 7, d.clone())));
            let f = match_task(&rounds, &uploads, 1000);
            let mut seen_rounds: Vec<usize> = f.matched.iter().map(|m| m.0)
                .chain(f.differs.iter().map(|d| d.0)).chain(f.foreign.iter().copied()).collect();
            seen_rounds.sort();
            prop_assert_eq!(seen_rounds, (0..rounds.len()).collect::<Vec<_>>());
            let mut ids: Vec<i64> = f.matched.iter().map(|m| m.1).chain(f.differs.iter().map(|d| d.1))
                .chain(f.missing_in_sms.iter().copied()).collect();
            let before = ids.len();
            ids.sort();
            ids.dedup();
            prop_assert_eq!(ids.len(), before);
            // Without extra rounds, SMS holds exactly what was delivered.
            if extra.is_empty() {
                prop_assert_eq!(f.verdict(), Verdict::Match);
            }
            let mut shuffled = rounds.clone();
            shuffled.reverse();
            for r in &mut shuffled {
                r.dirs.reverse();
            }
            prop_assert_eq!(match_task(&shuffled, &uploads, 1000).verdict(), f.verdict());
        }
    }
}
