//! The log's C2SP tlog-tiles, as `/tile/…` serves them. A full tile never
//! changes, so once read it is kept in memory and served again without a query
//! (a witness or a monitor polling the log reads the same tiles over and over);
//! a partial tile grows with the tree and is always read afresh.

use actix_web::web::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use crate::storage::{tree, ReadPool, StorageError};

/// The most bytes of full tiles kept (a full tile is 8 KiB: 4,096 of them).
const CACHED_BYTES: u64 = 32 * 1024 * 1024;

/// Full tiles read once, served from memory after.
pub struct TileCache {
    full: moka::sync::Cache<String, Bytes>,
    hits: Counter,
}

impl Default for TileCache {
    fn default() -> Self {
        Self {
            full: moka::sync::Cache::builder()
                .weigher(|path: &String, data: &Bytes| {
                    u32::try_from(path.len() + data.len()).unwrap_or(u32::MAX)
                })
                .max_capacity(CACHED_BYTES)
                .build(),
            hits: Counter::default(),
        }
    }
}

impl TileCache {
    /// Tile `path` (`tile/<L>/<N>[.p/<W>]`), from memory when it is a full tile
    /// read before; `None` when there is no such tile (yet).
    pub async fn tile(&self, reads: &ReadPool, path: &str) -> Result<Option<Bytes>, StorageError> {
        let full = !path.contains(".p/");
        if full {
            if let Some(data) = self.full.get(path) {
                self.hits.inc();
                return Ok(Some(data));
            }
        }
        let p = path.to_string();
        let data = reads
            .with_blocking(move |conn| tree::tile_data(conn, &p))
            .await?
            .map(Bytes::from);
        if let (true, Some(data)) = (full, &data) {
            self.full.insert(path.to_string(), data.clone());
        }
        Ok(data)
    }

    /// Tiles served from memory, for `/metrics`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "sms_audit_tile_cache_hits",
            "Full tiles served from memory, without a query",
            self.hits.clone(),
        );
    }
}
