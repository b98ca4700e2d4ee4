//! Comparing two uploads directory by directory (also across tasks).
//!
//! "Problems" are different + missing-on-target + extra-on-target files: a
//! directory whose problems went down from a to b improved, up regressed.

use serde::Serialize;

use crate::domain::{format_timestamp, Totals};
use crate::storage::uploads::{ResultRow, UploadRecord};

/// How one side compares with the other.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Fewer problems.
    Improved,
    /// More problems.
    Regressed,
    /// As many problems.
    Unchanged,
}

impl Verdict {
    /// `after` against `before`, by problems (different + missing + extra files).
    pub fn of_problems(before: i64, after: i64) -> Self {
        match after.cmp(&before) {
            std::cmp::Ordering::Less => Verdict::Improved,
            std::cmp::Ordering::Greater => Verdict::Regressed,
            std::cmp::Ordering::Equal => Verdict::Unchanged,
        }
    }

    /// The word pages and messages use.
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Improved => "improved",
            Verdict::Regressed => "regressed",
            Verdict::Unchanged => "unchanged",
        }
    }
}

/// The four counts of a directory (or of a whole upload).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Default)]
pub struct Counts {
    /// Files checked.
    pub num_total_files: i64,
    /// Files that differ.
    pub num_different_files: i64,
    /// Files missing on the target.
    pub num_target_miss_files: i64,
    /// Files only on the target.
    pub num_target_more_files: i64,
}

impl Counts {
    fn of(r: &ResultRow) -> Self {
        Counts {
            num_total_files: r.num_total_files,
            num_different_files: r.num_different_files,
            num_target_miss_files: r.num_target_miss_files,
            num_target_more_files: r.num_target_more_files,
        }
    }

    /// Different + missing + extra files.
    pub fn problems(&self) -> i64 {
        self.num_different_files + self.num_target_miss_files + self.num_target_more_files
    }

    fn add(&mut self, o: &Counts) {
        self.num_total_files += o.num_total_files;
        self.num_different_files += o.num_different_files;
        self.num_target_miss_files += o.num_target_miss_files;
        self.num_target_more_files += o.num_target_more_files;
    }

    fn minus(&self, o: &Counts) -> Counts {
        Counts {
            num_total_files: self.num_total_files - o.num_total_files,
            num_different_files: self.num_different_files - o.num_different_files,
            num_target_miss_files: self.num_target_miss_files - o.num_target_miss_files,
            num_target_more_files: self.num_target_more_files - o.num_target_more_files,
        }
    }
}

/// An upload's stored totals, as counts.
impl From<&Totals> for Counts {
    fn from(t: &Totals) -> Self {
        Counts {
            num_total_files: t.num_total_files,
            num_different_files: t.num_different_files,
            num_target_miss_files: t.num_target_miss_files,
            num_target_more_files: t.num_target_more_files,
        }
    }
}

/// One directory present in both uploads.
#[derive(Debug, Clone, Serialize)]
pub struct DirComparison {
    /// The directory.
    pub dir_check: String,
    /// Its counts in A.
    pub a: Counts,
    /// Its counts in B.
    pub b: Counts,
    /// B minus A.
    pub change: Counts,
    /// B against A (none across tasks: `null` in JSON).
    pub verdict: Option<Verdict>,
}

/// A directory present in one upload only.
#[derive(Debug, Clone, Serialize)]
pub struct OneSided {
    /// The directory.
    pub dir_check: String,
    /// Its counts there.
    pub counts: Counts,
}

/// One of the two uploads compared.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    /// The upload's id.
    pub id: i64,
    /// Its task.
    pub task_id: String,
    /// When it arrived (RFC 3339).
    pub received_at: String,
    /// Retention purged its result rows: only its totals compare.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purged_at: Option<String>,
}

/// Two uploads side by side, directory by directory.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The older upload (A).
    pub a: Side,
    /// The newer upload (B).
    pub b: Side,
    /// Directories in both, by name.
    pub directories: Vec<DirComparison>,
    /// Directories only A reported.
    pub only_in_a: Vec<OneSided>,
    /// Directories only B reported.
    pub only_in_b: Vec<OneSided>,
    /// The whole uploads compared.
    pub totals: DirComparison,
    /// Both uploads are of one task. When not, no verdict is given: the
    /// counts and their differences only.
    pub same_task: bool,
}

/// B against A; none between uploads of different tasks, which measure
/// different servers.
fn verdict(a: &Counts, b: &Counts, same_task: bool) -> Option<Verdict> {
    same_task.then(|| Verdict::of_problems(a.problems(), b.problems()))
}

/// Directories keyed by `dir_check`; a name repeated within one upload gets `#2`,
/// `#3`, ... so that nothing is silently merged.
fn keyed(rows: &[ResultRow]) -> Vec<(String, Counts)> {
    let mut out: Vec<(String, Counts)> = Vec::new();
    for r in rows {
        let mut key = r.dir_check.clone();
        let mut n = 1;
        while out.iter().any(|(k, _)| *k == key) {
            n += 1;
            key = format!("{}#{n}", r.dir_check);
        }
        out.push((key, Counts::of(r)));
    }
    out
}

/// Compares upload `b` with upload `a`, directory by directory.
pub fn compare(a: &UploadRecord, b: &UploadRecord) -> Comparison {
    let purged = a.purged_at.is_some() || b.purged_at.is_some();
    // A purged side has no directories left: compare totals only (as stored).
    let rows = |u: &UploadRecord| {
        if purged {
            Vec::new()
        } else {
            keyed(&u.results)
        }
    };
    let (ka, kb) = (rows(a), rows(b));
    // Two tasks measure two servers, and an upload without results measured
    // nothing: either way there is no verdict.
    let same_task = a.task_id == b.task_id;
    let comparable = same_task && a.result_count > 0 && b.result_count > 0;
    let mut directories = Vec::new();
    let mut only_in_a = Vec::new();
    let (mut total_a, mut total_b) = (Counts::default(), Counts::default());
    for (dir, ca) in &ka {
        total_a.add(ca);
        match kb.iter().find(|(d, _)| d == dir) {
            Some((_, cb)) => directories.push(DirComparison {
                dir_check: dir.clone(),
                a: *ca,
                b: *cb,
                change: cb.minus(ca),
                verdict: verdict(ca, cb, same_task),
            }),
            None => only_in_a.push(OneSided {
                dir_check: dir.clone(),
                counts: *ca,
            }),
        }
    }
    let mut only_in_b = Vec::new();
    for (dir, cb) in &kb {
        total_b.add(cb);
        if !ka.iter().any(|(d, _)| d == dir) {
            only_in_b.push(OneSided {
                dir_check: dir.clone(),
                counts: *cb,
            });
        }
    }
    if purged {
        (total_a, total_b) = (Counts::from(&a.totals), Counts::from(&b.totals));
    }
    let side = |u: &UploadRecord| Side {
        id: u.id,
        task_id: u.task_id.clone(),
        received_at: format_timestamp(u.received_at),
        purged_at: u.purged_at.map(format_timestamp),
    };
    Comparison {
        a: side(a),
        b: side(b),
        directories,
        only_in_a,
        only_in_b,
        totals: DirComparison {
            dir_check: "(all directories)".into(),
            a: total_a,
            b: total_b,
            change: total_b.minus(&total_a),
            verdict: verdict(&total_a, &total_b, comparable),
        },
        same_task,
    }
}
