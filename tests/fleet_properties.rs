//! Fleet history against a naive model: random histories (tasks, upload times
//! across hours and days, counts, directories) stored through the real writer,
//! then every as-of view, every verdict between two moments, every trend point
//! and every directory's rows recomputed from the list of uploads.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use sms_audit::domain::fleet::{day_of, Verdict, DAY_MS};
use sms_audit::domain::Timestamp;
use sms_audit::services::fleet::{self, ChangeFilter, ChangeSort};
use sms_audit::storage::tasks::TaskSort;
use sms_audit::storage::uploads::NewUpload;
use sms_audit::storage::{self, writer};

/// 2026-03-01T00:00:00Z: the histories start on a day boundary.
const START: Timestamp = 1_772_323_200_000;
const DIRS: [&str; 3] = ["/a", "/b", "/c"];

#[derive(Debug, Clone)]
struct Upload {
    task: usize,
    /// Time since the upload before.
    gap: i64,
    /// (directory, total, different, missing, extra) per item.
    items: Vec<(usize, u32, u32, u32, u32)>,
}

fn upload() -> impl Strategy<Value = Upload> {
    let gap = prop_oneof![
        Just(0i64),
        0i64..2_000,
        0i64..4 * 3_600_000,
        0i64..3 * DAY_MS,
    ];
    let item = (0..DIRS.len(), 0u32..20, 0u32..3, 0u32..3, 0u32..2);
    (0usize..5, gap, prop::collection::vec(item, 0..4)).prop_map(|(task, gap, items)| Upload {
        task,
        gap,
        items,
    })
}

/// One stored upload as the model sees it.
struct Stored {
    id: i64,
    task: String,
    at: Timestamp,
    totals: [i64; 4],
    problems: i64,
    regressed: bool,
    items: Vec<(usize, [i64; 4])>,
}

fn store(db: &std::path::Path, history: &[Upload]) -> Vec<Stored> {
    let times: VecDeque<Timestamp> = history
        .iter()
        .scan(START, |t, u| {
            *t += u.gap;
            Some(*t)
        })
        .collect();
    let times = Arc::new(Mutex::new(times));
    let clock_times = times.clone();
    let clock: writer::Clock = Arc::new(move || {
        clock_times
            .lock()
            .unwrap()
            .pop_front()
            .expect("one time per upload")
    });
    let config = writer::WriterConfig {
        settings: unsynced(),
        clock,
        ..Default::default()
    };
    let (handle, thread) = writer::spawn(db, config).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut stored: Vec<Stored> = Vec::new();
    for (n, u) in history.iter().enumerate() {
        let items: Vec<String> = u
            .items
            .iter()
            .map(|(d, t, x, m, o)| {
                format!(
                    r#"{{"dir_check":"{}","num_total_files":{t},"num_different_files":{x},"num_target_miss_files":{m},"num_target_more_files":{o}}}"#,
                    DIRS[*d]
                )
            })
            .collect();
        let body = format!(r#"{{"consistency_result":[{}]}}"#, items.join(","));
        let task = format!("task-{}", u.task);
        let receipt = runtime
            .block_on(handle.submit(NewUpload::for_test_body(n, &task, body)))
            .unwrap();
        let mut totals = [0i64; 4];
        let items: Vec<(usize, [i64; 4])> = u
            .items
            .iter()
            .map(|(d, t, x, m, o)| (*d, [*t, *x, *m, *o].map(i64::from)))
            .collect();
        for (_, counts) in &items {
            for (sum, c) in totals.iter_mut().zip(counts) {
                *sum += c;
            }
        }
        let problems = totals[1] + totals[2] + totals[3];
        let previous = stored.iter().rev().find(|s| s.task == task);
        stored.push(Stored {
            id: receipt.id,
            regressed: previous.is_some_and(|p| problems > p.problems),
            task,
            at: receipt.received_at,
            totals,
            problems,
            items,
        });
    }
    handle.shutdown();
    thread.join();
    stored
}

/// Each task's latest upload received at or before `at`, by task id.
fn naive_as_of(stored: &[Stored], at: Timestamp) -> BTreeMap<&str, &Stored> {
    let mut latest = BTreeMap::new();
    for s in stored.iter().filter(|s| s.at <= at) {
        latest.insert(s.task.as_str(), s);
    }
    latest
}

/// The moments worth asking about: before everything, at and just before each
/// upload, at day boundaries, and after everything.
fn moments(stored: &[Stored]) -> Vec<Timestamp> {
    let mut at = vec![START - 1];
    for s in stored {
        at.extend([s.at - 1, s.at, (day_of(s.at) + 1) * DAY_MS - 1]);
    }
    at.push(stored.last().map_or(START, |s| s.at) + DAY_MS);
    at.sort_unstable();
    at.dedup();
    at
}

fn check(history: &[Upload]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fleet.db");
    let stored = store(&db, history);
    // A named task: pages of changes read names where the fleets add them.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "UPDATE tasks SET name = 'Named' WHERE task_id = 'task-1'",
            [],
        )
        .unwrap();
    let conn = storage::open_read(&db).unwrap();
    let moments = moments(&stored);
    check_views(&conn, &stored, &moments)?;
    // Without snapshots, uploads are applied to the empty fleet; a seek per
    // task (the way far from any snapshot) must agree.
    for upto in 0..=stored.len() as i64 {
        prop_assert_eq!(
            storage::fleet::states_by_seeks(&conn, upto).unwrap(),
            storage::fleet::states_at(&conn, upto).unwrap(),
            "as of upload {}",
            upto
        );
    }
    // And again from snapshots, each made from the one before as the service makes
    // them (every 4 uploads here, every third one whole and the others the changes
    // since the one before), the states in between applied to them.
    {
        let write = rusqlite::Connection::open(&db).unwrap();
        for upto in (4..=stored.len() as i64).step_by(4) {
            let states = storage::fleet::states_at(&conn, upto).unwrap();
            let since = (upto % 12 != 4).then_some(upto - 4);
            let packed = storage::fleet::pack_snapshot(&states, since);
            storage::fleet::insert_snapshot(&write, upto, since, &packed).unwrap();
        }
    }
    check_views(&conn, &stored, &moments)?;
    check_trend_and_directories(&conn, &stored, &moments)?;
    check_catch_up(&db, &conn)
}

