//! Fleet history: every task as of a moment, what changed between two moments,
//! and the fleet's trend by day (docs/pages.md, "Fleet history").

use std::sync::{Arc, OnceLock};

use chrono::{TimeZone, Utc};
use serde::Serialize;

use crate::domain::fleet::{day_of, Verdict, DAY_MS};
use crate::domain::Timestamp;
use crate::storage::fleet::{self, FleetDay, FleetFigures, StateRef, TaskState};
use crate::storage::tasks::{self, HealthCounts, TaskSort};
use crate::storage::StorageError;

/// Every task as its latest upload received at or before `at` shows it (tasks
/// with no upload by then are left out), by task id.
pub fn tasks_as_of(
    conn: &rusqlite::Connection,
    at: Timestamp,
) -> Result<Vec<TaskState>, StorageError> {
    fleet::states_at(conn, fleet::last_id_at(conn, at)?)
}

/// Every task as of one upload id, by task id, with the orders the dashboard
/// lists them in: each sorted once, when first asked for, so that paging a
/// fleet of any size reads only its page.
pub struct FleetAt {
    /// By task id.
    pub states: Vec<TaskState>,
    by_last_upload: OnceLock<Vec<u32>>,
    by_problems: OnceLock<Vec<u32>>,
}

impl FleetAt {
    /// The fleet these states (by task id) make.
    pub fn new(states: Vec<TaskState>) -> Self {
        FleetAt {
            states,
            by_last_upload: OnceLock::new(),
            by_problems: OnceLock::new(),
        }
    }

    /// The states in `sort`'s order, ties by task id (all reversed when
    /// `descending`). Upload counts as of a moment are only counted for the rows
    /// shown, so sorting by them sorts by the latest upload.
    pub fn in_order(
        &self,
        sort: TaskSort,
        descending: bool,
    ) -> Box<dyn Iterator<Item = &TaskState> + '_> {
        let order = match sort {
            TaskSort::TaskId => None,
            TaskSort::Problems => Some(
                self.by_problems
                    .get_or_init(|| self.sorted(|s| (s.problems, s.received_at))),
            ),
            TaskSort::LastUpload | TaskSort::Uploads => Some(
                self.by_last_upload
                    .get_or_init(|| self.sorted(|s| (s.received_at, 0))),
            ),
        };
        let state = |i: &u32| &self.states[*i as usize];
        match (order, descending) {
            (None, false) => Box::new(self.states.iter()),
            (None, true) => Box::new(self.states.iter().rev()),
            (Some(order), false) => Box::new(order.iter().map(state)),
            (Some(order), true) => Box::new(order.iter().rev().map(state)),
        }
    }

    fn sorted(&self, key: impl Fn(&TaskState) -> (i64, i64)) -> Vec<u32> {
        let mut order: Vec<u32> = (0..self.states.len() as u32).collect();
        // Stable, from task id order: ties stay by task id.
        order.sort_by_key(|&i| key(&self.states[i as usize]));
        order
    }
}

/// Fleet states and comparisons recently asked for. A state as of an upload id
/// never changes (the ledger only grows), so paging, sorting and the two
/// moments of a comparison reuse it; entries still expire after a minute, for
/// renamed tasks. The dashboard's health counts are kept the same way, by the
/// newest upload id.
pub struct StateCache {
    states: moka::sync::Cache<i64, Arc<FleetAt>>,
    newest: moka::sync::Cache<(i64, usize), Arc<Newest>>,
    changes: moka::sync::Cache<(i64, i64), Arc<Changes>>,
    changes_pages: moka::sync::Cache<ChangesPageKey, Arc<ChangesShown>>,
    health: parking_lot::Mutex<Option<(i64, HealthCounts)>>,
}

impl Default for StateCache {
    fn default() -> Self {
        fn cache<K, V>(kept: u64) -> moka::sync::Cache<K, V>
        where
            K: std::hash::Hash + Eq + Send + Sync + 'static,
            V: Clone + Send + Sync + 'static,
        {
            moka::sync::Cache::builder()
                .max_capacity(kept)
                .time_to_live(StateCache::FRESH)
                .build()
        }
        Self {
            states: cache(Self::KEPT),
            newest: cache(Self::NEWEST_KEPT),
            changes: cache(Self::CHANGES_KEPT),
            changes_pages: cache(Self::NEWEST_KEPT),
            health: parking_lot::Mutex::new(None),
        }
    }
}

