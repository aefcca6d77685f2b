//! What a photo's EXIF metadata says about it: when it was taken, with which camera, where.
//!
//! [`PhotoFacts::of_bytes`] runs on every indexed file, so it is cheap: a JPEG's APP1 segment
//! is found by walking the marker segments before the first scan (no pixel data is touched),
//! and only that segment (at most 64 KiB) is parsed; other containers (TIFF, PNG `eXIf`, WebP
//! `EXIF`, HEIF) go through `exif::Reader::read_from_container`.
//!
//! Metadata is written by thousands of cameras, phones and editors, many of them carelessly, so
//! every value is checked before it is kept: impossible dates ("0000:00:00 00:00:00", month 13,
//! 31 June), out-of-range or hemisphere-less GPS positions and blank strings are dropped rather
//! than stored, strings are trimmed and capped at [`MAX_CHARS`] characters, and unreadable
//! metadata (garbage, truncated, hostile counts and offsets) yields empty facts, never an error
//! or a panic.

use std::io::Cursor;

use exif::{Exif, Field, In, Rational, Tag, Value};

/// The most characters kept of a metadata string (makes and models are far shorter).
pub const MAX_CHARS: usize = 64;

/// What a photo's metadata says about it (all optional: most files say little).
#[derive(
    Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub struct PhotoFacts {
    /// When it was taken, as the camera's clock said (EXIF keeps local time without a zone):
    /// "YYYY-MM-DDTHH:MM:SS", so that text order is time order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taken: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub camera_make: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub camera_model: Option<String>,
    /// WGS 84 degrees, north and east positive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
}

impl PhotoFacts {
    /// The facts in a file's bytes (any format: JPEG APP1, TIFF, PNG eXIf, WebP EXIF chunk,
    /// HEIF — whatever `exif::Reader::read_from_container` understands, with a JPEG fast path);
    /// empty facts, never an error, when there are none or they are unreadable (logged at
    /// debug).
    ///
    /// - `taken`: the first valid of DateTimeOriginal, DateTimeDigitized and DateTime (the
    ///   file's last change, which for a camera original is also when it was taken).
    /// - `camera_make`, `camera_model`: Make and Model of the primary image.
    /// - `latitude`, `longitude`: from GPSLatitude/GPSLongitude (degrees, minutes, seconds;
    ///   fewer components are read as decimal degrees or degrees and decimal minutes) and their
    ///   refs. Kept only as a pair, and only when both refs say the hemisphere (N/S, E/W),
    ///   minutes and seconds are below 60, the values are in range, and the position is not
    ///   exactly (0, 0), which is what devices without a fix write.
    pub fn of_bytes(bytes: &[u8]) -> PhotoFacts {
        match read_exif(bytes) {
            Some(exif) => PhotoFacts::of_exif(&exif),
            None => PhotoFacts::default(),
        }
    }

    /// Whether the metadata said nothing usable.
    pub fn is_empty(&self) -> bool {
        self == &PhotoFacts::default()
    }

    /// The camera in one string, e.g. "Canon EOS 5D Mark II", "NIKON D70", "SONY ILCE-7M3",
    /// "OLYMPUS E-M1".
    ///
    /// The rule: the make loses trailing company words ("CORPORATION", "CORP.", "CO.,LTD",
    /// "COMPANY", "IMAGING", "OPTICAL", "INC", "AG", ...: "OLYMPUS IMAGING CORP." -> "OLYMPUS",
    /// "NIKON CORPORATION" -> "NIKON"); then when the model's first word is one of the make's
    /// remaining words, compared without case ("NIKON D70" from "NIKON CORPORATION", "KODAK
    /// DX6440" from "EASTMAN KODAK COMPANY", "Canon EOS 70D" from "Canon"), the model alone is
    /// the camera, otherwise make and model are joined with a space ("SONY" + "ILCE-7M3").
    /// Either alone is the camera when the other is missing. Both are trimmed of NULs and
    /// spaces; None when neither says anything.
    pub fn camera(&self) -> Option<String> {
        let make = self
            .camera_make
            .as_deref()
            .map(trim)
            .filter(|s| !s.is_empty());
        let model = self
            .camera_model
            .as_deref()
            .map(trim)
            .filter(|s| !s.is_empty());
        match (make, model) {
            (None, None) => None,
            (Some(make), None) => Some(short_make(make).to_owned()),
            (None, Some(model)) => Some(model.to_owned()),
            (Some(make), Some(model)) => {
                let make = short_make(make);
                let first = model.split(is_word_break).next().unwrap_or("");
                let repeats = make
                    .split(is_word_break)
                    .any(|word| !word.is_empty() && word.eq_ignore_ascii_case(first));
                Some(if repeats {
                    model.to_owned()
                } else {
                    format!("{make} {model}")
                })
            }
        }
    }

