//! Fleet history: every task as of an upload id, the fleet's state at the end of
//! each day, and every task's latest counts per directory. The writer keeps
//! `fleet_days` and `task_directories` in the upload's transaction (triggers keep
//! `directory_tasks`, each directory's count of tasks, with the latter); the as-of
//! state of a task is one seek in the `uploads_task_state` index.

use std::cmp::Ordering;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::tasks::HealthCounts;
use super::uploads::first_id_at_or_after;
use super::uploads::totals_from_row;
use super::StorageError;
use crate::domain::fleet::day_of;
use crate::domain::Totals;
use crate::domain::{ConsistencyResult, Timestamp};

/// The id of the last upload received at or before `at` (0: none).
pub fn last_id_at(conn: &Connection, at: Timestamp) -> Result<i64, StorageError> {
    Ok(first_id_at_or_after(conn, at.saturating_add(1))? - 1)
}

/// A task as its latest upload up to some id shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskState {
    /// The task.
    pub task_id: String,
    /// Its name, if it has one.
    pub name: Option<String>,
    /// Its latest upload by then.
    pub upload_id: i64,
    /// When that upload arrived.
    pub received_at: Timestamp,
    /// That upload's totals.
    pub totals: Totals,
    /// Its problems (different + missing + extra files).
    pub problems: i64,
    /// The upload has more problems than the task's upload before it.
    pub regressed: bool,
    /// Result items in that upload: none is "no results", never clean.
    pub results: i64,
}

impl TaskState {
    /// Its latest upload has results and none of them a problem.
    pub fn clean(&self) -> bool {
        self.results > 0 && self.problems == 0
    }

    /// Its latest upload has no result items at all.
    pub fn no_results(&self) -> bool {
        self.results == 0
    }
}

/// Uploads applied to a snapshot at most; further from one, [`states_at`] seeks
/// every task instead.
pub const MAX_APPLIED: i64 = 50_000;

/// Every task that has an upload with id `<= upto`, as its latest such upload
/// shows it, by task id: the nearest snapshot at or before `upto` (or the empty
/// fleet before the first upload) with the uploads after it applied, or (none
/// near enough) a seek per task.
pub fn states_at(conn: &Connection, upto: i64) -> Result<Vec<TaskState>, StorageError> {
    // Before the first snapshot, the fleet as of upload 0 (none) is as near.
    let (from, mut states) = snapshot_at(conn, upto)?.unwrap_or_default();
    if upto - from > MAX_APPLIED {
        return states_by_seeks(conn, upto);
    }
    apply_uploads(conn, &mut states, from, upto)?;
    add_names(conn, &mut states)?;
    Ok(states)
}

/// The fleet as of the newest snapshot at or before `upto`, and that snapshot's
/// id (none: no whole snapshot by then; see [`snapshot_layers`]).
fn snapshot_at(
    conn: &Connection,
    upto: i64,
) -> Result<Option<(i64, Vec<TaskState>)>, StorageError> {
    let Some((at, layers)) = snapshot_layers(conn, upto)? else {
        return Ok(None);
    };
    let mut layers = layers.into_iter();
    let Some((whole_at, whole)) = layers.next() else {
        return Ok(None);
    };
    let mut states = decode_states(&whole).ok_or_else(|| damaged_snapshot(whole_at))?;
    for (changed_at, changes) in layers {
        apply_changes(&mut states, &changes).ok_or_else(|| damaged_snapshot(changed_at))?;
    }
    Ok(Some((at, states)))
}

/// Layers read at most ([`MergedStates`] marks them in 64 bits); the uploads
/// after the last are applied instead. Snapshots keep two of changes between
/// whole ones.
const MAX_LAYERS: usize = 64;

/// Snapshots inflated, oldest first, each with its upload id.
type Layers = Vec<(i64, Inflated)>;

