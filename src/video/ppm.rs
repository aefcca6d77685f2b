//! Reading the binary PPM (`P6`) pictures ffmpeg writes to its pipe (`-f image2pipe -c:v ppm`).
//!
//! PPM rather than headerless `rawvideo`: each picture carries its own size, so there is no
//! separate probe to agree with, and a mid-stream resolution change or an auto-rotated video
//! cannot desynchronise the stream. Writing it costs ffmpeg a copy, nothing more.

use std::io::{BufRead, ErrorKind};

use image::RgbImage;

use super::VideoError;

/// Reads the next picture; `None` at a clean end of stream. `max_pixels` bounds the
/// allocation whatever the header says.
pub(crate) fn read_frame(
    input: &mut impl BufRead,
    max_pixels: u64,
) -> Result<Option<RgbImage>, VideoError> {
    if input.fill_buf()?.is_empty() {
        return Ok(None);
    }
    let magic = token(input)?;
    if magic != "P6" {
        return Err(VideoError::Protocol(format!(
            "expected a P6 picture, got {magic:?}"
        )));
    }
    let width = number(input)?;
    let height = number(input)?;
    let max_value = number(input)?;
    if max_value != 255 {
        return Err(VideoError::Protocol(format!(
            "expected 8-bit pictures, got maximum value {max_value}"
        )));
    }
    if width == 0 || height == 0 || u64::from(width) * u64::from(height) > max_pixels {
        return Err(VideoError::TooLarge {
            width,
            height,
            limit: max_pixels,
        });
    }
    let mut pixels = vec![0u8; width as usize * height as usize * 3];
    input.read_exact(&mut pixels).map_err(|e| match e.kind() {
        ErrorKind::UnexpectedEof => VideoError::Protocol("picture cut short".into()),
        _ => VideoError::Io(e),
    })?;
    RgbImage::from_raw(width, height, pixels)
        .map(Some)
        .ok_or_else(|| VideoError::Protocol("picture size mismatch".into()))
}

/// A header token: skips whitespace and `#` comments, then reads up to and including the one
/// whitespace byte that ends it (the last one, before the pixels, must be consumed exactly).
fn token(input: &mut impl BufRead) -> Result<String, VideoError> {
    let mut out = String::new();
    let mut byte = [0u8; 1];
    loop {
        if input.read(&mut byte)? == 0 {
            return Err(VideoError::Protocol("picture header cut short".into()));
        }
        match byte[0] {
            b'#' if out.is_empty() => {
                let mut comment = Vec::new();
                input.read_until(b'\n', &mut comment)?;
            }
            c if c.is_ascii_whitespace() => {
                if !out.is_empty() {
                    return Ok(out);
                }
            }
            c if out.len() < 16 => out.push(char::from(c)),
            _ => return Err(VideoError::Protocol("picture header token too long".into())),
        }
    }
}

fn number(input: &mut impl BufRead) -> Result<u32, VideoError> {
    let t = token(input)?;
    t.parse()
        .map_err(|_| VideoError::Protocol(format!("bad number {t:?} in a picture header")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_consecutive_pictures_then_ends() {
        let mut stream = b"P6\n2 1\n255\n".to_vec();
        stream.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
        stream.extend_from_slice(b"P6 1 1 # a comment\n255\n");
        stream.extend_from_slice(&[10, 32, 9]); // pixel bytes that look like whitespace
        let mut input = std::io::Cursor::new(stream);
        let a = read_frame(&mut input, 100).unwrap().unwrap();
        assert_eq!(a.dimensions(), (2, 1));
        assert_eq!(a.as_raw(), &[1, 2, 3, 4, 5, 6]);
        let b = read_frame(&mut input, 100).unwrap().unwrap();
        assert_eq!(b.as_raw(), &[10, 32, 9]);
        assert!(read_frame(&mut input, 100).unwrap().is_none());
    }

    #[test]
    fn oversized_or_truncated_pictures_are_errors() {
        let mut huge = std::io::Cursor::new(b"P6\n100000 100000\n255\n".to_vec());
        assert!(matches!(
            read_frame(&mut huge, 1_000_000),
            Err(VideoError::TooLarge { .. })
        ));
        let mut cut = std::io::Cursor::new(b"P6\n2 2\n255\n\x01\x02".to_vec());
        assert!(matches!(
            read_frame(&mut cut, 100),
            Err(VideoError::Protocol(_))
        ));
        let mut other = std::io::Cursor::new(b"P5\n2 2\n255\n".to_vec());
        assert!(matches!(
            read_frame(&mut other, 100),
            Err(VideoError::Protocol(_))
        ));
    }
}