impl StateCache {
    const KEPT: u64 = 8;
    /// A few dozen states (or changes) each.
    const NEWEST_KEPT: u64 = 64;
    /// A comparison holds about 40 bytes a task (4 MB at 100,000 tasks).
    const CHANGES_KEPT: u64 = 16;
    const FRESH: std::time::Duration = std::time::Duration::from_secs(60);

    /// Every task's latest upload counted by filter (see
    /// [`tasks::health_counts`]), computed again only when `head_id`, the newest
    /// upload's id, has moved: only an upload changes a task's latest upload.
    pub fn health_now(
        &self,
        conn: &rusqlite::Connection,
        head_id: i64,
    ) -> Result<HealthCounts, StorageError> {
        if let Some((id, counts)) = *self.health.lock() {
            if id == head_id {
                return Ok(counts);
            }
        }
        let counts = tasks::health_counts(conn)?;
        *self.health.lock() = Some((head_id, counts));
        Ok(counts)
    }

    /// The fleet as of upload `upto` counted and its `count` newest tasks,
    /// without making the fleet (see [`fleet::figures_at`], [`fleet::newest_at`]),
    /// from the cache when it can; none when no snapshot is near enough.
    pub fn newest(
        &self,
        conn: &rusqlite::Connection,
        upto: i64,
        count: usize,
    ) -> Result<Option<Arc<Newest>>, StorageError> {
        if let Some(newest) = self.newest.get(&(upto, count)) {
            return Ok(Some(newest));
        }
        let Some(figures) = fleet::figures_at(conn, upto)? else {
            return Ok(None);
        };
        let Some(tasks) = fleet::newest_at(conn, upto, count)? else {
            return Ok(None);
        };
        let newest = Arc::new(Newest { figures, tasks });
        self.newest.insert((upto, count), newest.clone());
        Ok(Some(newest))
    }

    /// Whether every task as of upload `upto` is kept here.
    pub fn holds(&self, upto: i64) -> bool {
        self.states.contains_key(&upto)
    }

    /// Every task as of `at` (see [`tasks_as_of`]), from the cache when it can.
    pub fn fleet_as_of(
        &self,
        conn: &rusqlite::Connection,
        at: Timestamp,
    ) -> Result<Arc<FleetAt>, StorageError> {
        self.fleet_upto(conn, fleet::last_id_at(conn, at)?)
    }

    fn fleet_upto(
        &self,
        conn: &rusqlite::Connection,
        upto: i64,
    ) -> Result<Arc<FleetAt>, StorageError> {
        if let Some(states) = self.states.get(&upto) {
            return Ok(states);
        }
        let states = Arc::new(FleetAt::new(fleet::states_at(conn, upto)?));
        self.states.insert(upto, states.clone());
        Ok(states)
    }

    /// What changed between `from` and `to` (see [`changes`]), from the cache
    /// when the same two upload ids were compared lately.
    pub fn changes(
        &self,
        conn: &rusqlite::Connection,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Arc<Changes>, StorageError> {
        // Moments with the same uploads between them make the same comparison.
        let ids = (fleet::last_id_at(conn, from)?, fleet::last_id_at(conn, to)?);
        self.changes_upto(conn, ids)
    }

    /// What changed between the fleets as of two upload ids, from the cache
    /// when they were compared lately.
    fn changes_upto(
        &self,
        conn: &rusqlite::Connection,
        ids: (i64, i64),
    ) -> Result<Arc<Changes>, StorageError> {
        if let Some(changes) = self.changes.get(&ids) {
            return Ok(changes);
        }
        let changes = Arc::new(changes_between(conn, ids.0, ids.1)?);
        self.changes.insert(ids, changes.clone());
        Ok(changes)
    }

    /// What changed between the moments `(from, to)`: the counts, and `limit`
    /// of the tasks `filter` keeps, in `sort` order, from the `offset`-th on;
    /// the last 64 pages kept (each row shown reads two states).
    pub fn changes_page(
        &self,
        conn: &rusqlite::Connection,
        (from, to): (Timestamp, Timestamp),
        filter: ChangeFilter,
        sort: ChangeSort,
        offset: usize,
        limit: usize,
    ) -> Result<Arc<ChangesShown>, StorageError> {
        let ids = (fleet::last_id_at(conn, from)?, fleet::last_id_at(conn, to)?);
        let key = (ids, filter, sort, offset, limit);
        if let Some(shown) = self.changes_pages.get(&key) {
            return Ok(shown);
        }
        let changes = self.changes_upto(conn, ids)?;
        let selected = changes.select(filter, sort);
        let shown = Arc::new(ChangesShown {
            counts: changes.counts.clone(),
            kept: selected.len(),
            rows: selected.page(conn, offset, limit)?,
        });
        self.changes_pages.insert(key, shown.clone());
        Ok(shown)
    }
}

/// A page of changes: the two moments' upload ids, filter, order, offset, limit.
type ChangesPageKey = ((i64, i64), ChangeFilter, ChangeSort, usize, usize);

/// A fleet counted, and its newest tasks (see [`StateCache::newest`]).
pub struct Newest {
    /// Every task counted.
    pub figures: FleetFigures,
    /// The newest tasks, newest first.
    pub tasks: Vec<TaskState>,
}

/// One task between two moments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The task.
    pub task_id: String,
    /// Its name, if it has one.
    pub name: Option<String>,
    /// Its latest upload at the first moment (none: it had not reported yet).
    pub from: Option<TaskState>,
    /// Its latest upload at the second moment.
    pub to: TaskState,
    /// The second moment against the first.
    pub verdict: Verdict,
    /// Results and no problems at the second moment.
    pub clean: bool,
    /// Problems at the second moment minus at the first (0 before any upload).
    pub problems_change: i64,
}