/// The newest whole snapshot at or before `upto` and each snapshot of changes
/// after it, up to a gap in the chain, inflated, and the last one's id; none:
/// no whole snapshot by then.
fn snapshot_layers(conn: &Connection, upto: i64) -> Result<Option<(i64, Layers)>, StorageError> {
    let whole: Option<(i64, Vec<u8>)> = conn
        .prepare_cached(
            "SELECT upto, states FROM fleet_snapshots WHERE upto <= ?1 AND since IS NULL
             ORDER BY upto DESC LIMIT 1",
        )?
        .query_row(params![upto], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((mut at, packed)) = whole else {
        return Ok(None);
    };
    let mut layers = vec![(
        at,
        inflate_whole(&packed).ok_or_else(|| damaged_snapshot(at))?,
    )];
    let mut changes = conn.prepare_cached(
        "SELECT upto, since, states FROM fleet_snapshots WHERE upto > ?1 AND upto <= ?2
         ORDER BY upto",
    )?;
    let mut rows = changes.query(params![at, upto])?;
    while let Some(r) = rows.next()? {
        if r.get::<_, Option<i64>>(1)? != Some(at) || layers.len() == MAX_LAYERS {
            break; // the uploads after `at` are applied instead
        }
        let next: i64 = r.get(0)?;
        let blob = r.get_ref(2)?.as_blob().map_err(rusqlite::Error::from)?;
        layers.push((
            next,
            inflate_whole(blob).ok_or_else(|| damaged_snapshot(next))?,
        ));
        at = next;
    }
    Ok(Some((at, layers)))
}

/// The first position in `sorted` (by task id) whose task id is not below
/// `task_id`: a window twice as far each step, then a binary search inside it,
/// so that a position near the front costs a few comparisons.
fn gallop(sorted: &[TaskState], task_id: &[u8]) -> usize {
    let mut end = 1;
    while end < sorted.len() && sorted[end - 1].task_id.as_bytes() < task_id {
        end *= 2;
    }
    let start = end / 2;
    start + sorted[start..sorted.len().min(end)].partition_point(|s| s.task_id.as_bytes() < task_id)
}

/// The uploads with ids in `(from, upto]` applied to `states` (by task id).
fn apply_uploads(
    conn: &Connection,
    states: &mut Vec<TaskState>,
    from: i64,
    upto: i64,
) -> Result<(), StorageError> {
    if upto <= from {
        return Ok(()); // a moment at a snapshot: no keys to make for nothing
    }
    let mut stmt = conn.prepare_cached(
        "SELECT id, task_id, received_at, total_files, different_files, target_miss_files,
                target_more_files, regressed, result_count
         FROM uploads WHERE id > ?1 AND id <= ?2 ORDER BY id",
    )?;
    let mut rows = stmt.query(params![from, upto])?;
    let mut added: Vec<TaskState> = Vec::new();
    let mut added_at: std::collections::HashMap<String, usize> = Default::default();
    let keys = IdKeys::of(states);
    while let Some(r) = rows.next()? {
        let totals = totals_from_row(r, 3)?;
        let task_id = r.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
        let slot = match keys.find(states, task_id) {
            Some(i) => &mut states[i],
            None => match added_at.get(task_id) {
                Some(&i) => &mut added[i],
                None => {
                    added_at.insert(task_id.to_string(), added.len());
                    added.push(TaskState {
                        task_id: task_id.to_string(),
                        name: None,
                        upload_id: 0,
                        received_at: 0,
                        totals,
                        problems: 0,
                        regressed: false,
                        results: 0,
                    });
                    added.last_mut().expect("just added")
                }
            },
        };
        slot.upload_id = r.get(0)?;
        slot.received_at = r.get(2)?;
        slot.problems = totals.problems();
        slot.totals = totals;
        slot.regressed = r.get(7)?;
        slot.results = r.get(8)?;
    }
    if !added.is_empty() {
        states.extend(added);
        states.sort_by(|a, b| a.task_id.cmp(&b.task_id));
    }
    Ok(())
}

/// The task ids of a fleet (by task id) as numbers in the same order, to search
/// instead of the states: eight bytes of each id after the prefix all share,
/// zero-padded. A binary search of the states for each applied upload reads a
/// state and then its id at every step; the keys lie together, 8 bytes a task.
/// A new moment's dashboard took a tenth less at 10,000 tasks, and a little less
/// at 100,000 (BENCHMARKS.md, fifth round).
struct IdKeys {
    /// Bytes every id starts with.
    shared: usize,
    keys: Vec<u64>,
}

impl IdKeys {
    fn of(states: &[TaskState]) -> Self {
        // Sorted, the first and the last share what all share.
        let shared = match (states.first(), states.last()) {
            (Some(a), Some(b)) => a
                .task_id
                .bytes()
                .zip(b.task_id.bytes())
                .take_while(|(x, y)| x == y)
                .count(),
            _ => 0,
        };
        let keys = states
            .iter()
            .map(|s| Self::key(&s.task_id.as_bytes()[shared..]))
            .collect();
        IdKeys { shared, keys }
    }

    /// Eight bytes, zero-padded: ids in order give keys in order (ties possible).
    fn key(rest: &[u8]) -> u64 {
        let mut key = [0u8; 8];
        let n = rest.len().min(8);
        key[..n].copy_from_slice(&rest[..n]);
        u64::from_be_bytes(key)
    }

    /// The position of `task_id` in `states` (those `self` was made of).
    fn find(&self, states: &[TaskState], task_id: &str) -> Option<usize> {
        let prefix = &states.first()?.task_id.as_bytes()[..self.shared];
        let key = Self::key(task_id.as_bytes().strip_prefix(prefix)?);
        let first = self.keys.partition_point(|&k| k < key);
        let ties = self.keys[first..].partition_point(|&k| k == key);
        let found =
            states[first..first + ties].binary_search_by(|s| s.task_id.as_str().cmp(task_id));
        found.ok().map(|i| first + i)
    }
}

/// A fleet counted: its tasks, and their latest uploads by what they show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FleetFigures {
    /// Tasks with an upload.
    pub tasks: i64,
    /// Problems, summed over each task's latest upload.
    pub open_problems: i64,
    /// Tasks whose latest upload has results and no problems.
    pub clean: i64,
    /// Tasks whose latest upload has no results.
    pub without_results: i64,
    /// The tasks each filter passes.
    pub health: HealthCounts,
}

impl FleetFigures {
    /// Counts one task's latest upload.
    pub fn add(&mut self, problems: i64, regressed: bool, results: i64) {
        self.tasks += 1;
        self.open_problems += problems;
        self.clean += i64::from(results > 0 && problems == 0);
        self.without_results += i64::from(results == 0);
        self.health.add(problems, regressed, results);
    }
}

/// The fleet as of upload `upto` counted without making its states (see
/// [`StoredStates`]). None: no snapshot near enough (then [`states_at`] seeks
/// every task, and so must the caller).
pub fn figures_at(conn: &Connection, upto: i64) -> Result<Option<FleetFigures>, StorageError> {
    let Some(stored) = StoredStates::at(conn, upto)? else {
        return Ok(None);
    };
    let mut figures = FleetFigures::default();
    for state in stored.iter() {
        let state = state?;
        figures.add(state.problems(), state.regressed, state.results);
    }
    Ok(Some(figures))
}

/// Every task's state as of an upload id where it lies: the snapshots (a whole
/// one and the snapshots of changes after it, inflated) and each task's latest
/// upload since, to be read once in task id order with no state allocated.
pub struct StoredStates {
    layers: Layers,
    latest: Vec<TaskState>,
}

impl StoredStates {
    /// As of upload `upto`; none when no snapshot is near enough (more than
    /// [`MAX_APPLIED`] uploads after it).
    pub fn at(conn: &Connection, upto: i64) -> Result<Option<Self>, StorageError> {
        let (from, layers) = snapshot_layers(conn, upto)?.unwrap_or_default();
        if upto - from > MAX_APPLIED {
            return Ok(None);
        }
        let latest = latest_since(conn, from, upto)?;
        Ok(Some(StoredStates { layers, latest }))
    }

    /// About how many tasks there are (room to make for them): the largest
    /// layer's, at 64 bytes a packed state, and the uploads since.
    pub fn estimated_len(&self) -> usize {
        let largest = self.layers.iter().map(|(_, l)| l.len()).max().unwrap_or(0);
        largest / 64 + self.latest.len()
    }

    /// Every task's state, by task id; a damaged snapshot ends it with an error
    /// where its states stop being whole.
    pub fn iter(&self) -> MergedStates<'_> {
        let mut packed: Vec<PackedIter> =
            self.layers.iter().map(|(_, l)| PackedIter::of(l)).collect();
        MergedStates {
            heads: packed.iter_mut().map(Iterator::next).collect(),
            packed,
            uploads: self.latest.iter().peekable(),
            stored: self,
            failed: false,
        }
    }
}

/// The states of a [`StoredStates`], merged by task id: of the layers holding a
/// task, the last has its newest state, and an upload since is newer still.
pub struct MergedStates<'a> {
    stored: &'a StoredStates,
    packed: Vec<PackedIter<'a>>,
    /// Each layer's next state.
    heads: Vec<Option<StateRef<'a>>>,
    uploads: std::iter::Peekable<std::slice::Iter<'a, TaskState>>,
    /// A damaged layer was reported.
    failed: bool,
}

