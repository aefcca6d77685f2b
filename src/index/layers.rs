//! The ANN states of one index: its items and, when it keeps them, its regions. Both derive
//! from the same catalog through the same watermark and whitening, so everything done to one
//! (open, catch up, save, switch whitening) is done to both here, in one place.

use std::path::Path;
use std::sync::Arc;

use rusqlite::Connection;

use super::ann::{self, Ann, Changes, HnswParams, Layer, OpenReport, Role};
use super::catalog::{StoredWhitening, Watermark};
use super::error::IndexError;
use super::types::IndexConfig;

pub(crate) struct Layers {
    pub items: Ann,
    pub regions: Option<Ann>,
}

/// The region layer an index of `config` keeps, if any.
fn region_layer(config: &IndexConfig) -> Option<Layer> {
    config
        .descriptor
        .regions
        .map(|r| Layer::Regions { dims: r.dims })
}

impl Layers {
    /// [`Ann::open`] for each layer; the report is the items' (regions replay alongside).
    pub fn open(
        dir: &Path,
        conn: &mut Connection,
        config: &IndexConfig,
        whitening: Option<Arc<StoredWhitening>>,
        params: HnswParams,
        role: Role,
    ) -> Result<(Layers, OpenReport), IndexError> {
        let open = |conn: &mut Connection, layer| {
            Ann::open(
                dir,
                conn,
                layer,
                config.dim,
                whitening.clone(),
                params,
                role,
            )
        };
        let (items, mut report) = open(conn, Layer::Items)?;
        let regions = match region_layer(config) {
            Some(layer) => {
                let (regions, theirs) = open(conn, layer)?;
                report.rejected += theirs.rejected;
                Some(regions)
            }
            None => None,
        };
        Ok((Layers { items, regions }, report))
    }

    /// [`Ann::build`] for each layer.
    pub fn build(
        conn: &mut Connection,
        config: &IndexConfig,
        whitening: Arc<StoredWhitening>,
        params: HnswParams,
    ) -> Result<Layers, IndexError> {
        let items = Ann::build(conn, Layer::Items, config.dim, whitening.clone(), params)?;
        let regions = region_layer(config)
            .map(|layer| Ann::build(conn, layer, config.dim, whitening, params))
            .transpose()?;
        Ok(Layers { items, regions })
    }

    /// [`Ann::with_whitening`] for each layer.
    pub fn with_whitening(self, whitening: Arc<StoredWhitening>) -> Layers {
        Layers {
            items: self.items.with_whitening(whitening.clone()),
            regions: self.regions.map(|r| r.with_whitening(whitening)),
        }
    }

    /// [`Ann::catch_up`] for each layer; the changes counted are the items'.
    pub fn catch_up(&mut self, conn: &mut Connection) -> Result<Changes, IndexError> {
        let changes = self.items.catch_up(conn)?;
        if let Some(regions) = self.regions.as_mut() {
            regions.catch_up(conn)?;
        }
        Ok(changes)
    }

    /// [`Ann::save`] for each layer.
    pub fn save(&mut self, dir: &Path) -> Result<(), IndexError> {
        self.items.save(dir)?;
        if let Some(regions) = self.regions.as_mut() {
            regions.save(dir)?;
        }
        Ok(())
    }

    /// The watermark every layer's snapshot file covers, when each matches its state.
    pub fn saved(&self) -> Option<Watermark> {
        let items = self.items.saved()?;
        let Some(regions) = &self.regions else {
            return Some(items);
        };
        let regions = regions.saved()?;
        Some(Watermark {
            items: items.items.min(regions.items),
            tombstones: items.tombstones.min(regions.tombstones),
        })
    }

    /// How many catalog changes (items added, removals) the items' snapshot file misses.
    pub fn unsaved(&self) -> u64 {
        self.items.unsaved()
    }

    /// Whether a reader should reopen (see [`Ann::wants_reopen`]) for either layer.
    pub fn wants_reopen(&self, dir: &Path) -> Result<bool, IndexError> {
        Ok(self.items.wants_reopen(dir)?
            || match &self.regions {
                Some(regions) => regions.wants_reopen(dir)?,
                None => false,
            })
    }

    /// Deletes every layer's snapshots of any other whitening than `keep`.
    pub fn remove_other_versions(&self, dir: &Path, keep: Option<i64>) -> Result<(), IndexError> {
        ann::remove_other_versions(dir, Layer::Items, keep)?;
        if let Some(regions) = &self.regions {
            ann::remove_other_versions(dir, regions.layer(), keep)?;
        }
        Ok(())
    }

    /// The size of every layer's snapshot files.
    pub fn snapshot_bytes(&self, dir: &Path) -> Result<u64, IndexError> {
        let mut total = ann::snapshot_bytes(dir, Layer::Items)?;
        if let Some(regions) = &self.regions {
            total += ann::snapshot_bytes(dir, regions.layer())?;
        }
        Ok(total)
    }
}
