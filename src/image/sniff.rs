//! Format detection from magic bytes: the content decides, never the file name.

use super::Format;

/// How many leading bytes [`sniff`] may look at; reading this many is always enough.
pub const SNIFF_LEN: usize = 32;

/// The image format of `bytes` (a whole file or just its first [`SNIFF_LEN`] bytes), from its
/// magic bytes. `None` for anything else, so a text file named `.jpg` is not an image.
pub fn sniff(bytes: &[u8]) -> Option<Format> {
    let b = bytes;
    if b.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(Format::Jpeg)
    } else if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(Format::Png)
    } else if b.len() >= 12 && b.starts_with(b"RIFF") && &b[8..12] == b"WEBP" {
        Some(Format::WebP)
    } else if b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a") {
        Some(Format::Gif)
    } else if is_bmp(b) {
        Some(Format::Bmp)
    } else if is_raw(b) {
        Some(Format::Raw)
    } else if [b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"]
        .iter()
        .any(|m| b.starts_with(*m))
    {
        // Also NEF, ARW, DNG, PEF and the other plain TIFF raw formats, which only their
        // directories tell apart (see `raw::is_raw_tiff`).
        Some(Format::Tiff)
    } else {
        heif_brand(b)
    }
}

/// The raw formats with a signature of their own: Canon CR2 (TIFF marked "CR" at offset 8),
/// Olympus ORF, Panasonic RW2, Fujifilm RAF, and Canon CR3 (an ISO-BMFF "crx " brand).
fn is_raw(b: &[u8]) -> bool {
    (b.starts_with(b"II*\0") && b.get(8..10) == Some(b"CR"))
        || [b"IIRO", b"IIRS", b"MMOR", b"IIU\0"]
            .iter()
            .any(|m| b.starts_with(*m))
        || b.starts_with(b"FUJIFILMCCD-RAW")
        || ftyp_brands(b).is_some_and(|mut brands| brands.next() == Some(*b"crx "))
}

/// HEIF or AVIF from the ISO-BMFF `ftyp` box: its major brand, or for the generic `mif1` /
/// `msf1` major brands, the first compatible brand that names a codec (HEIF otherwise).
fn heif_brand(b: &[u8]) -> Option<Format> {
    let codec = |brand: &[u8; 4]| match brand {
        b"avif" | b"avis" => Some(Format::Avif),
        b"heic" | b"heix" | b"heim" | b"heis" | b"hevc" | b"hevx" => Some(Format::Heif),
        _ => None,
    };
    let mut brands = ftyp_brands(b)?;
    let major = brands.next()?;
    match &major {
        b"mif1" | b"msf1" => Some(
            brands
                .find_map(|brand| codec(&brand))
                .unwrap_or(Format::Heif),
        ),
        other => codec(other),
    }
}

/// The brands of an ISO-BMFF `ftyp` box at the start of `b`: the major brand, then the
/// compatible ones (as far as `b` and the box reach; the minor version is skipped).
fn ftyp_brands(b: &[u8]) -> Option<impl Iterator<Item = [u8; 4]> + '_> {
    if b.len() < 12 || &b[4..8] != b"ftyp" {
        return None;
    }
    let size = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let end = size.clamp(12, b.len());
    let major = [b[8], b[9], b[10], b[11]];
    let compatible = b.get(16..end).unwrap_or_default().chunks_exact(4);
    Some(std::iter::once(major).chain(compatible.map(|c| [c[0], c[1], c[2], c[3]])))
}

/// "BM" alone is too weak (plenty of text starts with it): also require one of the DIB header
/// sizes that real BMP files use, at offset 14.
fn is_bmp(b: &[u8]) -> bool {
    if b.len() < 18 || !b.starts_with(b"BM") {
        return false;
    }
    let dib_size = u32::from_le_bytes([b[14], b[15], b[16], b[17]]);
    matches!(dib_size, 12 | 16 | 40 | 52 | 56 | 64 | 108 | 124)
}

/// Names image formats that are recognisable but not decodable here, so the user hears "this
/// is a HEIC photo" rather than "not an image".
pub(super) fn unsupported_format(b: &[u8]) -> Option<&'static str> {
    if b.starts_with(&[0xFF, 0x0A]) || b.starts_with(b"\0\0\0\x0cJXL \r\n\x87\n") {
        Some("JPEG XL")
    } else if b.starts_with(b"8BPS") {
        Some("Photoshop PSD")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes() {
        assert_eq!(sniff(b"\xFF\xD8\xFF\xE0\0\x10JFIF"), Some(Format::Jpeg));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), Some(Format::Png));
        assert_eq!(sniff(b"RIFF\x10\0\0\0WEBPVP8 "), Some(Format::WebP));
        assert_eq!(sniff(b"RIFF\x10\0\0\0WAVEfmt "), None);
        assert_eq!(sniff(b"GIF89a\x01\0"), Some(Format::Gif));
        assert_eq!(sniff(b"II*\0\x08\0\0\0"), Some(Format::Tiff));
        assert_eq!(sniff(b"MM\0*\0\0\0\x08"), Some(Format::Tiff));
        let mut bmp = b"BM\0\0\0\0\0\0\0\0\x36\0\0\0".to_vec();
        bmp.extend_from_slice(&40u32.to_le_bytes());
        assert_eq!(sniff(&bmp), Some(Format::Bmp));
    }

    #[test]
    fn text_is_not_an_image() {
        assert_eq!(sniff(b"BMW owners club minutes, 2024\n"), None);
        assert_eq!(sniff(b"hello, this is text named photo.jpg"), None);
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(b"\xFF\xD8"), None);
    }

    #[test]
    fn names_unsupported_formats() {
        assert_eq!(unsupported_format(b"8BPS\0\x01"), Some("Photoshop PSD"));
        assert_eq!(
            unsupported_format(b"\0\0\0\x0cJXL \r\n\x87\n"),
            Some("JPEG XL")
        );
        assert_eq!(unsupported_format(b"plain text"), None);
    }

    #[test]
    fn heif_and_avif_by_brand() {
        assert_eq!(
            sniff(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic"),
            Some(Format::Heif)
        );
        assert_eq!(
            sniff(b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf"),
            Some(Format::Avif)
        );
        // The generic brand: the compatible brands name the codec.
        assert_eq!(
            sniff(b"\0\0\0\x18ftypmif1\0\0\0\0mif1avif"),
            Some(Format::Avif)
        );
        assert_eq!(
            sniff(b"\0\0\0\x18ftypmif1\0\0\0\0mif1heic"),
            Some(Format::Heif)
        );
        // A video's ftyp is not an image.
        assert_eq!(sniff(b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2"), None);
        assert_eq!(sniff(b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom"), None);
    }

    #[test]
    fn raw_signatures() {
        assert_eq!(sniff(b"II*\0\x10\0\0\0CR\x02\0"), Some(Format::Raw));
        assert_eq!(sniff(b"IIRO\x08\0\0\0"), Some(Format::Raw));
        assert_eq!(sniff(b"IIU\0\x08\0\0\0"), Some(Format::Raw));
        assert_eq!(sniff(b"FUJIFILMCCD-RAW 0201FF383501"), Some(Format::Raw));
        assert_eq!(
            sniff(b"\0\0\0\x18ftypcrx \0\0\0\x01crx isom"),
            Some(Format::Raw)
        );
        // A plain TIFF header stays TIFF (its directories decide later).
        assert_eq!(sniff(b"II*\0\x08\0\0\0\x10\0"), Some(Format::Tiff));
    }
}