/// Tasks per verdict, and how many are clean.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerdictCounts {
    /// Tasks that first reported in between.
    pub new: usize,
    /// Tasks with fewer problems.
    pub improved: usize,
    /// Tasks with more problems.
    pub regressed: usize,
    /// Tasks with as many problems (not zero).
    pub unchanged: usize,
    /// Tasks whose latest upload at the second moment has no results.
    pub no_results: usize,
    /// Tasks with results and no problems at the second moment.
    pub clean: usize,
}

impl VerdictCounts {
    /// How many tasks have this verdict.
    pub fn of(&self, verdict: Verdict) -> usize {
        match verdict {
            Verdict::New => self.new,
            Verdict::Improved => self.improved,
            Verdict::Regressed => self.regressed,
            Verdict::Unchanged => self.unchanged,
            Verdict::NoResults => self.no_results,
        }
    }
}

/// What changed between two moments: every task with an upload by the second,
/// one row each, by task id, held as upload ids and numbers. A [`Change`] is
/// read only for the rows a caller shows ([`Selection::page`],
/// [`Selection::all`]). The moments are the caller's: the comparison is the same
/// for any two with the same uploads between them.
pub struct Changes {
    /// Tasks per verdict.
    pub counts: VerdictCounts,
    /// The last upload at the first moment, and at the second.
    before_upto: i64,
    after_upto: i64,
    rows: Vec<ChangeRow>,
}

/// One task of a comparison, as numbers.
#[derive(Clone, Copy)]
struct ChangeRow {
    /// Its latest upload at the first moment, if it had one.
    before: Option<i64>,
    /// Its latest upload at the second.
    after: i64,
    verdict: Verdict,
    clean: bool,
    problems_change: i64,
}

/// Compares every task's latest upload at `from` with its latest at `to`
/// (`from <= to`, checked by the caller).
pub fn changes(
    conn: &rusqlite::Connection,
    from: Timestamp,
    to: Timestamp,
) -> Result<Changes, StorageError> {
    changes_between(
        conn,
        fleet::last_id_at(conn, from)?,
        fleet::last_id_at(conn, to)?,
    )
}

/// The changes between the fleets as of two upload ids. Each fleet is read where
/// its states lie, none made ([`fleet::StoredStates`]); without a snapshot near
/// enough to both, both are made (a seek per task).
pub fn changes_between(
    conn: &rusqlite::Connection,
    before_upto: i64,
    after_upto: i64,
) -> Result<Changes, StorageError> {
    let stored = (
        fleet::StoredStates::at(conn, before_upto)?,
        fleet::StoredStates::at(conn, after_upto)?,
    );
    let (counts, rows) = match stored {
        (Some(before), Some(after)) => compare(before.iter(), after.iter(), after.estimated_len())?,
        _ => {
            let before = fleet::states_at(conn, before_upto)?;
            let after = fleet::states_at(conn, after_upto)?;
            compare(borrowed(&before), borrowed(&after), after.len())?
        }
    };
    Ok(Changes {
        counts,
        before_upto,
        after_upto,
        rows,
    })
}