    /// The facts of parsed EXIF data (the primary image's IFD and its Exif and GPS IFDs).
    fn of_exif(exif: &Exif) -> PhotoFacts {
        let field = |tag| exif.get_field(tag, In::PRIMARY);
        let taken = [Tag::DateTimeOriginal, Tag::DateTimeDigitized, Tag::DateTime]
            .into_iter()
            .find_map(|tag| field(tag).and_then(text).and_then(|s| parse_date_time(&s)));
        let coordinate = |value, reference, positive, negative, max| {
            signed_coordinate(field(value)?, field(reference)?, positive, negative, max)
        };
        let latitude = coordinate(Tag::GPSLatitude, Tag::GPSLatitudeRef, 'N', 'S', 90.0);
        let longitude = coordinate(Tag::GPSLongitude, Tag::GPSLongitudeRef, 'E', 'W', 180.0);
        let (latitude, longitude) = match (latitude, longitude) {
            (Some(lat), Some(lon)) if (lat, lon) != (0.0, 0.0) => (Some(lat), Some(lon)),
            _ => (None, None),
        };
        PhotoFacts {
            taken,
            camera_make: field(Tag::Make).and_then(text),
            camera_model: field(Tag::Model).and_then(text),
            latitude,
            longitude,
        }
    }
}

/// The parsed EXIF data of a file, or None (logged) when it has none or it is unreadable.
/// Non-fatal errors (a truncated thumbnail IFD, a bad value offset) keep what was readable.
fn read_exif(bytes: &[u8]) -> Option<Exif> {
    let mut reader = exif::Reader::new();
    reader.continue_on_error(true);
    let result = if bytes.starts_with(&[0xFF, 0xD8]) {
        // JPEG: only the APP1 segment, found without reading the scans.
        reader.read_raw(super::jpeg::exif_segment(bytes)?.to_vec())
    } else {
        reader.read_from_container(&mut Cursor::new(bytes))
    };
    let result = result.or_else(|error| {
        error.distill_partial_result(|errors| {
            let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
            tracing::debug!(?errors, "reading what is readable of damaged EXIF data");
        })
    });
    match result {
        Ok(exif) => Some(exif),
        Err(exif::Error::NotFound(_)) => None,
        Err(exif::Error::InvalidFormat("Unknown image format")) => None,
        Err(error) => {
            tracing::debug!(%error, "ignoring unreadable EXIF data");
            None
        }
    }
}

/// An ASCII field's text: the first component that is not blank once trimmed of spaces and
/// control characters (inner control characters become spaces), capped at [`MAX_CHARS`]
/// characters. Bytes that are not UTF-8 (Latin-1 from old firmware) become U+FFFD.
fn text(field: &Field) -> Option<String> {
    let Value::Ascii(components) = &field.value else {
        return None;
    };
    components.iter().find_map(|bytes| {
        let bytes = &bytes[..bytes.len().min(4 * MAX_CHARS)];
        let cleaned: String = String::from_utf8_lossy(bytes)
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let capped: String = trim(&cleaned).chars().take(MAX_CHARS).collect();
        let capped = trim(&capped);
        (!capped.is_empty()).then(|| capped.to_owned())
    })
}

fn trim(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || c.is_control())
}

/// "YYYY:MM:DD HH:MM:SS" (EXIF; '-' or '/' also accepted between date parts, 'T' between date
/// and time, anything after the seconds that does not start with a digit, e.g. ".25" or
/// "+02:00", ignored) as "YYYY-MM-DDTHH:MM:SS"; None for anything that is not a real time of a
/// real day of a year from 1800 to 2999.
fn parse_date_time(s: &str) -> Option<String> {
    let b = s.as_bytes();
    if b.len() < 19 || b.get(19).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        b[range].iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let date_sep = |i: usize| matches!(b[i], b':' | b'-' | b'/');
    if !(date_sep(4) && b[7] == b[4] && matches!(b[10], b' ' | b'T') && b[13] == b':')
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    let valid = (1800..=2999).contains(&year)
        && (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour < 24
        && minute < 60
        && second < 60;
    valid.then(|| format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}"))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => 31,
    }
}