impl<'a> Iterator for MergedStates<'a> {
    type Item = Result<StateRef<'a>, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        // A layer stops at a state that is not whole: said before any state
        // merged without it, once.
        if let Some(damaged) = self.packed.iter().position(|p| p.damaged) {
            if std::mem::replace(&mut self.failed, true) {
                return None;
            }
            return Some(Err(damaged_snapshot(self.stored.layers[damaged].0)));
        }
        // The smallest task id among the layers' next states, and the layers
        // holding it (each head compared once).
        let mut smallest: Option<&'a [u8]> = None;
        let mut holding = 0u64;
        for (i, head) in self.heads.iter().enumerate() {
            let Some(head) = head else { continue };
            match smallest.map(|s| head.task_id.cmp(s)) {
                None | Some(Ordering::Less) => {
                    smallest = Some(head.task_id);
                    holding = 1 << i;
                }
                Some(Ordering::Equal) => holding |= 1 << i,
                Some(Ordering::Greater) => {}
            }
        }
        // An upload since is newer than any layer.
        let upload = self.uploads.peek().map(|u| u.task_id.as_bytes());
        let (take_upload, advance) = match (upload, smallest) {
            (None, None) => return None,
            (Some(_), None) => (true, false),
            (None, Some(_)) => (false, true),
            (Some(u), Some(s)) => match u.cmp(s) {
                Ordering::Less => (true, false),
                Ordering::Equal => (true, true),
                Ordering::Greater => (false, true),
            },
        };
        let mut newest = None;
        if advance {
            // The last layer holding the task has its newest state.
            for (i, (head, rest)) in self.heads.iter_mut().zip(&mut self.packed).enumerate() {
                if holding & (1 << i) != 0 {
                    newest = std::mem::replace(head, rest.next());
                }
            }
        }
        if take_upload {
            newest = self.uploads.next().map(StateRef::of_state);
        }
        newest.map(Ok)
    }
}

/// A task's state as one upload shows it, from a row of `id, task_id,
/// received_at`, the four totals, `regressed, result_count` (`task_id` read off
/// it by the caller; no name).
fn state_of_upload(r: &rusqlite::Row<'_>, task_id: String) -> rusqlite::Result<TaskState> {
    let totals = totals_from_row(r, 3)?;
    Ok(TaskState {
        task_id,
        name: None,
        upload_id: r.get(0)?,
        received_at: r.get(2)?,
        problems: totals.problems(),
        totals,
        regressed: r.get(7)?,
        results: r.get(8)?,
    })
}

/// The state of the task of upload `id` as that upload shows it, without its
/// name (none: no such upload): one seek by id.
pub fn state_of_upload_id(conn: &Connection, id: i64) -> Result<Option<TaskState>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, task_id, received_at, total_files, different_files, target_miss_files,
                target_more_files, regressed, result_count
         FROM uploads WHERE id = ?1",
    )?;
    let state = stmt
        .query_row(params![id], |r| state_of_upload(r, r.get(1)?))
        .optional()?;
    Ok(state)
}

/// A task's name (none: not named, or no such task).
pub fn name_of(conn: &Connection, task_id: &str) -> Result<Option<String>, StorageError> {
    Ok(task_name(conn, task_id)?.flatten())
}

/// Each task's latest upload with an id in `(from, upto]`, by task id: every
/// upload read, then sorted (a map by task id hashed every upload's id, which
/// showed in the profile).
fn latest_since(conn: &Connection, from: i64, upto: i64) -> Result<Vec<TaskState>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, task_id, received_at, total_files, different_files, target_miss_files,
                target_more_files, regressed, result_count
         FROM uploads WHERE id > ?1 AND id <= ?2",
    )?;
    let mut rows = stmt.query(params![from, upto])?;
    // Room for them all at once: growing copied thousands of states.
    let mut latest = Vec::with_capacity((upto - from).clamp(0, MAX_APPLIED) as usize);
    while let Some(r) = rows.next()? {
        latest.push(state_of_upload(r, r.get(1)?)?);
    }
    // Each task's newest first, then all but it dropped.
    latest.sort_unstable_by(|a, b| {
        (a.task_id.as_str(), b.upload_id).cmp(&(b.task_id.as_str(), a.upload_id))
    });
    latest.dedup_by(|later, kept| later.task_id == kept.task_id);
    Ok(latest)
}

/// The states a packed snapshot holds, in order; `damaged` once one is not whole.
struct PackedIter<'a> {
    rest: &'a [u8],
    damaged: bool,
}

impl<'a> PackedIter<'a> {
    fn of(packed: &'a [u8]) -> Self {
        PackedIter {
            rest: packed,
            damaged: false,
        }
    }
}

impl<'a> Iterator for PackedIter<'a> {
    type Item = StateRef<'a>;

    fn next(&mut self) -> Option<StateRef<'a>> {
        if self.rest.is_empty() || self.damaged {
            return None;
        }
        let state = StateRef::take(&mut self.rest);
        self.damaged = state.is_none();
        state
    }
}

/// The `count` tasks whose latest uploads by upload `upto` are the newest,
/// newest first (the same time: the larger task id first), names added; or
/// none, when more than [`MAX_APPLIED`] uploads would be read to find them.
/// Uploads are read back from `upto` (their times never go back): a page of
/// the dashboard by last upload without making the whole fleet.
pub fn newest_at(
    conn: &Connection,
    upto: i64,
    count: usize,
) -> Result<Option<Vec<TaskState>>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, task_id, received_at, total_files, different_files, target_miss_files,
                target_more_files, regressed, result_count
         FROM uploads WHERE id <= ?1 ORDER BY id DESC",
    )?;
    let mut rows = stmt.query(params![upto])?;
    let mut seen = std::collections::HashSet::new();
    let mut newest: Vec<TaskState> = Vec::new();
    let mut read = 0;
    let mut before = Timestamp::MAX;
    while let Some(r) = rows.next()? {
        let received_at: Timestamp = r.get(2)?;
        read += 1;
        // A time that went back (not in order by id), or too far to read.
        if received_at > before || read > MAX_APPLIED {
            return Ok(None);
        }
        before = received_at;
        // Past the count, only tasks as new as the last counted can still tie.
        if newest.len() >= count && newest.last().is_some_and(|l| received_at < l.received_at) {
            break;
        }
        let task_id = r.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
        if !seen.insert(task_id.to_string()) {
            continue;
        }
        newest.push(state_of_upload(r, task_id.to_string())?);
    }
    newest.sort_by(|a, b| (b.received_at, &b.task_id).cmp(&(a.received_at, &a.task_id)));
    newest.truncate(count);
    for state in &mut newest {
        state.name = task_name(conn, &state.task_id)?.flatten();
    }
    Ok(Some(newest))
}