fn check_views(
    conn: &rusqlite::Connection,
    stored: &[Stored],
    moments: &[Timestamp],
) -> Result<(), TestCaseError> {
    for &at in moments {
        let got = fleet::tasks_as_of(conn, at).unwrap();
        let want = naive_as_of(stored, at);
        prop_assert_eq!(got.len(), want.len(), "as of {}", at);
        for (g, (task, w)) in got.iter().zip(&want) {
            prop_assert_eq!(&g.task_id, task);
            prop_assert_eq!(g.upload_id, w.id);
            prop_assert_eq!(g.received_at, w.at);
            prop_assert_eq!(g.problems, w.problems);
            prop_assert_eq!(g.regressed, w.regressed);
            prop_assert_eq!(g.totals.num_total_files, w.totals[0]);
        }
    }

    for (i, &from) in moments.iter().enumerate() {
        for &to in moments[i..].iter().step_by(3) {
            let changes = fleet::changes(conn, from, to).unwrap();
            let (before, after) = (naive_as_of(stored, from), naive_as_of(stored, to));
            let by_task = changes
                .select(ChangeFilter::All, ChangeSort::Task)
                .all(conn)
                .unwrap();
            prop_assert_eq!(by_task.len(), after.len());
            // By change: the largest increase first, ties by task id.
            let mut by_change: Vec<_> = by_task
                .iter()
                .map(|c| (c.problems_change, &c.task_id))
                .collect();
            by_change.sort_by_key(|(change, _)| std::cmp::Reverse(*change));
            let selected = changes.select(ChangeFilter::All, ChangeSort::Change);
            let all = selected.all(conn).unwrap();
            // Pages read each state by its upload id; all rows, from the fleets.
            for (offset, limit) in [(0, all.len()), (1, 2), (all.len() / 2, 3)] {
                let page = selected.page(conn, offset, limit).unwrap();
                prop_assert_eq!(
                    page,
                    all.iter()
                        .skip(offset)
                        .take(limit)
                        .cloned()
                        .collect::<Vec<_>>()
                );
            }
            let got: Vec<_> = all
                .into_iter()
                .map(|c| (c.problems_change, c.task_id))
                .collect();
            prop_assert_eq!(
                got.iter().map(|(c, t)| (*c, t)).collect::<Vec<_>>(),
                by_change
            );
            let mut counts = BTreeMap::new();
            for (c, (task, w)) in by_task.iter().zip(&after) {
                let was = before.get(task).map(|s| s.problems);
                // An upload without results is "no results"; one before counts as none.
                let was_with_results = before
                    .get(task)
                    .filter(|s| !s.items.is_empty())
                    .map(|s| s.problems);
                let verdict = match was_with_results {
                    _ if w.items.is_empty() => Verdict::NoResults,
                    None => Verdict::New,
                    Some(b) if w.problems < b => Verdict::Improved,
                    Some(b) if w.problems > b => Verdict::Regressed,
                    Some(_) => Verdict::Unchanged,
                };
                prop_assert_eq!(&c.task_id, task);
                prop_assert_eq!(c.verdict, verdict, "{} from {} to {}", task, from, to);
                prop_assert_eq!(c.clean, w.problems == 0 && !w.items.is_empty());
                prop_assert_eq!(c.problems_change, w.problems - was.unwrap_or(0));
                prop_assert_eq!(
                    c.from.as_ref().map(|s| s.upload_id),
                    before.get(task).map(|s| s.id)
                );
                *counts.entry(verdict).or_insert(0) += 1;
            }
            for &v in <Verdict as strum::VariantArray>::VARIANTS {
                prop_assert_eq!(changes.counts.of(v), counts.get(&v).copied().unwrap_or(0));
                let kept = changes.select(ChangeFilter::Verdict(v), ChangeSort::Change);
                prop_assert_eq!(kept.len(), changes.counts.of(v));
                prop_assert!(kept.all(conn).unwrap().iter().all(|c| c.verdict == v));
            }
            prop_assert_eq!(
                changes.counts.clean,
                after
                    .values()
                    .filter(|s| s.problems == 0 && !s.items.is_empty())
                    .count()
            );
        }
    }

    Ok(())
}

