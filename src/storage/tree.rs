//! The Merkle tree over the ledger (RFC 6962, section 2.1): leaf `i` is upload
//! `id = i + 1`, its input the 32 raw bytes of the upload's `entry_hash`. Hashes are
//! stored as Go's `sumdb/tlog` and C2SP tlog-tiles lay them out (`tlog_tiles`
//! does the arithmetic): appending a leaf stores about two hashes, and a root or
//! proof at any size reads O(log n) of them.

use rusqlite::{params, Connection, OptionalExtension};
use tlog_tiles::{Hash, HashReader};

use super::StorageError;

/// Reads stored hashes through a connection (inside the writer's transaction,
/// or a read connection).
struct Stored<'a>(&'a Connection);

impl HashReader for Stored<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        read_hashes(self.0, indexes)
            .map_err(|e| tlog_tiles::Error::InvalidInput(format!("tree hashes: {e}")))
    }
}

/// Stored hashes `indexes`, in that order (an error when one is missing). A
/// tile's hashes lie close together among the other levels' (a level-0 tile's
/// 256 within 511 stored hashes): those are read in one range, not a query each.
fn read_hashes(conn: &Connection, indexes: &[u64]) -> Result<Vec<Hash>, rusqlite::Error> {
    let as_hash = |bytes: &[u8]| {
        bytes.try_into().map(Hash).map_err(|_| {
            rusqlite::Error::InvalidColumnType(0, "hash".into(), rusqlite::types::Type::Blob)
        })
    };
    let (Some(&low), Some(&high)) = (indexes.iter().min(), indexes.iter().max()) else {
        return Ok(Vec::new());
    };
    if high - low >= 4 * indexes.len() as u64 {
        // Far apart (a proof's hashes, a tile of a higher level): one seek each.
        let mut stmt = conn.prepare_cached("SELECT hash FROM tree_hashes WHERE idx = ?1")?;
        return indexes
            .iter()
            .map(|i| stmt.query_row(params![*i as i64], |r| as_hash(r.get_ref(0)?.as_blob()?)))
            .collect();
    }
    let mut stmt = conn.prepare_cached(
        "SELECT idx, hash FROM tree_hashes WHERE idx BETWEEN ?1 AND ?2 ORDER BY idx",
    )?;
    let mut in_range = Vec::with_capacity((high - low + 1) as usize);
    let mut rows = stmt.query(params![low as i64, high as i64])?;
    while let Some(r) = rows.next()? {
        in_range.push((
            r.get::<_, i64>(0)? as u64,
            as_hash(r.get_ref(1)?.as_blob()?)?,
        ));
    }
    indexes
        .iter()
        .map(
            |i| match in_range.binary_search_by_key(i, |(idx, _)| *idx) {
                Ok(at) => Ok(in_range[at].1),
                Err(_) => Err(rusqlite::Error::QueryReturnedNoRows),
            },
        )
        .collect()
}

fn from_tlog(e: tlog_tiles::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(e))
}

/// Adds leaf `index` (0-based) with the upload's entry hash; inside the
/// transaction that stores the upload, so the tree always covers the chain.
pub fn append(conn: &Connection, index: u64, entry_hash: &[u8; 32]) -> Result<(), rusqlite::Error> {
    let hashes = tlog_tiles::stored_hashes(index, entry_hash, &Stored(conn)).map_err(from_tlog)?;
    let first = tlog_tiles::stored_hash_count(index);
    let mut insert = conn.prepare_cached("INSERT INTO tree_hashes (idx, hash) VALUES (?1, ?2)")?;
    for (i, hash) in hashes.iter().enumerate() {
        insert.execute(params![(first + i as u64) as i64, &hash.0[..]])?;
    }
    Ok(())
}