/// Task names, which snapshots leave out (a task may be renamed): the named
/// tasks by id from their own index (V27), merged into `states` (by id too).
fn add_names(conn: &Connection, states: &mut [TaskState]) -> Result<(), StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT task_id, name FROM tasks INDEXED BY tasks_named
         WHERE name IS NOT NULL ORDER BY task_id",
    )?;
    let mut rows = stmt.query([])?;
    let mut states = states.iter_mut().peekable();
    while let Some(r) = rows.next()? {
        let task_id = r.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
        while states.next_if(|s| s.task_id.as_str() < task_id).is_some() {}
        if let Some(state) = states.next_if(|s| s.task_id == task_id) {
            state.name = r.get(1)?;
        }
    }
    Ok(())
}

/// The states packed for `fleet_snapshots`: per task (by task id) its id's length
/// (u16) and bytes, then upload id, received_at, the four totals (i64 each, big
/// endian) and regressed (u8).
pub fn encode_states(states: &[TaskState]) -> Vec<u8> {
    let mut out = Vec::with_capacity(states.len() * 96);
    for s in states {
        out.extend_from_slice(&(s.task_id.len() as u16).to_be_bytes());
        out.extend_from_slice(s.task_id.as_bytes());
        let t = &s.totals;
        for n in [
            s.upload_id,
            s.received_at,
            t.num_total_files,
            t.num_different_files,
            t.num_target_miss_files,
            t.num_target_more_files,
            s.results,
        ] {
            out.extend_from_slice(&n.to_be_bytes());
        }
        out.push(u8::from(s.regressed));
    }
    out
}

/// The bytes of a packed state after its task id: seven numbers of eight bytes
/// and regressed ([`encode_states`]).
const PACKED_NUMBERS: usize = 7 * 8 + 1;

/// The inverse of [`encode_states`] (names left empty); none when damaged.
pub fn decode_states(mut packed: &[u8]) -> Option<Vec<TaskState>> {
    // A state takes 59 bytes and its task id: reserving for 64 saves growing
    // the list (a little too much room when ids are longer).
    let mut states = Vec::with_capacity(packed.len() / 64);
    while !packed.is_empty() {
        states.push(StateRef::take(&mut packed)?.to_state()?);
    }
    Some(states)
}

/// The states of a snapshot of changes ([`encode_states`]) put in `states` (by
/// task id), each replacing its task's state; none when damaged. A task already
/// there keeps its id and takes the numbers, so only new tasks are allocated.
/// Each is looked for from where the one before was found ([`gallop`]): a
/// snapshot of changes may hold a fifth of the fleet, and a search of the whole
/// list for each cost a tenth of building the fleet at 100,000 tasks.
fn apply_changes(states: &mut Vec<TaskState>, mut packed: &[u8]) -> Option<()> {
    let mut added = Vec::new();
    let mut from = 0;
    while !packed.is_empty() {
        let changed = StateRef::take(&mut packed)?;
        from += gallop(&states[from..], changed.task_id);
        match states.get_mut(from) {
            Some(s) if s.task_id.as_bytes() == changed.task_id => changed.write_to(s),
            _ => added.push(changed.to_state()?),
        }
    }
    if !added.is_empty() {
        states.extend(added);
        states.sort_by(|a, b| a.task_id.cmp(&b.task_id));
    }
    Some(())
}

/// A task's state, borrowed: as [`encode_states`] packs it (its task id still in
/// the packed bytes), or from a [`TaskState`]; no name.
#[derive(Debug, Clone, Copy)]
pub struct StateRef<'a> {
    /// The task's id, its bytes as stored: merged and compared as bytes (which
    /// order as the text does), checked as text only when a state is made of it.
    pub task_id: &'a [u8],
    /// Its latest upload by then.
    pub upload_id: i64,
    /// When that upload arrived.
    pub received_at: i64,
    /// That upload's totals.
    pub totals: Totals,
    /// The upload has more problems than the task's upload before it.
    pub regressed: bool,
    /// Result items in that upload.
    pub results: i64,
}

impl<'a> StateRef<'a> {
    /// The state `packed` starts with, taken off it; none when damaged. Its
    /// length is checked once and its numbers read at fixed places: the merge
    /// takes every state of every layer, 200,000 and more for a comparison at
    /// 100,000 tasks.
    fn take(packed: &mut &'a [u8]) -> Option<Self> {
        let (len, rest) = packed.split_first_chunk::<2>()?;
        let (task_id, rest) = rest.split_at_checked(u16::from_be_bytes(*len) as usize)?;
        let (numbers, rest) = rest.split_first_chunk::<PACKED_NUMBERS>()?;
        *packed = rest;
        let n = |i: usize| {
            let at = i * 8;
            i64::from_be_bytes(numbers[at..at + 8].try_into().expect("eight bytes"))
        };
        Some(StateRef {
            task_id,
            upload_id: n(0),
            received_at: n(1),
            totals: Totals {
                num_total_files: n(2),
                num_different_files: n(3),
                num_target_miss_files: n(4),
                num_target_more_files: n(5),
            },
            regressed: numbers[PACKED_NUMBERS - 1] != 0,
            results: n(6),
        })
    }

    /// Its problems (different + missing + extra files).
    pub fn problems(&self) -> i64 {
        self.totals.problems()
    }

    /// Its latest upload has results and none of them a problem.
    pub fn clean(&self) -> bool {
        self.results > 0 && self.problems() == 0
    }

    /// Its latest upload has no result items at all.
    pub fn no_results(&self) -> bool {
        self.results == 0
    }

    /// A state's numbers, its task id borrowed.
    pub fn of_state(state: &'a TaskState) -> Self {
        StateRef {
            task_id: state.task_id.as_bytes(),
            upload_id: state.upload_id,
            received_at: state.received_at,
            totals: state.totals,
            regressed: state.regressed,
            results: state.results,
        }
    }

    /// A state made of it; none when its task id is not text (damaged).
    fn to_state(self) -> Option<TaskState> {
        Some(TaskState {
            task_id: String::from_utf8(self.task_id.to_vec()).ok()?,
            name: None,
            upload_id: self.upload_id,
            received_at: self.received_at,
            problems: self.totals.problems(),
            totals: self.totals,
            regressed: self.regressed,
            results: self.results,
        })
    }

    /// Its numbers written over `state`'s (the same task's).
    fn write_to(&self, state: &mut TaskState) {
        state.upload_id = self.upload_id;
        state.received_at = self.received_at;
        state.problems = self.totals.problems();
        state.totals = self.totals;
        state.regressed = self.regressed;
        state.results = self.results;
    }
}

/// The newest snapshot's upload id (0: none).
pub fn last_snapshot(conn: &Connection) -> Result<i64, StorageError> {
    Ok(conn.query_row(
        "SELECT coalesce(max(upto), 0) FROM fleet_snapshots",
        [],
        |r| r.get(0),
    )?)
}

