//! A database file from elsewhere (a backup to restore) is checked before it is
//! trusted: its schema — every table, index, trigger and view, with its SQL —
//! must be exactly the one its migration version makes, so it cannot carry
//! triggers or views of its own. It is opened read-only with SQLite's defensive
//! settings, and nothing is written into it.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};

use super::{embedded, StorageError};

/// One entry of `sqlite_master`: (type, name) → (table, SQL).
type Objects = BTreeMap<(String, String), (String, Option<String>)>;

/// Opens a database that may be hostile: read-only, defensive, untrusted schema
/// (no function of the schema's choosing runs), views and triggers off.
pub fn open_untrusted(path: &Path) -> Result<Connection, StorageError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_VIEW, false)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, false)?;
    conn.pragma_update(None, "query_only", "ON")?;
    Ok(conn)
}

fn objects(conn: &Connection) -> Result<Objects, StorageError> {
    let mut stmt = conn.prepare(
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
    )?;
    let rows = stmt
        .query_map([], |r| Ok(((r.get(0)?, r.get(1)?), (r.get(2)?, r.get(3)?))))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// The schema migrations 1 to `version` make.
fn expected(version: i64) -> Result<Objects, StorageError> {
    let mut conn = Connection::open_in_memory()?;
    let target = i32::try_from(version)
        .map_err(|_| StorageError::Background(format!("schema version {version}")))?;
    embedded::migrations::runner()
        .set_target(refinery::Target::Version(target))
        .run(&mut conn)
        .map_err(|e| StorageError::Background(e.to_string()))?;
    objects(&conn)
}

/// Tables Litestream (0.3) adds to a database it replicates; plain tables, no
/// trigger or view comes with them.
const LITESTREAM_TABLES: &[&str] = &["_litestream_seq", "_litestream_lock"];

/// `None` when `conn`'s schema is exactly that of migration `version`; else the
/// first difference, named.
pub fn first_difference(conn: &Connection, version: i64) -> Result<Option<String>, StorageError> {
    let (found, wanted) = (objects(conn)?, expected(version)?);
    for ((kind, name), (table, sql)) in &found {
        // Litestream keeps its own bookkeeping tables in the databases it replicates.
        if kind == "table" && LITESTREAM_TABLES.contains(&name.as_str()) {
            continue;
        }
        match wanted.get(&(kind.clone(), name.clone())) {
            None => {
                return Ok(Some(format!(
                    "{kind} {name:?} (on {table}) is not part of schema version {version}"
                )))
            }
            Some(w) if w != &(table.clone(), sql.clone()) => {
                return Ok(Some(format!(
                    "{kind} {name:?} is not defined as schema version {version} defines it"
                )))
            }
            Some(_) => {}
        }
    }
    Ok(wanted
        .keys()
        .find(|key| !found.contains_key(*key))
        .map(|(kind, name)| format!("{kind} {name:?} of schema version {version} is missing")))
}