/// How many leaves the stored hashes cover.
pub fn size(conn: &Connection) -> Result<u64, rusqlite::Error> {
    let stored: Option<i64> = conn
        .query_row("SELECT max(idx) + 1 FROM tree_hashes", [], |r| r.get(0))
        .optional()?
        .flatten();
    let stored = stored.unwrap_or(0) as u64;
    // The leaf count n is the largest with stored_hash_count(n) <= stored.
    let (mut lo, mut hi) = (0u64, stored);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if tlog_tiles::stored_hash_count(mid) <= stored {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Ok(lo)
}

/// Adds the uploads the tree does not cover yet (a database from before the
/// tree), in id order. Returns how many were added. Run by the writer at start.
pub fn catch_up(conn: &Connection) -> Result<u64, rusqlite::Error> {
    let covered = size(conn)?;
    let mut stmt = conn.prepare("SELECT id, entry_hash FROM uploads WHERE id > ?1 ORDER BY id")?;
    let mut rows = stmt.query(params![covered as i64])?;
    let mut added = 0;
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        let entry_hash: String = row.get(1)?;
        let index = id as u64 - 1;
        if index != covered + added {
            return Err(from_tlog(tlog_tiles::Error::InvalidInput(format!(
                "upload ids are not contiguous at {id}"
            ))));
        }
        append(conn, index, &entry_bytes(&entry_hash)?)?;
        added += 1;
    }
    Ok(added)
}

/// The 32 bytes of a stored (hex) entry hash.
pub fn entry_bytes(entry_hash: &str) -> Result<[u8; 32], rusqlite::Error> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(entry_hash, &mut bytes).map_err(|e| {
        from_tlog(tlog_tiles::Error::InvalidInput(format!(
            "entry hash {entry_hash:?}: {e}"
        )))
    })?;
    Ok(bytes)
}

/// The root hash of the tree of the first `size` uploads.
pub fn root(conn: &Connection, size: u64) -> Result<Hash, StorageError> {
    tlog_tiles::tree_hash(size, &Stored(conn)).map_err(|e| StorageError::Sqlite(from_tlog(e)))
}

/// The RFC 6962 audit path of leaf `index` in the tree of `size` leaves.
pub fn inclusion_proof(
    conn: &Connection,
    size: u64,
    index: u64,
) -> Result<Vec<Hash>, StorageError> {
    tlog_tiles::prove_record(size, index, &Stored(conn))
        .map_err(|e| StorageError::Sqlite(from_tlog(e)))
}

/// The RFC 6962 consistency proof from the tree of `from` leaves to that of `to`.
pub fn consistency_proof(conn: &Connection, to: u64, from: u64) -> Result<Vec<Hash>, StorageError> {
    tlog_tiles::prove_tree(to, from, &Stored(conn)).map_err(|e| StorageError::Sqlite(from_tlog(e)))
}

/// The leaf hash of an upload's entry hash: SHA-256(0x00 ‖ entry hash bytes).
pub fn leaf_hash(entry_hash: &[u8; 32]) -> Hash {
    tlog_tiles::record_hash(entry_hash)
}

/// The roots of the complete subtrees that make up the tree of `size` leaves
/// (RFC 6962's split at the largest power of two, repeated), largest first, as
/// `(leaves, hash)`: folded from the right, they give the tree's root.
pub fn subtree_roots(conn: &Connection, size: u64) -> Result<Vec<(u64, Hash)>, StorageError> {
    let mut subtrees = Vec::new();
    let mut offset = 0u64;
    for level in (0..64u8).rev() {
        let leaves = 1u64 << level;
        if size & leaves != 0 {
            subtrees.push((
                leaves,
                tlog_tiles::stored_hash_index(level, offset >> level),
            ));
            offset += leaves;
        }
    }
    let indexes: Vec<u64> = subtrees.iter().map(|(_, i)| *i).collect();
    let hashes = Stored(conn)
        .read_hashes(&indexes)
        .map_err(|e| StorageError::Sqlite(from_tlog(e)))?;
    Ok(subtrees.into_iter().map(|(l, _)| l).zip(hashes).collect())
}

