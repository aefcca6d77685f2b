//! A fast path for progressive JPEGs decoded at 1/8 scale.
//!
//! At 1/8 scale libjpeg reduces every 8x8 block to one pixel computed from its DC coefficient
//! alone (except for 4:2:0 chroma, see `Header::dc_only_at_one_eighth`, where this path is
//! not taken), yet it still entropy-decodes every AC scan of a progressive file, which is most of
//! the data: a 5120x2880 progressive photo takes ~10x longer than a baseline one. Dropping
//! the AC scans from the stream gives libjpeg the same DC values, hence the same pixels, at a
//! fraction of the cost.
//!
//! One catch: when a progressive file has no AC data at all, libjpeg's block smoothing
//! *interpolates the DC values* from their neighbours (`decompress_smooth_data`, `change_dc`),
//! which would blur the result. libjpeg only smooths when the DC and first nine AC quantizers
//! are non-zero, so the rewritten stream sets the first AC quantizer (zigzag position 1) of
//! every table to 0. That quantizer only ever multiplies AC coefficients, which are all zero
//! here and unused by the 1x1 inverse DCT, so it changes nothing else. The integration tests
//! check the output is bit-identical to a full decode on real progressive photos.

/// The stream with only its DC scans (spectral start 0) and smoothing disabled, or `None`
/// when the stream does not parse cleanly (the caller then decodes the original bytes).
pub(super) fn dc_scans_only(jpeg: &[u8]) -> Option<Vec<u8>> {
    if !jpeg.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut out = Vec::with_capacity(jpeg.len() / 4);
    out.extend_from_slice(&jpeg[..2]);
    let mut pos = 2;
    loop {
        // Markers may be preceded by 0xFF fill bytes.
        while *jpeg.get(pos)? == 0xFF && *jpeg.get(pos + 1)? == 0xFF {
            pos += 1;
        }
        if *jpeg.get(pos)? != 0xFF {
            return None;
        }
        let marker = *jpeg.get(pos + 1)?;
        match marker {
            0xD9 => {
                out.extend_from_slice(&[0xFF, 0xD9]);
                return Some(out);
            }
            0x01 | 0xD0..=0xD7 => {
                pos += 2;
                continue;
            }
            _ => {}
        }
        let length = usize::from(u16::from_be_bytes([
            *jpeg.get(pos + 2)?,
            *jpeg.get(pos + 3)?,
        ]));
        let end = (pos + 2).checked_add(length)?;
        let segment = jpeg.get(pos..end)?;
        match marker {
            0xDB => out.extend_from_slice(&without_smoothing(segment)?),
            0xDA => {
                let data_end = entropy_data_end(jpeg, end);
                // The spectral start is the third-last byte of the SOS header.
                let spectral_start = *segment.get(segment.len().checked_sub(3)?)?;
                if spectral_start == 0 {
                    out.extend_from_slice(&jpeg[pos..data_end]);
                }
                pos = data_end;
                continue;
            }
            _ => out.extend_from_slice(segment),
        }
        pos = end;
    }
}

/// A DQT segment with the zigzag-position-1 quantizer of each table set to 0 (see the module
/// documentation for why).
fn without_smoothing(segment: &[u8]) -> Option<Vec<u8>> {
    let mut dqt = segment.to_vec();
    let mut pos = 4; // marker and length
    while pos < dqt.len() {
        let wide = dqt[pos] >> 4 != 0; // 16-bit entries
        let entry = if wide { 2 } else { 1 };
        let first_ac = pos + 1 + entry;
        dqt.get_mut(first_ac..first_ac + entry)?.fill(0);
        pos += 1 + 64 * entry;
    }
    (pos == dqt.len()).then_some(dqt)
}

/// Where a scan's entropy-coded data ends: at the first marker that is neither a stuffed
/// 0xFF00 nor a restart marker (or at the end of the data).
fn entropy_data_end(jpeg: &[u8], mut pos: usize) -> usize {
    while pos + 1 < jpeg.len() {
        if jpeg[pos] == 0xFF && !matches!(jpeg[pos + 1], 0x00 | 0xD0..=0xD7 | 0xFF) {
            return pos;
        }
        pos += 1;
    }
    jpeg.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_dc_scans_drops_ac_scans_and_zeroes_first_ac_quantizer() {
        let mut jpeg = b"\xFF\xD8".to_vec();
        // DQT, one 8-bit table with all quantizers 1.
        jpeg.extend_from_slice(b"\xFF\xDB\x00\x43\x00");
        jpeg.extend_from_slice(&[1; 64]);
        // DC scan (Ss = 0), data with a stuffed byte and a restart marker.
        jpeg.extend_from_slice(b"\xFF\xDA\x00\x08\x01\x01\x00\x00\x00\x00dc\xFF\x00\xFF\xD0dc");
        // AC scan (Ss = 1).
        jpeg.extend_from_slice(b"\xFF\xDA\x00\x08\x01\x01\x00\x01\x3F\x00ac-data");
        jpeg.extend_from_slice(b"\xFF\xD9");
        let out = dc_scans_only(&jpeg).unwrap();
        let mut expected = b"\xFF\xD8\xFF\xDB\x00\x43\x00\x01\x00".to_vec();
        expected.extend_from_slice(&[1; 62]);
        expected.extend_from_slice(b"\xFF\xDA\x00\x08\x01\x01\x00\x00\x00\x00dc\xFF\x00\xFF\xD0dc");
        expected.extend_from_slice(b"\xFF\xD9");
        assert_eq!(out, expected);
    }

    #[test]
    fn malformed_streams_give_none_not_a_panic() {
        assert_eq!(dc_scans_only(b""), None);
        assert_eq!(dc_scans_only(b"\xFF\xD8\xFF\xDB\x00\x05\x00"), None);
        assert_eq!(dc_scans_only(b"\xFF\xD8\xFF\xDB\xFF\xFF"), None);
        assert_eq!(dc_scans_only(b"\xFF\xD8\xFF\xDA\x00\x02"), None);
        assert_eq!(dc_scans_only(b"\xFF\xD8junk"), None);
    }
}