/// A snapshot as stored: every task of `states` (`since` none), or only those whose
/// latest upload is newer than `since` (the snapshot before), packed with
/// [`encode_states`] and deflated.
pub fn pack_snapshot(states: &[TaskState], since: Option<i64>) -> Vec<u8> {
    use std::io::Write;
    let packed = match since {
        None => encode_states(states),
        Some(since) => {
            let changed: Vec<TaskState> = states
                .iter()
                .filter(|s| s.upload_id > since)
                .cloned()
                .collect();
            encode_states(&changed)
        }
    };
    let mut deflate =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    deflate.write_all(&packed).expect("writing to memory");
    deflate.finish().expect("writing to memory")
}

fn damaged_snapshot(upto: i64) -> StorageError {
    StorageError::Background(format!("fleet snapshot {upto} is damaged"))
}

/// `deflated` inflated at once into one buffer (none when damaged): libdeflate
/// does it in about 60 % of a streaming inflater's time (3.3 ms against 5.3 for
/// a snapshot of 100,000 tasks, a seventh of a new moment's dashboard). It needs
/// room for the whole: snapshots deflate to about a fifth, and room found short
/// is doubled, up to deflate's greatest ratio.
fn inflate_whole(deflated: &[u8]) -> Option<Inflated> {
    const DEFLATE_MAX_RATIO: usize = 1032;
    let most = deflated.len().saturating_mul(DEFLATE_MAX_RATIO).max(4096);
    let mut room = deflated.len().saturating_mul(6).clamp(4096, most);
    let mut inflated = Inflated::room(room);
    room = room.max(inflated.buffer.len().min(most));
    let mut inflater = libdeflater::Decompressor::new();
    loop {
        if inflated.buffer.len() < room {
            // Not grown in place: that would copy what it held.
            inflated.buffer = vec![0; room];
        }
        match inflater.deflate_decompress(deflated, &mut inflated.buffer[..room]) {
            Ok(len) => {
                inflated.len = len;
                return Some(inflated);
            }
            Err(libdeflater::DecompressionError::InsufficientSpace) if room < most => {
                room = room.saturating_mul(2).min(most);
            }
            Err(_) => return None,
        }
    }
}

/// Buffers snapshots were inflated into, kept for the next ones: a new buffer
/// of several MB at 100,000 tasks was zeroed, and its pages cleared again by
/// the kernel, for every new moment.
static INFLATE_BUFFERS: parking_lot::Mutex<Vec<Vec<u8>>> = parking_lot::Mutex::new(Vec::new());

/// A snapshot inflated: the first `len` bytes of a buffer kept for reuse.
struct Inflated {
    /// Zeroed once: all of it is room to inflate into.
    buffer: Vec<u8>,
    len: usize,
}

impl Inflated {
    /// Buffers kept at most: a whole snapshot and the two of changes after it,
    /// for each of the two moments a comparison reads at once, for four
    /// comparisons at once (with six, three in four buffers of concurrent
    /// comparisons were new, and clearing their pages took a tenth of a new
    /// comparison's CPU at 100,000 tasks).
    const KEPT: usize = 24;
    /// Bytes kept at most, all buffers together (about four comparisons at
    /// 100,000 tasks); a larger buffer is not kept.
    const KEPT_BYTES: usize = 128 << 20;

    /// A kept buffer: the smallest of at least `need` bytes, or else the largest.
    fn room(need: usize) -> Self {
        let mut kept = INFLATE_BUFFERS.lock();
        let len = |i: &usize| kept[*i].len();
        let at = (0..kept.len())
            .filter(|i| len(i) >= need)
            .min_by_key(len)
            .or_else(|| (0..kept.len()).max_by_key(len));
        Inflated {
            buffer: at.map(|i| kept.swap_remove(i)).unwrap_or_default(),
            len: 0,
        }
    }
}

impl std::ops::Deref for Inflated {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.buffer[..self.len]
    }
}

impl Drop for Inflated {
    fn drop(&mut self) {
        let mut kept = INFLATE_BUFFERS.lock();
        let held: usize = kept.iter().map(Vec::len).sum();
        if kept.len() < Self::KEPT && held + self.buffer.len() <= Self::KEPT_BYTES {
            kept.push(std::mem::take(&mut self.buffer));
        }
    }
}

/// Stores a snapshot made with [`pack_snapshot`] (a second one for the same id is
/// the same, and ignored).
pub fn insert_snapshot(
    conn: &Connection,
    upto: i64,
    since: Option<i64>,
    stored: &[u8],
) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO fleet_snapshots (upto, since, states) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![upto, since, stored])?;
    Ok(())
}

