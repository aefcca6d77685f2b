//! How an item's regions are stored, in the catalog and in shards alike: two blobs, the boxes
//! (8 bytes a region) apart from the vectors (1.3 KB a region), so that a search reads the box
//! of the region it matched without the vectors.
//!
//! - boxes: per region x, y, w, h as u16 fractions of 65535;
//! - vectors: a format byte, then per region the scale of its int8 values (f32) and the
//!   values. Per-vector int8 keeps cosines within ~1e-2 of f32 at a quarter of the bytes (18
//!   regions of 1280 values: 23 KB per image on disk); what is searched is projected from
//!   them, so they stay raw for a re-learned PCA.

use super::catalog::MAX_REGIONS;
use super::error::IndexError;
use super::types::{ItemId, Region, Regions};

/// The first byte of a vectors blob: its format.
const VECTORS_FORMAT: u8 = 1;

/// Bytes of one box.
const BOX_BYTES: usize = 8;

/// The two blobs of an item's regions.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EncodedRegions {
    pub boxes: Vec<u8>,
    pub vectors: Vec<u8>,
}

/// Encodes `regions`, whose vectors have `dim` values each.
pub(crate) fn encode(regions: &Regions, dim: usize) -> EncodedRegions {
    let mut boxes = Vec::with_capacity(regions.len() * BOX_BYTES);
    let mut vectors = Vec::with_capacity(1 + regions.len() * (4 + dim));
    vectors.push(VECTORS_FORMAT);
    for (region, vector) in regions.boxes.iter().zip(regions.vectors.chunks_exact(dim)) {
        for v in [region.x, region.y, region.w, region.h] {
            let fraction = (v.clamp(0.0, 1.0) * 65535.0).round() as u16;
            boxes.extend_from_slice(&fraction.to_le_bytes());
        }
        let max = vector.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        vectors.extend_from_slice(&scale.to_le_bytes());
        vectors.extend(
            vector
                .iter()
                .map(|x| (x / scale).round().clamp(-127.0, 127.0) as i8 as u8),
        );
    }
    EncodedRegions { boxes, vectors }
}

/// Decodes item `id`'s two blobs, checking that they agree.
pub(crate) fn decode(
    boxes: &[u8],
    vectors: &[u8],
    dim: usize,
    id: ItemId,
) -> Result<Regions, IndexError> {
    let mut regions = Regions::default();
    let count = decode_vectors_into(vectors, dim, id, &mut regions.vectors)?;
    if boxes.len() != count * BOX_BYTES {
        return Err(IndexError::Corrupt(format!(
            "item {id} has {} bytes of boxes for {count} regions",
            boxes.len()
        )));
    }
    regions.boxes = (0..count).filter_map(|r| region_box(boxes, r)).collect();
    Ok(regions)
}

/// Appends the vectors of item `id`'s vectors blob (`dim` values each) to `out`; returns how
/// many regions it holds.
pub(crate) fn decode_vectors_into(
    blob: &[u8],
    dim: usize,
    id: ItemId,
    out: &mut Vec<f32>,
) -> Result<usize, IndexError> {
    let stride = 4 + dim;
    let corrupt = || {
        IndexError::Corrupt(format!(
            "item {id} has a {}-byte region blob, not regions of {dim} values",
            blob.len()
        ))
    };
    let Some((&VECTORS_FORMAT, body)) = blob.split_first() else {
        return Err(corrupt());
    };
    if body.len() % stride != 0 || body.len() / stride > MAX_REGIONS {
        return Err(corrupt());
    }
    for chunk in body.chunks_exact(stride) {
        let scale = f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        out.extend(chunk[4..].iter().map(|&b| f32::from(b as i8) * scale));
    }
    Ok(body.len() / stride)
}

/// The box of region `region` in a boxes blob (None if it has no such region).
pub(crate) fn region_box(boxes: &[u8], region: usize) -> Option<Region> {
    let at = region.checked_mul(BOX_BYTES)?;
    let b = boxes.get(at..at.checked_add(BOX_BYTES)?)?;
    let u16_at = |i: usize| f32::from(u16::from_le_bytes([b[i], b[i + 1]])) / 65535.0;
    Some(Region {
        x: u16_at(0),
        y: u16_at(2),
        w: u16_at(4),
        h: u16_at(6),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::catalog::{region_key, region_of_key};

    #[test]
    fn regions_round_trip_within_int8_precision() {
        let dim = 5;
        let regions = Regions {
            boxes: vec![
                Region {
                    x: 0.0,
                    y: 0.25,
                    w: 0.5,
                    h: 0.75,
                },
                Region::WHOLE,
            ],
            vectors: vec![0.5, -0.5, 0.1, 0.0, 0.7, 0.0, 0.0, 0.0, 0.0, 0.0],
        };
        let encoded = encode(&regions, dim);
        assert_eq!(encoded.boxes.len(), 2 * BOX_BYTES);
        assert_eq!(encoded.vectors.len(), 1 + 2 * (4 + dim));
        let back = decode(&encoded.boxes, &encoded.vectors, dim, 1).unwrap();
        assert_eq!(back.len(), 2);
        for (a, b) in back.boxes.iter().zip(&regions.boxes) {
            assert!((a.x - b.x).abs() < 1e-4 && (a.h - b.h).abs() < 1e-4);
        }
        for (a, b) in back.vectors.iter().zip(&regions.vectors) {
            assert!((a - b).abs() <= 0.7 / 127.0, "{a} vs {b}");
        }
        // The all-zero vector stays zero (no division by zero).
        assert!(back.vectors[5..].iter().all(|&v| v == 0.0));
        assert_eq!(region_box(&encoded.boxes, 1), Some(back.boxes[1]));
        assert_eq!(region_box(&encoded.boxes, 2), None);
        assert_eq!(region_of_key(region_key(12345, 17)), (12345, 17));
    }

    #[test]
    fn damaged_blobs_are_corruption_not_panics() {
        let dim = 5;
        let regions = Regions {
            boxes: vec![Region::WHOLE],
            vectors: vec![1.0, 0.0, 0.0, 0.0, 0.0],
        };
        let EncodedRegions { boxes, vectors } = encode(&regions, dim);
        // Another dimension, a cut blob, an unknown format, an empty one.
        assert!(decode(&boxes, &vectors, 4, 1).is_err());
        assert!(decode(&boxes, &vectors[..vectors.len() - 1], dim, 1).is_err());
        assert!(decode(&boxes, &[9], dim, 1).is_err());
        assert!(decode(&boxes, &[], dim, 1).is_err());
        // Boxes that do not match the vectors' count.
        assert!(decode(&boxes[..4], &vectors, dim, 1).is_err());
        assert!(decode(&[boxes.clone(), boxes].concat(), &vectors, dim, 1).is_err());
        // More regions than keys can tell apart.
        let many = [vec![VECTORS_FORMAT], vec![0; (MAX_REGIONS + 1) * (4 + dim)]].concat();
        assert!(decode(&[], &many, dim, 1).is_err());
    }
}