/// Made states as the merge's items, for [`compare`].
fn borrowed(states: &[TaskState]) -> impl Iterator<Item = Result<StateRef<'_>, StorageError>> + '_ {
    states.iter().map(|s| Ok(StateRef::of_state(s)))
}

/// Every task's state at the second moment against its state at the first,
/// both in task id order: the verdicts counted, and a row for each (room made
/// for `expected`).
fn compare<'a, 'b>(
    before: impl Iterator<Item = Result<StateRef<'a>, StorageError>>,
    after: impl Iterator<Item = Result<StateRef<'b>, StorageError>>,
    expected: usize,
) -> Result<(VerdictCounts, Vec<ChangeRow>), StorageError> {
    let mut counts = VerdictCounts::default();
    let mut rows = Vec::with_capacity(expected);
    let mut before = before.peekable();
    for to_state in after {
        let to_state = to_state?;
        // Skip tasks only the first moment has (none: a task never loses its
        // uploads); an error is taken, to be returned.
        let mut from_state = None;
        while let Some(b) =
            before.next_if(|b| b.as_ref().map_or(true, |b| b.task_id <= to_state.task_id))
        {
            let b = b?;
            if b.task_id == to_state.task_id {
                from_state = Some(b);
                break;
            }
        }
        // An upload without results says nothing: it neither improves on nor
        // is improved on (before it, a task counts as new).
        let verdict = if to_state.no_results() {
            Verdict::NoResults
        } else {
            let before = from_state.filter(|s| !s.no_results());
            Verdict::of(before.map(|s| s.problems()), to_state.problems())
        };
        let clean = to_state.clean();
        match verdict {
            Verdict::New => counts.new += 1,
            Verdict::Improved => counts.improved += 1,
            Verdict::Regressed => counts.regressed += 1,
            Verdict::Unchanged => counts.unchanged += 1,
            Verdict::NoResults => counts.no_results += 1,
        }
        counts.clean += usize::from(clean);
        rows.push(ChangeRow {
            before: from_state.map(|s| s.upload_id),
            after: to_state.upload_id,
            verdict,
            clean,
            problems_change: to_state.problems() - from_state.map_or(0, |s| s.problems()),
        });
    }
    // A damaged snapshot is said even past the last task compared.
    for rest in before {
        rest?;
    }
    Ok((counts, rows))
}

/// What a page of changes shows (see [`StateCache::changes_page`]).
#[derive(Clone)]
pub struct ChangesShown {
    /// Tasks per verdict.
    pub counts: VerdictCounts,
    /// Rows the filter kept.
    pub kept: usize,
    /// The page's rows.
    pub rows: Vec<Change>,
}

/// The fleet at the end of one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrendPoint {
    /// `YYYY-MM-DD` (UTC).
    pub date: String,
    /// Tasks that had reported by then.
    pub tasks_reporting: i64,
    /// Their problems, summed over each task's latest upload.
    pub open_problems: i64,
    /// Those whose latest upload had results and no problems.
    pub tasks_clean: i64,
    /// Those whose latest upload had no results at all.
    pub tasks_without_results: i64,
}

impl TrendPoint {
    /// The fleet as these states show it (every task's latest upload by a moment),
    /// dated with the moment's day, and its tasks counted by filter.
    pub fn of_states(states: &[TaskState], at: Timestamp) -> (Self, HealthCounts) {
        // One pass: at 100,000 tasks the states are 12 MB.
        let mut figures = FleetFigures::default();
        for s in states {
            figures.add(s.problems, s.regressed, s.results);
        }
        (Self::of_figures(&figures, at), figures.health)
    }

    /// The fleet as counted at the moment `at`, dated with its day.
    pub fn of_figures(figures: &FleetFigures, at: Timestamp) -> Self {
        TrendPoint {
            date: date_of(day_of(at)),
            tasks_reporting: figures.tasks,
            open_problems: figures.open_problems,
            tasks_clean: figures.clean,
            tasks_without_results: figures.without_results,
        }
    }
}

/// Days a trend covers unless asked otherwise (the dashboard, the API).
pub const DEFAULT_TREND_DAYS: i64 = 90;