fn check_trend_and_directories(
    conn: &rusqlite::Connection,
    stored: &[Stored],
    moments: &[Timestamp],
) -> Result<(), TestCaseError> {
    let last = moments.last().copied().unwrap();
    let points = fleet::trend(conn, START - DAY_MS, last).unwrap();
    for (n, point) in points.iter().enumerate() {
        let day = day_of(START - DAY_MS) + n as i64;
        let state = naive_as_of(stored, (day + 1) * DAY_MS - 1);
        prop_assert_eq!(&point.date, &fleet::date_of(day));
        prop_assert_eq!(point.tasks_reporting, state.len() as i64, "{}", point.date);
        prop_assert_eq!(
            point.open_problems,
            state.values().map(|s| s.problems).sum::<i64>(),
            "{}",
            point.date
        );
        prop_assert_eq!(
            point.tasks_clean,
            state
                .values()
                .filter(|s| s.problems == 0 && !s.items.is_empty())
                .count() as i64,
            "{}",
            point.date
        );
        prop_assert_eq!(
            point.tasks_without_results,
            state.values().filter(|s| s.items.is_empty()).count() as i64,
            "{}",
            point.date
        );
    }

    // Every directory reported, with how many tasks have reported it.
    let listed = storage::fleet::directories_starting(conn, "", 100).unwrap();
    let mut want_listed: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for s in stored {
        for (item_dir, _) in &s.items {
            want_listed
                .entry(DIRS[*item_dir])
                .or_default()
                .insert(&s.task);
        }
    }
    let want_listed: Vec<(String, i64)> = want_listed
        .into_iter()
        .map(|(path, tasks)| (path.to_string(), tasks.len() as i64))
        .collect();
    prop_assert_eq!(listed, want_listed);

    for (d, path) in DIRS.iter().enumerate() {
        let (total, got) = storage::fleet::directory(conn, path, 0, usize::MAX).unwrap();
        prop_assert_eq!(total, got.len());
        // A page is the same rows, from where it starts.
        let (_, page) = storage::fleet::directory(conn, path, 1, 2).unwrap();
        prop_assert_eq!(
            &page[..],
            got.get(1..).map_or(&[][..], |r| &r[..r.len().min(2)])
        );
        // Each task's last item for the directory in its latest upload that has it.
        let mut want: BTreeMap<&str, (i64, [i64; 4])> = BTreeMap::new();
        for s in stored {
            for (item_dir, counts) in &s.items {
                if *item_dir == d {
                    want.insert(&s.task, (s.id, *counts));
                }
            }
        }
        prop_assert_eq!(got.len(), want.len(), "{}", path);
        for (g, (task, (id, counts))) in got.iter().zip(&want) {
            prop_assert_eq!(&g.task_id, task);
            prop_assert_eq!(g.upload_id, *id);
            prop_assert_eq!(g.totals.num_total_files, counts[0]);
            prop_assert_eq!(g.problems, counts[1] + counts[2] + counts[3]);
        }
    }

    Ok(())
}