/// A GPS coordinate in signed degrees: the value's (degrees, minutes, seconds) rationals, with
/// the sign its ref gives (`negative`, e.g. 'S', makes it negative; a ref that is neither is
/// rejected); None when out of [-max, max] or malformed.
fn signed_coordinate(
    value: &Field,
    reference: &Field,
    positive: char,
    negative: char,
    max: f64,
) -> Option<f64> {
    let degrees = match &value.value {
        Value::Rational(parts) => degrees(parts)?,
        _ => return None,
    };
    let sign = match text(reference)?.chars().next()?.to_ascii_uppercase() {
        c if c == positive => 1.0,
        c if c == negative => -1.0,
        _ => return None,
    };
    (degrees <= max).then_some(sign * degrees)
}

/// Degrees from 1 to 3 rationals: degrees, minutes, seconds (minutes and seconds below 60);
/// None on a zero denominator or an empty list. Components beyond the third are ignored.
fn degrees(parts: &[Rational]) -> Option<f64> {
    if parts.is_empty() {
        return None;
    }
    let mut total = 0.0;
    for (i, part) in parts.iter().take(3).enumerate() {
        if part.denom == 0 {
            return None;
        }
        let value = f64::from(part.num) / f64::from(part.denom);
        if i > 0 && value >= 60.0 {
            return None;
        }
        total += value / [1.0, 60.0, 3600.0][i];
    }
    total.is_finite().then_some(total)
}

/// Trailing words of a make that name the company's legal form or trade, not the brand.
const COMPANY_WORDS: &[&str] = &[
    "AG",
    "CAMERA",
    "CO",
    "COMPANY",
    "CORP",
    "CORPORATION",
    "ELECTRONICS",
    "GMBH",
    "IMAGING",
    "INC",
    "LIMITED",
    "LLC",
    "LTD",
    "OPTICAL",
];

/// The make without trailing company words; the make itself when nothing else would remain.
fn short_make(make: &str) -> &str {
    let mut short = make;
    loop {
        let trimmed = short.trim_end_matches(|c: char| is_word_break(c) || c == '.');
        let Some(start) = trimmed.rfind(is_word_break).map(|i| i + 1) else {
            // One word left: the brand itself.
            return if short.len() == make.len() {
                make
            } else {
                trimmed
            };
        };
        let last = trimmed[start..].trim_end_matches('.');
        if !COMPANY_WORDS.iter().any(|w| w.eq_ignore_ascii_case(last)) {
            return trimmed;
        }
        short = &trimmed[..start];
    }
}