/// [`states_at`] by a seek per task (two index seeks each, in one statement).
pub fn states_by_seeks(conn: &Connection, upto: i64) -> Result<Vec<TaskState>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "WITH latest AS MATERIALIZED (
            SELECT t.task_id AS task_id, t.name AS name,
                   (SELECT max(x.id) FROM uploads x WHERE x.task_id = t.task_id AND x.id <= ?1)
                       AS id
            FROM tasks t
         )
         SELECT l.task_id, l.name, s.id, s.received_at, s.total_files, s.different_files,
                s.target_miss_files, s.target_more_files, s.regressed, s.result_count
         FROM latest l JOIN uploads s INDEXED BY uploads_task_state
              ON s.task_id = l.task_id AND s.id = l.id
         ORDER BY l.task_id",
    )?;
    let rows = stmt.query_map(params![upto], |r| {
        let totals = totals_from_row(r, 4)?;
        Ok(TaskState {
            task_id: r.get(0)?,
            name: r.get(1)?,
            upload_id: r.get(2)?,
            received_at: r.get(3)?,
            problems: totals.problems(),
            totals,
            regressed: r.get(8)?,
            results: r.get(9)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Like [`states_at`], for the first `limit` tasks whose id sorts after `after`
/// (the API's pages): one seek per task, stopping when the page is full.
pub fn states_page(
    conn: &Connection,
    upto: i64,
    after: &str,
    limit: u32,
) -> Result<Vec<TaskState>, StorageError> {
    let mut tasks =
        conn.prepare_cached("SELECT task_id, name FROM tasks WHERE task_id > ?1 ORDER BY task_id")?;
    let mut page = Vec::new();
    let mut rows = tasks.query(params![after])?;
    while page.len() < limit as usize {
        let Some(row) = rows.next()? else { break };
        page.extend(latest_upload(conn, row.get(0)?, row.get(1)?, upto)?);
    }
    Ok(page)
}

/// One task as its latest upload with id `<= upto` shows it (none: no upload by
/// then, or no such task).
pub fn state_of(
    conn: &Connection,
    task_id: &str,
    upto: i64,
) -> Result<Option<TaskState>, StorageError> {
    match task_name(conn, task_id)? {
        Some(name) => latest_upload(conn, task_id.to_string(), name, upto),
        None => Ok(None),
    }
}

/// A task's name: none for a task not known, `Some(None)` for one not named.
fn task_name(conn: &Connection, task_id: &str) -> Result<Option<Option<String>>, StorageError> {
    Ok(conn
        .prepare_cached("SELECT name FROM tasks WHERE task_id = ?1")?
        .query_row(params![task_id], |r| r.get(0))
        .optional()?)
}

/// The seek behind every as-of view: a task's latest upload with id `<= upto`.
fn latest_upload(
    conn: &Connection,
    task_id: String,
    name: Option<String>,
    upto: i64,
) -> Result<Option<TaskState>, StorageError> {
    let mut latest = conn.prepare_cached(
        "SELECT id, received_at, total_files, different_files, target_miss_files,
                target_more_files, regressed, result_count
         FROM uploads INDEXED BY uploads_task_state
         WHERE task_id = ?1 AND id <= ?2 ORDER BY id DESC LIMIT 1",
    )?;
    let found = latest
        .query_row(params![task_id, upto], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                totals_from_row(r, 2)?,
                r.get::<_, bool>(6)?,
                r.get::<_, i64>(7)?,
            ))
        })
        .optional()?;
    Ok(found.map(
        |(upload_id, received_at, totals, regressed, results)| TaskState {
            task_id,
            name,
            upload_id,
            received_at,
            problems: totals.problems(),
            totals,
            regressed,
            results,
        },
    ))
}

/// How many uploads a task had with id `<= upto`, and its first one's time.
pub fn upload_count_at(
    conn: &Connection,
    task_id: &str,
    upto: i64,
) -> Result<(i64, Option<Timestamp>), StorageError> {
    Ok(conn
        .prepare_cached(
            "SELECT count(*), min(received_at) FROM uploads INDEXED BY uploads_task_state
             WHERE task_id = ?1 AND id <= ?2",
        )?
        .query_row(params![task_id, upto], |r| Ok((r.get(0)?, r.get(1)?)))?)
}

/// The fleet at the end of a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetDay {
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    /// Tasks with at least one upload by the end of the day.
    pub tasks_reporting: i64,
    /// Problems summed over every task's latest upload.
    pub open_problems: i64,
    /// Tasks whose latest upload has results and no problems.
    pub tasks_clean: i64,
    /// Tasks whose latest upload has no results at all.
    pub tasks_without_results: i64,
}

/// The stored days in `first..=last` (days with uploads), and the last stored day
/// before `first` (the state the range starts from), oldest first.
pub fn fleet_days(conn: &Connection, first: i64, last: i64) -> Result<Vec<FleetDay>, StorageError> {
    let row = |r: &rusqlite::Row<'_>| {
        Ok(FleetDay {
            day: r.get(0)?,
            tasks_reporting: r.get(1)?,
            open_problems: r.get(2)?,
            tasks_clean: r.get(3)?,
            tasks_without_results: r.get(4)?,
        })
    };
    let before = conn
        .prepare_cached(
            "SELECT day, tasks_reporting, open_problems, tasks_clean, tasks_without_results FROM fleet_days
             WHERE day < ?1 ORDER BY day DESC LIMIT 1",
        )?
        .query_row(params![first], row)
        .optional()?;
    let mut stmt = conn.prepare_cached(
        "SELECT day, tasks_reporting, open_problems, tasks_clean, tasks_without_results FROM fleet_days
         WHERE day BETWEEN ?1 AND ?2 ORDER BY day",
    )?;
    let mut days: Vec<FleetDay> = before.into_iter().collect();
    for day in stmt.query_map(params![first, last], row)? {
        days.push(day?);
    }
    Ok(days)
}

/// What a task's latest upload says: its problems, and whether it had results
/// at all (without, it is "no results", never clean).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// Different + missing + extra files.
    pub problems: i64,
    /// It had at least one result item.
    pub has_results: bool,
}

impl Health {
    /// Results, and none of them a problem.
    pub fn clean(self) -> bool {
        self.has_results && self.problems == 0
    }
}

/// What one stored upload changed in the fleet: its day, and its task's health
/// before (none: the task's first upload) and after.
pub struct FleetChange {
    /// The upload's day (UTC).
    pub day: i64,
    /// Its task's latest upload before it (none: the task's first upload).
    pub before: Option<Health>,
    /// The upload itself.
    pub after: Health,
}

/// Adds a batch's changes (in id order, so days never go back) to `fleet_days`:
/// each day touched ends at the state after its last upload.
pub fn record_changes(conn: &Connection, changes: &[FleetChange]) -> Result<(), rusqlite::Error> {
    let Some(first) = changes.first() else {
        return Ok(());
    };
    let mut state = conn
        .prepare_cached(
            "SELECT day, tasks_reporting, open_problems, tasks_clean, tasks_without_results FROM fleet_days
             ORDER BY day DESC LIMIT 1",
        )?
        .query_row([], |r| {
            Ok(FleetDay {
                day: r.get(0)?,
                tasks_reporting: r.get(1)?,
                open_problems: r.get(2)?,
                tasks_clean: r.get(3)?,
                tasks_without_results: r.get(4)?,
            })
        })
        .optional()?
        .unwrap_or(FleetDay {
            day: first.day,
            tasks_reporting: 0,
            open_problems: 0,
            tasks_clean: 0,
            tasks_without_results: 0,
        });
    let mut store = conn.prepare_cached(
        "INSERT INTO fleet_days (day, tasks_reporting, open_problems, tasks_clean,
             tasks_without_results)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (day) DO UPDATE SET tasks_reporting = excluded.tasks_reporting,
            open_problems = excluded.open_problems, tasks_clean = excluded.tasks_clean,
            tasks_without_results = excluded.tasks_without_results",
    )?;
    for (i, c) in changes.iter().enumerate() {
        state.day = state.day.max(c.day);
        state.tasks_reporting += i64::from(c.before.is_none());
        state.open_problems += c.after.problems - c.before.map_or(0, |b| b.problems);
        state.tasks_clean +=
            i64::from(c.after.clean()) - i64::from(c.before.is_some_and(Health::clean));
        state.tasks_without_results +=
            i64::from(!c.after.has_results) - i64::from(c.before.is_some_and(|b| !b.has_results));
        let day_ends = changes.get(i + 1).is_none_or(|next| next.day != c.day);
        if day_ends {
            store.execute(params![
                state.day,
                state.tasks_reporting,
                state.open_problems,
                state.tasks_clean,
                state.tasks_without_results
            ])?;
        }
    }
    Ok(())
}