/// The most days one trend covers (ten years).
pub const MAX_TREND_DAYS: i64 = 3653;

/// The fleet at the end of every day from the day of `since` to the day of
/// `until`, both included (at most [`MAX_TREND_DAYS`], the latest kept).
pub fn trend(
    conn: &rusqlite::Connection,
    since: Timestamp,
    until: Timestamp,
) -> Result<Vec<TrendPoint>, StorageError> {
    let last = day_of(until);
    let first = day_of(since).max(last - MAX_TREND_DAYS + 1);
    if first > last {
        return Ok(Vec::new());
    }
    let stored = fleet::fleet_days(conn, first, last)?;
    Ok(fill_days(first, last, &stored))
}

/// One point a day from `first` to `last`: each the last stored day at or before
/// it (a day without uploads is the day before), zero before any.
pub fn fill_days(first: i64, last: i64, stored: &[FleetDay]) -> Vec<TrendPoint> {
    let mut stored = stored.iter().peekable();
    let mut current = FleetDay {
        day: first,
        tasks_reporting: 0,
        open_problems: 0,
        tasks_clean: 0,
        tasks_without_results: 0,
    };
    (first..=last)
        .map(|day| {
            while let Some(next) = stored.next_if(|d| d.day <= day) {
                current = *next;
            }
            TrendPoint {
                date: date_of(day),
                tasks_reporting: current.tasks_reporting,
                open_problems: current.open_problems,
                tasks_clean: current.tasks_clean,
                tasks_without_results: current.tasks_without_results,
            }
        })
        .collect()
}

/// `YYYY-MM-DD` of a day since the epoch.
pub fn date_of(day: i64) -> String {
    Utc.timestamp_millis_opt(day.saturating_mul(DAY_MS))
        .single()
        .map_or_else(|| day.to_string(), |t| t.format("%Y-%m-%d").to_string())
}

/// Which tasks of a [`Changes`] to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeFilter {
    /// Every task.
    All,
    /// Tasks with this verdict.
    Verdict(Verdict),
    /// No problems at the second moment.
    Clean,
}

/// A `verdict` or `sort` the fleet's changes do not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeQueryError {
    /// `verdict=` names no verdict.
    #[error(
        "verdict: must be new, improved, regressed, unchanged, no_results or clean (got {0:?})"
    )]
    Verdict(String),
    /// `sort=` names no order.
    #[error("sort: must be change or task (got {0:?})")]
    Sort(String),
}

impl ChangeFilter {
    /// `new`, `improved`, `regressed`, `unchanged`, `clean`, or empty for all.
    pub fn parse(s: Option<&str>) -> Result<Self, ChangeQueryError> {
        match s.unwrap_or("") {
            "" | "all" => Ok(ChangeFilter::All),
            "clean" => Ok(ChangeFilter::Clean),
            other => other
                .parse::<Verdict>()
                .map(ChangeFilter::Verdict)
                .map_err(|_| ChangeQueryError::Verdict(other.to_string())),
        }
    }

    /// The value of `verdict=` that names this filter.
    pub fn key(self) -> &'static str {
        match self {
            ChangeFilter::All => "",
            ChangeFilter::Clean => "clean",
            ChangeFilter::Verdict(v) => v.as_str(),
        }
    }

    fn keeps(self, c: &ChangeRow) -> bool {
        match self {
            ChangeFilter::All => true,
            ChangeFilter::Clean => c.clean,
            ChangeFilter::Verdict(v) => c.verdict == v,
        }
    }
}

/// The order of a [`Changes`]' tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeSort {
    /// Largest increase in problems first, largest decrease last (then by id).
    Change,
    /// By task id.
    Task,
}

impl ChangeSort {
    /// The order `sort=` names (the default when absent).
    pub fn parse(s: Option<&str>) -> Result<Self, ChangeQueryError> {
        match s.unwrap_or("change") {
            "change" => Ok(ChangeSort::Change),
            "task" => Ok(ChangeSort::Task),
            other => Err(ChangeQueryError::Sort(other.to_string())),
        }
    }

    /// The value of `sort=` that names this order.
    pub fn key(self) -> &'static str {
        match self {
            ChangeSort::Change => "change",
            ChangeSort::Task => "task",
        }
    }
}

