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
    } else if [b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"]
        .iter()
        .any(|m| b.starts_with(*m))
    {
        Some(Format::Tiff)
    } else {
        None
    }
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
    if b.len() >= 12 && &b[4..8] == b"ftyp" {
        return match &b[8..12] {
            b"avif" | b"avis" => Some("AVIF"),
            b"heic" | b"heix" | b"heim" | b"heis" | b"hevc" | b"hevx" | b"mif1" | b"msf1" => {
                Some("HEIC/HEIF")
            }
            _ => None,
        };
    }
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
        assert_eq!(
            unsupported_format(b"\0\0\0\x18ftypheic\0\0\0\0"),
            Some("HEIC/HEIF")
        );
        assert_eq!(
            unsupported_format(b"\0\0\0\x1cftypavif\0\0\0\0"),
            Some("AVIF")
        );
        assert_eq!(unsupported_format(b"\0\0\0\x18ftypisom"), None);
        assert_eq!(unsupported_format(b"plain text"), None);
    }
}