/// The change a stored upload makes to the fleet.
pub fn change_of(received_at: Timestamp, before: Option<Health>, after: Health) -> FleetChange {
    FleetChange {
        day: day_of(received_at),
        before,
        after,
    }
}

/// Records an upload's results as its task's latest counts per directory.
pub fn record_directories(
    conn: &Connection,
    task_id: &str,
    upload_id: i64,
    results: &[ConsistencyResult],
) -> Result<(), rusqlite::Error> {
    let mut upsert = conn.prepare_cached(
        "INSERT INTO task_directories (dir_check, task_id, upload_id, num_total_files,
            num_different_files, num_target_miss_files, num_target_more_files)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (dir_check, task_id) DO UPDATE SET upload_id = excluded.upload_id,
            num_total_files = excluded.num_total_files,
            num_different_files = excluded.num_different_files,
            num_target_miss_files = excluded.num_target_miss_files,
            num_target_more_files = excluded.num_target_more_files",
    )?;
    for r in results {
        let [t, d, m, x] = r.counts().map(|c| c.get());
        upsert.execute(params![
            r.dir_check.as_str(),
            task_id,
            upload_id,
            t,
            d,
            m,
            x
        ])?;
    }
    Ok(())
}

/// A task's latest counts for one directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryRow {
    /// The task.
    pub task_id: String,
    /// Its name, if it has one.
    pub name: Option<String>,
    /// Its latest upload reporting the directory.
    pub upload_id: i64,
    /// When that upload arrived.
    pub received_at: Timestamp,
    /// The directory's counts in it.
    pub totals: Totals,
    /// The directory's problems in it.
    pub problems: i64,
}