impl Changes {
    /// The tasks `filter` keeps, in `sort` order.
    pub fn select(&self, filter: ChangeFilter, sort: ChangeSort) -> Selection<'_> {
        let mut picked = Vec::with_capacity(self.rows.len());
        picked
            .extend((0..self.rows.len() as u32).filter(|&i| filter.keeps(&self.rows[i as usize])));
        Selection {
            changes: self,
            sort,
            picked,
        }
    }

    /// Row `i` as a [`Change`], its states given.
    fn change(&self, i: u32, from: Option<TaskState>, to: TaskState) -> Change {
        let row = self.rows[i as usize];
        Change {
            task_id: to.task_id.clone(),
            name: to.name.clone(),
            from,
            to,
            verdict: row.verdict,
            clean: row.clean,
            problems_change: row.problems_change,
        }
    }
}

/// The tasks of a [`Changes`] a filter kept, in order.
pub struct Selection<'c> {
    changes: &'c Changes,
    sort: ChangeSort,
    /// Row numbers, by task id.
    picked: Vec<u32>,
}

impl Selection<'_> {
    /// How many tasks were kept.
    pub fn len(&self) -> usize {
        self.picked.len()
    }

    /// Whether none was.
    pub fn is_empty(&self) -> bool {
        self.picked.is_empty()
    }

    /// Up to `limit` of them, from the `offset`-th on: each state read by its
    /// upload's id.
    pub fn page(
        &self,
        conn: &rusqlite::Connection,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Change>, StorageError> {
        let first = self.first(offset.saturating_add(limit));
        let picked = first.get(offset..).unwrap_or_default();
        let state = |id: i64| {
            fleet::state_of_upload_id(conn, id)?
                .ok_or_else(|| StorageError::Background(format!("upload {id} is missing")))
        };
        picked
            .iter()
            .take(limit)
            .map(|&i| {
                let row = self.changes.rows[i as usize];
                let mut to = state(row.after)?;
                to.name = fleet::name_of(conn, &to.task_id)?;
                let from = row.before.map(state).transpose()?;
                let from = from.map(|from| TaskState {
                    name: to.name.clone(),
                    ..from
                });
                Ok(self.changes.change(i, from, to))
            })
            .collect()
    }

    /// The first `n` of them in order. By change, the largest increase first, ties
    /// by task id: the first `n` found, then only they sorted (a page of a
    /// hundred tasks sorts a hundred).
    fn first(&self, n: usize) -> Vec<u32> {
        let n = n.min(self.picked.len());
        match self.sort {
            ChangeSort::Task => self.picked[..n].to_vec(),
            ChangeSort::Change => {
                let rows = &self.changes.rows;
                let key = |&i: &u32| (std::cmp::Reverse(rows[i as usize].problems_change), i);
                let mut order = self.picked.clone();
                if n < order.len() {
                    order.select_nth_unstable_by_key(n, key);
                    order.truncate(n);
                }
                order.sort_unstable_by_key(key);
                order
            }
        }
    }

    /// Every one of them: both fleets made, for as many rows as there are tasks.
    pub fn all(&self, conn: &rusqlite::Connection) -> Result<Vec<Change>, StorageError> {
        let changes = self.changes;
        let after = fleet::states_at(conn, changes.after_upto)?;
        let before = fleet::states_at(conn, changes.before_upto)?;
        let same = after.len() == changes.rows.len()
            && after
                .iter()
                .zip(&changes.rows)
                .all(|(s, r)| s.upload_id == r.after);
        if !same {
            return Err(StorageError::Background(format!(
                "the fleet as of upload {} is not the one compared",
                changes.after_upto
            )));
        }
        // Each row's two states, by a walk of both fleets in task id order.
        let mut earlier = before.into_iter().peekable();
        let mut states: Vec<Option<(Option<TaskState>, TaskState)>> = after
            .into_iter()
            .map(|to| {
                while earlier.next_if(|b| b.task_id < to.task_id).is_some() {}
                Some((earlier.next_if(|b| b.task_id == to.task_id), to))
            })
            .collect();
        Ok(self
            .first(self.picked.len())
            .iter()
            .map(|&i| {
                let (from, to) = states[i as usize].take().expect("each row is picked once");
                changes.change(i, from, to)
            })
            .collect())
    }
}