fn is_word_break(c: char) -> bool {
    c.is_whitespace() || c == ','
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(make: Option<&str>, model: Option<&str>) -> PhotoFacts {
        PhotoFacts {
            camera_make: make.map(str::to_owned),
            camera_model: model.map(str::to_owned),
            ..PhotoFacts::default()
        }
    }

    /// An IFD entry: tag, type, count, value bytes (big-endian).
    type Entry = (u16, u16, u32, Vec<u8>);

    fn ascii(tag: u16, text: &[u8]) -> Entry {
        (tag, 2, text.len() as u32, text.to_vec())
    }

    fn rationals(tag: u16, values: &[(u32, u32)]) -> Entry {
        let bytes = values
            .iter()
            .flat_map(|(n, d)| n.to_be_bytes().into_iter().chain(d.to_be_bytes()))
            .collect();
        (tag, 5, values.len() as u32, bytes)
    }

    /// An IFD placed at offset `at`, its out-of-line values right after it; no next IFD.
    fn ifd(entries: &[Entry], at: usize) -> Vec<u8> {
        let mut out = (entries.len() as u16).to_be_bytes().to_vec();
        let mut data = Vec::new();
        let data_at = at + 2 + 12 * entries.len() + 4;
        for (tag, typ, count, value) in entries {
            out.extend_from_slice(&tag.to_be_bytes());
            out.extend_from_slice(&typ.to_be_bytes());
            out.extend_from_slice(&count.to_be_bytes());
            if value.len() <= 4 {
                let mut inline = value.clone();
                inline.resize(4, 0);
                out.extend_from_slice(&inline);
            } else {
                out.extend_from_slice(&((data_at + data.len()) as u32).to_be_bytes());
                data.extend_from_slice(value);
            }
        }
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&data);
        out
    }

    /// A big-endian TIFF: IFD0 with `entries`, an Exif IFD with `exif` and a GPS IFD with `gps`
    /// (each only when not empty).
    fn tiff(entries: &[Entry], exif: &[Entry], gps: &[Entry]) -> Vec<u8> {
        let children: Vec<(u16, &[Entry])> = [(0x8769, exif), (0x8825, gps)]
            .into_iter()
            .filter(|(_, child)| !child.is_empty())
            .collect();
        let mut ifd0 = entries.to_vec();
        // Pointers (LONG, inline): the children follow IFD0, one after the other.
        ifd0.extend(children.iter().map(|(tag, _)| (*tag, 4, 1, vec![0; 4])));
        let mut at = 8 + ifd(&ifd0, 8).len();
        let first_pointer = entries.len();
        for (i, (_, child)) in children.iter().enumerate() {
            ifd0[first_pointer + i].3 = (at as u32).to_be_bytes().to_vec();
            at += ifd(child, at).len();
        }
        let mut out = b"MM\0\x2a\0\0\0\x08".to_vec();
        out.extend(ifd(&ifd0, 8));
        for (_, child) in children {
            let at = out.len();
            out.extend(ifd(child, at));
        }
        out
    }

    fn tiff_with_ascii(entries: &[(u16, &[u8])]) -> Vec<u8> {
        let entries: Vec<Entry> = entries
            .iter()
            .map(|(tag, text)| ascii(*tag, text))
            .collect();
        tiff(&entries, &[], &[])
    }

    /// A JPEG (SOI, APP1 Exif, SOS) around a TIFF payload.
    fn jpeg_with_exif(tiff: &[u8]) -> Vec<u8> {
        let mut jpeg = b"\xFF\xD8\xFF\xE1".to_vec();
        jpeg.extend_from_slice(&((tiff.len() + 8) as u16).to_be_bytes());
        jpeg.extend_from_slice(b"Exif\0\0");
        jpeg.extend_from_slice(tiff);
        jpeg.extend_from_slice(b"\xFF\xDA\0\x02\xFF\xD9");
        jpeg
    }

    #[test]
    fn dates_are_validated_and_reformatted() {
        assert_eq!(
            parse_date_time("2019:07:14 16:32:05").as_deref(),
            Some("2019-07-14T16:32:05")
        );
        // Lenient separators and trailing sub-seconds or zone.
        assert_eq!(
            parse_date_time("2019-07-14T16:32:05.25").as_deref(),
            Some("2019-07-14T16:32:05")
        );
        assert_eq!(
            parse_date_time("2016:02:29 00:00:00").as_deref(),
            Some("2016-02-29T00:00:00")
        );
        for junk in [
            "0000:00:00 00:00:00",
            "                   ",
            "    :  :     :  :  ",
            "",
            "2019:13:01 10:00:00",
            "2019:00:10 10:00:00",
            "2019:06:31 10:00:00",
            "2019:02:29 10:00:00", // not a leap year
            "1900:02:29 10:00:00", // nor is 1900
            "2019:07:14 24:00:00",
            "2019:07:14 23:60:00",
            "2019:07:14 23:59:60",
            "2019:07:14 16:32",
            "2019:07:14 16:32:051",
            "2019:07-14 16:32:05",
            "20x9:07:14 16:32:05",
            "1700:07:14 16:32:05",
            "9999:12:31 23:59:59",
            "２０19:07:14 16:32:05", // multi-byte digits: no slicing panic
        ] {
            assert_eq!(parse_date_time(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn degrees_minutes_seconds() {
        let r = |num, denom| Rational { num, denom };
        let paris = degrees(&[r(48, 1), r(51, 1), r(3024, 100)]).unwrap();
        assert!((paris - 48.8584).abs() < 1e-12, "{paris}");
        // Degrees and decimal minutes, and decimal degrees alone.
        assert!((degrees(&[r(48, 1), r(515_040, 10_000)]).unwrap() - 48.8584).abs() < 1e-12);
        assert_eq!(degrees(&[r(488_584, 10_000)]), Some(48.8584));
        assert_eq!(degrees(&[]), None);
        assert_eq!(degrees(&[r(48, 1), r(51, 0), r(0, 1)]), None);
        assert_eq!(degrees(&[r(48, 1), r(60, 1), r(0, 1)]), None);
        assert_eq!(degrees(&[r(48, 1), r(0, 1), r(60, 1)]), None);
        assert!(degrees(&[r(u32::MAX, 1), r(0, 1), r(0, 1)]).unwrap() > 180.0);
    }

    #[test]
    fn camera_joins_make_and_model_without_repeating() {
        let cases = [
            (
                Some("Canon"),
                Some("Canon EOS 5D Mark II"),
                "Canon EOS 5D Mark II",
            ),
            (Some("NIKON CORPORATION"), Some("NIKON D70"), "NIKON D70"),
            (
                Some("EASTMAN KODAK COMPANY"),
                Some("KODAK DX6440 ZOOM"),
                "KODAK DX6440 ZOOM",
            ),
            (Some("SONY"), Some("ILCE-7M3"), "SONY ILCE-7M3"),
            (Some("OLYMPUS IMAGING CORP."), Some("E-M1"), "OLYMPUS E-M1"),
            (
                Some("OLYMPUS OPTICAL CO.,LTD"),
                Some("X-2,C-50Z"),
                "OLYMPUS X-2,C-50Z",
            ),
            (
                Some("RICOH IMAGING COMPANY, LTD."),
                Some("PENTAX K-3 II"),
                "RICOH PENTAX K-3 II",
            ),
            (
                Some("KONICA MINOLTA"),
                Some("DiMAGE Z5"),
                "KONICA MINOLTA DiMAGE Z5",
            ),
            (
                Some("samsung"),
                Some("SAMSUNG SM-G930F"),
                "SAMSUNG SM-G930F",
            ),
            (Some("Apple"), Some("iPhone 12 Pro"), "Apple iPhone 12 Pro"),
            (Some("NIKON CORPORATION"), None, "NIKON"),
            (Some("Corporation"), None, "Corporation"),
            (None, Some("  N9\0\0"), "N9"),
            (Some("Nokia\0 "), Some("N9 "), "Nokia N9"),
        ];
        for (make, model, camera) in cases {
            assert_eq!(
                facts(make, model).camera().as_deref(),
                Some(camera),
                "{make:?} {model:?}"
            );
        }
        assert_eq!(facts(None, None).camera(), None);
        assert_eq!(facts(Some(" \0"), Some("")).camera(), None);
    }

    #[test]
    fn strings_are_trimmed_capped_and_blank_ones_dropped() {
        let long = [b'A'; 300];
        let tiff = tiff_with_ascii(&[
            (0x010F, b"  Canon \0\0\0\0"),
            (0x0110, &long),
            (0x0132, b"2019:07:14 16:32:05\0"),
        ]);
        let facts = PhotoFacts::of_bytes(&jpeg_with_exif(&tiff));
        assert_eq!(facts.camera_make.as_deref(), Some("Canon"));
        assert_eq!(
            facts.camera_model.as_deref(),
            Some(&"A".repeat(MAX_CHARS)[..])
        );
        assert_eq!(facts.taken.as_deref(), Some("2019-07-14T16:32:05"));

        let tiff = tiff_with_ascii(&[(0x010F, b"  \0"), (0x0110, b"\t\x01 \0")]);
        assert!(PhotoFacts::of_bytes(&jpeg_with_exif(&tiff)).is_empty());
        // The same TIFF as a TIFF file goes through the container reader.
        let tiff = tiff_with_ascii(&[(0x010F, b"SONY\0")]);
        assert_eq!(
            PhotoFacts::of_bytes(&tiff).camera().as_deref(),
            Some("SONY")
        );
    }

    #[test]
    fn no_exif_garbage_and_truncation_give_empty_facts() {
        let tiff = tiff_with_ascii(&[(0x010F, b"Canon\0"), (0x0110, b"Canon EOS 70D\0")]);
        let whole = jpeg_with_exif(&tiff);
        assert_eq!(
            PhotoFacts::of_bytes(&whole).camera().as_deref(),
            Some("Canon EOS 70D")
        );
        // Every cut of the file, and of the TIFF alone, must read without panicking; cuts
        // inside the APP1 segment lose it entirely (its length runs past the end), cuts after
        // it lose nothing (the scans are never read).
        for cut in 0..whole.len() {
            let facts = PhotoFacts::of_bytes(&whole[..cut]);
            if cut < 4 + 2 + 6 + tiff.len() {
                assert!(facts.is_empty(), "cut at {cut}: {facts:?}");
            } else {
                assert_eq!(facts.camera_make.as_deref(), Some("Canon"), "cut at {cut}");
            }
        }
        for cut in 0..tiff.len() {
            PhotoFacts::of_bytes(&tiff[..cut]);
        }
        // A JPEG without EXIF, garbage, nothing.
        assert!(PhotoFacts::of_bytes(b"\xFF\xD8\xFF\xE0\x00\x04ab\xFF\xDA\x00\x02").is_empty());
        assert!(PhotoFacts::of_bytes(b"").is_empty());
        assert!(PhotoFacts::of_bytes(b"not an image at all").is_empty());
        assert!(PhotoFacts::of_bytes(&[0xFF; 10_000]).is_empty());
        assert!(PhotoFacts::of_bytes(b"\x89PNG\r\n\x1a\n\xFF\xFF\xFF\xFFeXIf").is_empty());
        assert!(PhotoFacts::of_bytes(b"RIFF\xFF\xFF\xFF\xFFWEBPEXIF\xFF\xFF\xFF\xFF").is_empty());
        // A huge entry count and value count with an offset past the end.
        let mut hostile =
            b"MM\0\x2a\0\0\0\x08\xFF\xFF\x01\x0F\0\x02\xFF\xFF\xFF\xFF\0\0\0\x08".to_vec();
        hostile.extend_from_slice(&[0; 8]);
        assert!(PhotoFacts::of_bytes(&jpeg_with_exif(&hostile)).is_empty());
        assert!(PhotoFacts::of_bytes(&hostile).is_empty());
    }

    #[test]
    fn random_corruption_never_panics() {
        let tiff = tiff_with_ascii(&[
            (0x010F, b"Canon\0"),
            (0x0110, b"Canon EOS 70D\0"),
            (0x0132, b"2019:07:14 16:32:05\0"),
        ]);
        let jpeg = jpeg_with_exif(&tiff);
        // A fixed xorshift stream: the same mutations on every run.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..5_000 {
            for original in [&jpeg, &tiff] {
                let mut bytes = original.clone();
                for _ in 0..1 + next() % 4 {
                    let i = (next() % bytes.len() as u64) as usize;
                    bytes[i] = next() as u8;
                }
                let facts = PhotoFacts::of_bytes(&bytes);
                assert!(facts.camera().map_or(0, |c| c.chars().count()) <= 2 * MAX_CHARS + 1);
            }
        }
    }

    /// The position of a file whose GPS IFD holds `entries`.
    fn position(entries: &[Entry]) -> (Option<f64>, Option<f64>) {
        let facts = PhotoFacts::of_bytes(&jpeg_with_exif(&tiff(&[], &[], entries)));
        (facts.latitude, facts.longitude)
    }

    #[test]
    fn gps_needs_both_coordinates_their_hemispheres_and_sane_values() {
        let lat = |dms: &[(u32, u32)]| rationals(0x0002, dms);
        let lon = |dms: &[(u32, u32)]| rationals(0x0004, dms);
        let paris_lat = lat(&[(48, 1), (51, 1), (3024, 100)]);
        let paris_lon = lon(&[(2, 1), (17, 1), (402, 10)]);
        let (n, s, e, w) = (
            ascii(0x0001, b"N\0"),
            ascii(0x0001, b"S\0"),
            ascii(0x0003, b"E\0"),
            ascii(0x0003, b"W\0"),
        );
        let all = [n.clone(), paris_lat.clone(), e.clone(), paris_lon.clone()];
        let (la, lo) = position(&all);
        assert!((la.unwrap() - 48.8584).abs() < 1e-12 && (lo.unwrap() - 2.2945).abs() < 1e-12);
        let (la, lo) = position(&[s, paris_lat.clone(), w, paris_lon.clone()]);
        assert!((la.unwrap() + 48.8584).abs() < 1e-12 && (lo.unwrap() + 2.2945).abs() < 1e-12);
        // Lower-case refs are read; GPS tags in IFD0 (the wrong IFD) are not GPS tags.
        let lower = [
            ascii(1, b"n\0"),
            paris_lat.clone(),
            ascii(3, b"e\0"),
            paris_lon.clone(),
        ];
        assert!(position(&lower).0.is_some());
        let facts = PhotoFacts::of_bytes(&jpeg_with_exif(&tiff(&all, &[], &[])));
        assert_eq!((facts.latitude, facts.longitude), (None, None));

        let none = (None, None);
        // A missing or unknown ref, a missing coordinate.
        assert_eq!(
            position(&[paris_lat.clone(), e.clone(), paris_lon.clone()]),
            none
        );
        assert_eq!(
            position(&[n.clone(), paris_lat.clone(), paris_lon.clone()]),
            none
        );
        let unknown = ascii(0x0001, b"X\0");
        assert_eq!(
            position(&[unknown, paris_lat.clone(), e.clone(), paris_lon.clone()]),
            none
        );
        assert_eq!(position(&[n.clone(), paris_lat.clone(), e.clone()]), none);
        // (0, 0) even with refs: what devices without a fix write.
        let zero = [(0, 1), (0, 1), (0, 1)];
        assert_eq!(
            position(&[n.clone(), lat(&zero), e.clone(), lon(&zero)]),
            none
        );
        // Out of range, minutes of 60, a zero denominator, the wrong type.
        let lat_91 = lat(&[(91, 1), (0, 1), (0, 1)]);
        assert_eq!(
            position(&[n.clone(), lat_91, e.clone(), paris_lon.clone()]),
            none
        );
        let lon_181 = lon(&[(180, 1), (0, 1), (1, 1)]);
        assert_eq!(
            position(&[n.clone(), paris_lat.clone(), e.clone(), lon_181]),
            none
        );
        let bad_minutes = lat(&[(48, 1), (60, 1), (0, 1)]);
        assert_eq!(
            position(&[n.clone(), bad_minutes, e.clone(), paris_lon.clone()]),
            none
        );
        let zero_denominator = lat(&[(48, 0), (51, 1), (0, 1)]);
        assert_eq!(
            position(&[n.clone(), zero_denominator, e.clone(), paris_lon.clone()]),
            none
        );
        let text = ascii(0x0002, b"48.8584\0");
        assert_eq!(position(&[n, text, e, paris_lon]), none);
    }

    #[test]
    fn dates_come_in_priority_order_skipping_invalid_ones() {
        let taken = |ifd0: &[Entry], exif: &[Entry]| {
            PhotoFacts::of_bytes(&jpeg_with_exif(&tiff(ifd0, exif, &[]))).taken
        };
        let date_time = [ascii(0x0132, b"2018:06:30 10:11:12\0")];
        let original = ascii(0x9003, b"2019:07:14 16:32:05\0");
        let digitized = ascii(0x9004, b"2019:07:15 08:00:00\0");
        let junk = ascii(0x9003, b"0000:00:00 00:00:00\0");
        let cases = [
            (
                &date_time[..],
                vec![original.clone(), digitized.clone()],
                Some("2019-07-14T16:32:05"),
            ),
            (
                &date_time,
                vec![digitized.clone()],
                Some("2019-07-15T08:00:00"),
            ),
            (
                &date_time,
                vec![junk.clone(), digitized],
                Some("2019-07-15T08:00:00"),
            ),
            (&date_time, vec![junk.clone()], Some("2018-06-30T10:11:12")),
            (&[], vec![junk], None),
            // DateTimeOriginal is an Exif IFD tag: in IFD0 it is some other, unknown tag.
            (&[original], vec![], None),
        ];
        for (ifd0, exif, expected) in cases {
            assert_eq!(taken(ifd0, &exif).as_deref(), expected, "{ifd0:?} {exif:?}");
        }
    }

    #[test]
    fn serializes_only_what_is_known() {
        let facts = PhotoFacts {
            taken: Some("2019-07-14T16:32:05".into()),
            latitude: Some(48.8584),
            longitude: Some(2.2945),
            ..PhotoFacts::default()
        };
        let json = serde_json::to_string(&facts).unwrap();
        assert_eq!(
            json,
            r#"{"taken":"2019-07-14T16:32:05","latitude":48.8584,"longitude":2.2945}"#
        );
        assert_eq!(serde_json::from_str::<PhotoFacts>(&json).unwrap(), facts);
        assert_eq!(serde_json::to_string(&PhotoFacts::default()).unwrap(), "{}");
        assert!(serde_json::from_str::<PhotoFacts>("{}").unwrap().is_empty());
    }
}