/// The catch-up for databases from before fleet history computes the same.
fn check_catch_up(db: &std::path::Path, conn: &rusqlite::Connection) -> Result<(), TestCaseError> {
    let read_tables = |conn: &rusqlite::Connection| {
        let days: Vec<(i64, i64, i64, i64, i64)> = conn
            .prepare("SELECT * FROM fleet_days ORDER BY day")
            .unwrap()
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let dirs: Vec<(String, String, i64, i64, i64)> = conn
            .prepare("SELECT dir_check, task_id, upload_id, num_total_files, num_target_more_files FROM task_directories ORDER BY 1, 2")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let counts: Vec<(String, i64)> = conn
            .prepare("SELECT dir_check, tasks FROM directory_tasks ORDER BY 1")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        (days, dirs, counts)
    };
    let kept = read_tables(conn);
    let write = rusqlite::Connection::open(db).unwrap();
    storage::fleet::rebuild(&write).unwrap();
    prop_assert_eq!(read_tables(&write), kept);
    Ok(())
}

proptest! {
    // Each case stores its history through a writer of its own.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("FLEET_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200)
    ))]

    #[test]
    fn fleet_history_matches_a_naive_recomputation(
        history in prop::collection::vec(upload(), 1..30)
    ) {
        check(&history)?;
    }
}

/// The service's snapshots: one every N uploads, each from the one before,
/// stored through the writer; states read from them equal those by seeks.
#[test]
fn snapshots_are_made_every_n_uploads_and_read_back_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fleet.db");
    let history: Vec<Upload> = (0..10)
        .map(|i| Upload {
            task: i % 4,
            gap: 3_600_000,
            items: vec![(i % 3, 10, (i % 2) as u32, 0, 1)],
        })
        .collect();
    store(&db, &history);
    assert_eq!(snapshot_every(&db, 3), (3, 0), "three due, then none");
    let conn = storage::open_read(&db).unwrap();
    assert_eq!(storage::fleet::last_snapshot(&conn).unwrap(), 9);
    for upto in 1..=10 {
        assert_eq!(
            storage::fleet::states_at(&conn, upto).unwrap(),
            storage::fleet::states_by_seeks(&conn, upto).unwrap(),
            "as of upload {upto}"
        );
    }
}

/// Makes the snapshots due every `every` uploads, twice: how many each time.
fn snapshot_every(db: &std::path::Path, every: i64) -> (usize, usize) {
    let config = writer::WriterConfig {
        settings: unsynced(),
        ..Default::default()
    };
    let (handle, thread) = writer::spawn(db, config).unwrap();
    let reads = storage::ReadPool::new(db);
    let first = fleet::make_due_snapshots(&reads, &handle, every).unwrap();
    let again = fleet::make_due_snapshots(&reads, &handle, every).unwrap();
    handle.shutdown();
    thread.join();
    (first, again)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A new moment's dashboard counts the fleet where each state lies and reads
    /// its newest tasks back from the moment's upload: the same figures and the
    /// same tasks, in the same order, as the whole fleet made and sorted, with
    /// snapshots of changes between whole ones, a named task and times that tie.
    #[test]
    fn figures_and_newest_tasks_match_the_whole_fleet(
        history in prop::collection::vec(upload(), 1..30),
        every in 1i64..6,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("fleet.db");
        store(&db, &history);
        snapshot_every(&db, every);
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute("UPDATE tasks SET name = 'Named' WHERE task_id = 'task-1'", [])
            .unwrap();
        let conn = storage::open_read(&db).unwrap();
        for upto in 0..=history.len() as i64 {
            let states = storage::fleet::states_at(&conn, upto).unwrap();
            let (point, health) = fleet::TrendPoint::of_states(&states, 0);
            let figures = storage::fleet::figures_at(&conn, upto).unwrap().expect("near enough");
            prop_assert_eq!(fleet::TrendPoint::of_figures(&figures, 0), point);
            prop_assert_eq!(figures.health, health);
            let whole = fleet::FleetAt::new(states);
            for count in [1, 2, 3, 40] {
                let want: Vec<_> =
                    whole.in_order(TaskSort::LastUpload, true).take(count).cloned().collect();
                let got = storage::fleet::newest_at(&conn, upto, count).unwrap();
                prop_assert_eq!(got, Some(want), "as of upload {}, {} newest", upto, count);
            }
        }
    }
}

/// Histories made in a test need no fsync.
fn unsynced() -> writer::WriterSettings {
    writer::WriterSettings {
        sync: storage::SyncMode::Normal,
        ..writer::WriterSettings::DEFAULT
    }
}