/// The columns of a changes CSV.
pub const CHANGES_CSV_HEADER: [&str; 17] = [
    "task_id",
    "name",
    "verdict",
    "clean",
    "problems_change",
    "from_upload_id",
    "from_received_at",
    "from_total_files",
    "from_different_files",
    "from_target_miss_files",
    "from_target_more_files",
    "to_upload_id",
    "to_received_at",
    "to_total_files",
    "to_different_files",
    "to_target_miss_files",
    "to_target_more_files",
];

/// The rows as CSV (text cells spreadsheet-safe, as in exports).
pub fn write_changes_csv(rows: &[Change], out: impl std::io::Write) -> Result<(), csv::Error> {
    use crate::domain::format_timestamp;
    use crate::services::export::cell;
    let mut w = csv::Writer::from_writer(out);
    w.write_record(CHANGES_CSV_HEADER)?;
    for c in rows {
        let state = |s: Option<&TaskState>| -> [String; 6] {
            match s {
                None => Default::default(),
                Some(s) => [
                    s.upload_id.to_string(),
                    format_timestamp(s.received_at),
                    s.totals.num_total_files.to_string(),
                    s.totals.num_different_files.to_string(),
                    s.totals.num_target_miss_files.to_string(),
                    s.totals.num_target_more_files.to_string(),
                ],
            }
        };
        let mut record = vec![
            cell(&c.task_id),
            cell(c.name.as_deref().unwrap_or("")),
            c.verdict.as_str().to_string(),
            c.clean.to_string(),
            c.problems_change.to_string(),
        ];
        record.extend(state(c.from.as_ref()));
        record.extend(state(Some(&c.to)));
        w.write_record(&record)?;
    }
    w.flush()?;
    Ok(())
}

/// Uploads between two fleet snapshots: a state as of any moment reads the
/// nearest snapshot and applies at most this many uploads.
pub const SNAPSHOT_EVERY: i64 = 20_000;

/// One snapshot in this many holds the whole fleet; the others hold what changed
/// since the one before, which a state as of any moment applies in turn.
pub const WHOLE_EVERY: i64 = 3;

/// Makes the snapshots the ledger is due, one every `every` uploads, oldest
/// first, each from the one before (on a read connection; the writer only stores
/// it). Returns how many it made. Blocking.
pub fn make_due_snapshots(
    reads: &crate::storage::ReadPool,
    writer: &crate::storage::writer::WriterHandle,
    every: i64,
) -> Result<usize, StorageError> {
    let mut made = 0;
    loop {
        let (last, head) = reads.with(|conn| {
            Ok((
                fleet::last_snapshot(conn)?,
                crate::storage::ledger::last_id(conn)?,
            ))
        })?;
        let next = (last / every + 1) * every;
        if next > head {
            return Ok(made);
        }
        // Every WHOLE_EVERY-th snapshot is the whole fleet, the others its changes.
        let since = (last > 0 && (next / every) % WHOLE_EVERY != 0).then_some(last);
        let stored =
            reads.with(|conn| Ok(fleet::pack_snapshot(&fleet::states_at(conn, next)?, since)))?;
        writer
            .execute_blocking(move |conn| fleet::insert_snapshot(conn, next, since, &stored))
            .map_err(|e| StorageError::Background(e.to_string()))?;
        made += 1;
    }
}

/// Makes due snapshots at start and then every ten seconds, for as long as the
/// service runs.
pub async fn snapshot_loop(
    reads: crate::storage::ReadPool,
    writer: crate::storage::writer::WriterHandle,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut last_error: Option<String> = None;
    let mut first = true;
    loop {
        if !first && super::background::pause(&stop, std::time::Duration::from_secs(10)).await {
            return;
        }
        let first_pass = std::mem::replace(&mut first, false);
        let (r, w) = (reads.clone(), writer.clone());
        let made = tokio::task::spawn_blocking(move || make_due_snapshots(&r, &w, SNAPSHOT_EVERY))
            .await
            .map_err(|e| StorageError::Background(e.to_string()))
            .and_then(|made| made);
        match made {
            Ok(made) => {
                if made > 0 || first_pass {
                    tracing::info!(made, "fleet snapshots up to date");
                }
                last_error = None
            }
            Err(e) => {
                // Said once per new trouble, not every time.
                if last_error.as_deref() != Some(e.to_string().as_str()) {
                    tracing::warn!("fleet snapshot not made: {e}");
                }
                last_error = Some(e.to_string());
            }
        }
    }
}