/// The data of C2SP tlog-tiles tile `path` (`tile/<L>/<N>[.p/<W>]`, height 8):
/// the level-`8L` hashes it holds, concatenated; `None` when the path is not a
/// tile path or the tree does not hold all of its hashes yet.
pub fn tile_data(conn: &Connection, path: &str) -> Result<Option<Vec<u8>>, StorageError> {
    const HEIGHT: u8 = 8;
    // The crate speaks Go's sumdb layout, which names the height in the path.
    let Some(rest) = path.strip_prefix("tile/") else {
        return Ok(None);
    };
    if rest.starts_with("entries/") {
        return Ok(None);
    }
    // The crate panics on a level of 64 or more or a width of 0: a tree of u64
    // leaves has hashes up to level 7 of tiles only, and a partial tile holds 1
    // to 255 of them, so anything else is no tile at all.
    let (level, _) = rest.split_once('/').unwrap_or((rest, ""));
    if !level
        .parse::<u8>()
        .is_ok_and(|l| u32::from(l) * u32::from(HEIGHT) < u64::BITS)
    {
        return Ok(None);
    }
    if let Some((_, width)) = rest.rsplit_once(".p/") {
        if !width.parse::<u8>().is_ok_and(|w| w > 0) {
            return Ok(None);
        }
    }
    let Ok(tile) = tlog_tiles::Tile::from_path(&format!("tile/{HEIGHT}/{rest}")) else {
        return Ok(None);
    };
    if tile.is_data() {
        return Ok(None);
    }
    let width = u64::from(tile.width());
    let shift = u32::from(HEIGHT) * u32::from(tile.level());
    // Hashes at this level in the tree now; the tile must lie within them.
    let at_level = size(conn)? >> shift;
    let end = tile
        .level_index()
        .checked_mul(1u64 << HEIGHT)
        .and_then(|start| start.checked_add(width));
    if end.is_none_or(|end| end > at_level) {
        return Ok(None);
    }
    Ok(Some(
        tile.read_data(&Stored(conn))
            .map_err(|e| StorageError::Sqlite(from_tlog(e)))?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty database with the service's schema, in memory.
    fn migrated() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::storage::embedded::migrations::runner()
            .run(&mut conn)
            .unwrap();
        conn
    }

    #[test]
    fn no_tile_path_panics_and_impossible_tiles_are_none() {
        let conn = migrated();
        for level in [
            "0", "7", "8", "9", "16", "63", "64", "100", "255", "256", "-1", "x",
        ] {
            for suffix in ["", ".p/0", ".p/1", ".p/255", ".p/256", ".p/x"] {
                for index in ["000", "x999/999", "x018/x446/x744/x073/x709/x551/615"] {
                    let path = format!("tile/{level}/{index}{suffix}");
                    assert_eq!(tile_data(&conn, &path).unwrap(), None, "{path}");
                }
            }
        }
    }

    #[test]
    fn hashes_read_in_a_range_are_those_read_one_by_one() {
        let conn = migrated();
        // Every stored hash its own index's bytes; 1500 and 1501 missing.
        for idx in (0..2000u64).filter(|i| !(1500..1502).contains(i)) {
            let hash = [idx.to_be_bytes(); 4].concat();
            conn.execute(
                "INSERT INTO tree_hashes VALUES (?1, ?2)",
                params![idx as i64, hash],
            )
            .unwrap();
        }
        let expect = |idx: &[u64]| -> Vec<Hash> {
            let hash = |i: u64| Hash([i.to_be_bytes(); 4].concat().try_into().unwrap());
            idx.iter().map(|&i| hash(i)).collect()
        };
        // A level-0 tile's hashes: close together, read as a range, in the order asked.
        let close: Vec<u64> = (0..256u64)
            .map(|n| tlog_tiles::stored_hash_index(0, 256 + n))
            .collect();
        let mut shuffled = close.clone();
        shuffled.reverse();
        // Far apart: a seek each.
        let far = [1, 900, 1999, 5];
        for asked in [&close[..], &shuffled[..], &far[..], &[7][..], &[]] {
            assert_eq!(read_hashes(&conn, asked).unwrap(), expect(asked));
        }
        // A missing hash is an error either way.
        assert!(read_hashes(&conn, &[1498, 1499, 1500, 1503]).is_err());
        assert!(read_hashes(&conn, &[5, 1501, 1999]).is_err());
    }
}