/// Every task's latest counts for directory `path` (exact), by task id.
pub fn directory(
    conn: &Connection,
    path: &str,
    offset: usize,
    limit: usize,
) -> Result<(usize, Vec<DirectoryRow>), StorageError> {
    let total: i64 = conn
        .prepare_cached("SELECT tasks FROM directory_tasks WHERE dir_check = ?1")?
        .query_row(params![path], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    // The page's tasks first, from the key alone; their uploads and names after.
    let mut stmt = conn.prepare_cached(
        "SELECT d.task_id, t.name, d.upload_id, u.received_at, d.num_total_files,
                d.num_different_files, d.num_target_miss_files, d.num_target_more_files
         FROM (SELECT * FROM task_directories WHERE dir_check = ?1
               ORDER BY task_id LIMIT ?2 OFFSET ?3) d
              JOIN uploads u ON u.id = d.upload_id
              LEFT JOIN tasks t ON t.task_id = d.task_id
         ORDER BY d.task_id",
    )?;
    let (limit, offset) = (
        limit.min(i64::MAX as usize) as i64,
        offset.min(i64::MAX as usize) as i64,
    );
    let rows = stmt.query_map(params![path, limit, offset], |r| {
        let totals = totals_from_row(r, 4)?;
        Ok(DirectoryRow {
            task_id: r.get(0)?,
            name: r.get(1)?,
            upload_id: r.get(2)?,
            received_at: r.get(3)?,
            problems: totals.problems(),
            totals,
        })
    })?;
    Ok((total as usize, rows.collect::<Result<_, _>>()?))
}

/// Up to `limit` directories that start with `prefix`, in order, with how many
/// tasks have reported each.
pub fn directories_starting(
    conn: &Connection,
    prefix: &str,
    limit: u32,
) -> Result<Vec<(String, i64)>, StorageError> {
    // A range of the primary key: every string that starts with `prefix` sorts
    // below `prefix` followed by the highest code point.
    let mut stmt = conn.prepare_cached(
        "SELECT dir_check, tasks FROM directory_tasks
         WHERE dir_check >= ?1 AND dir_check < ?1 || char(1114111)
           AND substr(dir_check, 1, length(?1)) = ?1
         ORDER BY dir_check LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![prefix, limit], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Fills `fleet_days` and `task_directories` from the uploads stored before they
/// existed (once, when `fleet_days` is empty and there are uploads). Returns
/// whether it did. Run by the writer at start, in its own transaction.
pub fn catch_up(conn: &Connection) -> Result<bool, rusqlite::Error> {
    let needed: bool = conn.query_row(
        "SELECT NOT EXISTS (SELECT 1 FROM fleet_days) AND EXISTS (SELECT 1 FROM uploads)",
        [],
        |r| r.get(0),
    )?;
    if needed {
        rebuild(conn)?;
    }
    Ok(needed)
}

/// Recomputes both tables from all uploads: each upload changes the fleet by
/// what its task's state was before it (none, or the previous upload's
/// problems), and a day's row is the running sum at its last upload; a task's
/// counts for a directory are those of the last item for it in the latest
/// upload that has it.
pub fn rebuild(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.execute_batch(
        "DELETE FROM fleet_days;
         INSERT INTO fleet_days (day, tasks_reporting, open_problems, tasks_clean,
             tasks_without_results)
         SELECT day, reporting, problems, clean, empty FROM (
             SELECT day,
                    sum(prev IS NULL) OVER running AS reporting,
                    sum(p - coalesce(prev, 0)) OVER running AS problems,
                    sum((p = 0 AND r > 0) - coalesce(prev = 0 AND prev_r > 0, 0)) OVER running
                        AS clean,
                    sum((r = 0) - coalesce(prev_r = 0, 0)) OVER running AS empty,
                    row_number() OVER (PARTITION BY day ORDER BY id DESC) AS from_last
             FROM (
                 SELECT id, received_at / 86400000 AS day,
                        different_files + target_miss_files + target_more_files AS p,
                        result_count AS r,
                        lag(different_files + target_miss_files + target_more_files)
                            OVER (PARTITION BY task_id ORDER BY id) AS prev,
                        lag(result_count) OVER (PARTITION BY task_id ORDER BY id) AS prev_r
                 FROM uploads
             )
             WINDOW running AS (ORDER BY id ROWS UNBOUNDED PRECEDING)
         )
         WHERE from_last = 1;

         DELETE FROM task_directories;
         INSERT INTO task_directories
         SELECT dir_check, task_id, upload_id, num_total_files, num_different_files,
                num_target_miss_files, num_target_more_files
         FROM (
             SELECT r.dir_check, u.task_id, r.upload_id, r.num_total_files,
                    r.num_different_files, r.num_target_miss_files, r.num_target_more_files,
                    row_number() OVER (PARTITION BY r.dir_check, u.task_id
                                       ORDER BY r.upload_id DESC, r.ordinal DESC) AS from_last
             FROM upload_results r JOIN uploads u ON u.id = r.upload_id
         )
         WHERE from_last = 1;",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The states of a stored snapshot ([`pack_snapshot`]).
    fn unpack_snapshot(upto: i64, stored: &[u8]) -> Result<Vec<TaskState>, StorageError> {
        decode_states(&inflate_whole(stored).ok_or_else(|| damaged_snapshot(upto))?)
            .ok_or_else(|| damaged_snapshot(upto))
    }
    use proptest::prelude::*;

    fn state(task_id: String, upload_id: i64) -> TaskState {
        TaskState {
            task_id,
            name: None,
            upload_id,
            received_at: upload_id,
            totals: Totals::default(),
            problems: 0,
            regressed: false,
            results: 1,
        }
    }

    proptest! {
        /// Galloping from the last find gives what a map keyed by task id gives,
        /// for changes near and far apart, and for tasks new to the list.
        #[test]
        fn replacing_states_is_a_merge_by_task_id(
            before in proptest::collection::btree_set(0u32..5_000, 0..600),
            changed in proptest::collection::btree_set(0u32..5_000, 0..300),
        ) {
            let id = |n: u32| format!("task-{n:05}");
            let mut states: Vec<TaskState> = before.iter().map(|&n| state(id(n), 1)).collect();
            let changes: Vec<TaskState> = changed.iter().map(|&n| state(id(n), 2)).collect();
            let mut want: std::collections::BTreeMap<String, i64> =
                before.iter().map(|&n| (id(n), 1)).collect();
            want.extend(changed.iter().map(|&n| (id(n), 2)));
            apply_changes(&mut states, &encode_states(&changes)).unwrap();
            let got: Vec<(String, i64)> =
                states.into_iter().map(|s| (s.task_id, s.upload_id)).collect();
            prop_assert_eq!(got, want.into_iter().collect::<Vec<_>>());
        }
    }

    proptest! {
        /// Finding a task by its key gives what a binary search of the states
        /// gives, for ids sharing long prefixes, ids that are prefixes of others,
        /// NUL bytes (padding's zeros), and ids absent or outside the prefix.
        #[test]
        fn finding_a_task_by_key_is_a_binary_search(
            shared in "(task-0000)?",
            ids in proptest::collection::btree_set("[a\\x00b]{0,10}", 0..60),
            asked in proptest::collection::vec("(task-0000|x)?[a\\x00b]{0,10}", 0..40),
        ) {
            // One prefix before every id keeps them sorted.
            let states: Vec<TaskState> =
                ids.iter().map(|id| state(format!("{shared}{id}"), 1)).collect();
            let keys = IdKeys::of(&states);
            for id in states.iter().map(|s| &s.task_id).chain(&asked) {
                let want = states.binary_search_by(|s| s.task_id.as_str().cmp(id)).ok();
                prop_assert_eq!(keys.find(&states, id), want, "{:?}", id);
            }
        }
    }

    /// A snapshot that deflates far below a fifth (room found short, doubled),
    /// an empty one, and damaged ones, which are refused, never misread.
    #[test]
    fn snapshots_inflate_whatever_their_ratio_and_damage_is_refused() {
        let alike: Vec<TaskState> = (0..20_000).map(|n| state(format!("t{n:06}"), 7)).collect();
        let packed = pack_snapshot(&alike, None);
        assert!(
            encode_states(&alike).len() > packed.len() * 12,
            "compresses far"
        );
        assert_eq!(unpack_snapshot(1, &packed).unwrap(), alike);
        assert_eq!(
            unpack_snapshot(1, &pack_snapshot(&[], None)).unwrap(),
            vec![]
        );
        for damaged in [&packed[..packed.len() / 2], &[0xff; 64][..], &[][..]] {
            let error = unpack_snapshot(9, damaged).unwrap_err();
            assert_eq!(
                error.to_string(),
                "a background task failed: fleet snapshot 9 is damaged"
            );
        }
    }

    fn layer(upto: i64, states: &[TaskState]) -> (i64, Inflated) {
        let packed = encode_states(states);
        let len = packed.len();
        (
            upto,
            Inflated {
                buffer: packed,
                len,
            },
        )
    }

    /// Buffers given back are kept for the next snapshots, but never more than
    /// `KEPT` of them nor `KEPT_BYTES` in all (other tests may take and give
    /// back buffers meanwhile: they keep the same bounds).
    #[test]
    fn inflate_buffers_kept_are_bounded_in_count_and_bytes() {
        let large = Inflated::KEPT_BYTES / 10;
        let given: Vec<Inflated> = (0..Inflated::KEPT + 12)
            .map(|i| Inflated {
                // Not touched, so not made resident.
                buffer: vec![0; if i % 2 == 0 { large } else { 4096 }],
                len: 0,
            })
            .collect();
        drop(given);
        let kept = INFLATE_BUFFERS.lock();
        assert!(kept.len() <= Inflated::KEPT, "buffers kept: {}", kept.len());
        let bytes: usize = kept.iter().map(Vec::len).sum();
        assert!(bytes <= Inflated::KEPT_BYTES, "bytes kept: {bytes}");
    }

    /// Merged by task id, each task as its newest source shows it (an upload
    /// since over a later layer over an earlier one); a layer cut short is an
    /// error, said once and before any state merged without it.
    #[test]
    fn stored_states_merge_newest_first_and_say_damage() {
        let id = |n: u32| format!("task-{n}");
        let whole: Vec<TaskState> = (1..=5).map(|n| state(id(n), 10)).collect();
        let changed = [state(id(2), 20), state(id(4), 20), state(id(6), 20)];
        let stored = StoredStates {
            layers: vec![layer(10, &whole), layer(20, &changed)],
            latest: vec![state(id(4), 25), state(id(7), 25)],
        };
        let got: Vec<(String, i64)> = stored
            .iter()
            .map(|s| {
                s.map(|s| (String::from_utf8(s.task_id.to_vec()).unwrap(), s.upload_id))
                    .unwrap()
            })
            .collect();
        let want = [
            (1, 10),
            (2, 20),
            (3, 10),
            (4, 25),
            (5, 10),
            (6, 20),
            (7, 25),
        ];
        assert_eq!(got, want.map(|(n, u)| (id(n), u)));

        let mut cut = layer(20, &changed);
        cut.1.len -= 1;
        let damaged = StoredStates {
            layers: vec![layer(10, &whole), cut],
            latest: vec![],
        };
        let got: Vec<_> = damaged.iter().collect();
        let ok = got.iter().take_while(|s| s.is_ok()).count();
        assert_eq!(ok, 4, "task-1 to task-4 are read whole");
        assert_eq!(got.len(), ok + 1, "one error, then nothing");
        let error = got.into_iter().nth(ok).unwrap().unwrap_err();
        assert_eq!(
            error.to_string(),
            "a background task failed: fleet snapshot 20 is damaged"
        );
    }
}
