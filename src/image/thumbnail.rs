//! Small JPEG previews for the web UI.

use fast_image_resize as fir;
use image::RgbImage;

use super::ImageError;

/// Encodes `image` as a JPEG of at most `max_side` pixels on its longer side (aspect ratio
/// kept; never enlarged) at `quality` (1-100, clamped). Catmull-Rom resampling, as for the
/// model input, and 4:2:0 chroma, as every browser decodes fastest.
pub fn thumbnail_jpeg(image: &RgbImage, max_side: u32, quality: u8) -> Result<Vec<u8>, ImageError> {
    let (width, height) = image.dimensions();
    if width == 0 || height == 0 || max_side == 0 {
        return Err(ImageError::Resize(format!(
            "cannot make a {max_side}-pixel thumbnail of a {width}x{height} image"
        )));
    }
    let (thumb_width, thumb_height) = fit(width, height, max_side);
    let resized;
    let pixels = if (thumb_width, thumb_height) == (width, height) {
        image
    } else {
        let mut thumb = RgbImage::new(thumb_width, thumb_height);
        let options = fir::ResizeOptions::new()
            .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::CatmullRom));
        fir::Resizer::new()
            .resize(image, &mut thumb, &options)
            .map_err(|e| ImageError::Resize(e.to_string()))?;
        resized = thumb;
        &resized
    };
    let encode_error = |e: turbojpeg::Error| ImageError::Encode(e.to_string());
    let mut compressor = turbojpeg::Compressor::new().map_err(encode_error)?;
    compressor
        .set_quality(i32::from(quality.clamp(1, 100)))
        .map_err(encode_error)?;
    compressor
        .set_subsamp(turbojpeg::Subsamp::Sub2x2)
        .map_err(encode_error)?;
    let view = turbojpeg::Image {
        pixels: pixels.as_raw().as_slice(),
        width: thumb_width as usize,
        pitch: thumb_width as usize * 3,
        height: thumb_height as usize,
        format: turbojpeg::PixelFormat::RGB,
    };
    compressor.compress_to_vec(view).map_err(encode_error)
}

/// The size within `max_side` x `max_side` with the same aspect ratio, never enlarged and never
/// below one pixel.
fn fit(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let longer = width.max(height);
    if longer <= max_side {
        return (width, height);
    }
    let scale = |side: u32| {
        ((u64::from(side) * u64::from(max_side) + u64::from(longer) / 2) / u64::from(longer)).max(1)
            as u32
    };
    (scale(width), scale(height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_keeps_aspect_and_never_enlarges() {
        assert_eq!(fit(5120, 2880, 320), (320, 180));
        assert_eq!(fit(2880, 5120, 320), (180, 320));
        assert_eq!(fit(100, 50, 320), (100, 50));
        assert_eq!(fit(10000, 1, 100), (100, 1));
    }

    #[test]
    fn thumbnail_is_a_decodable_jpeg_of_the_right_size() {
        let image = RgbImage::from_fn(400, 300, |x, y| image::Rgb([x as u8, y as u8, 128]));
        let jpeg = thumbnail_jpeg(&image, 100, 80).unwrap();
        let header = turbojpeg::read_header(&jpeg).unwrap();
        assert_eq!((header.width, header.height), (100, 75));
        assert!(matches!(
            thumbnail_jpeg(&image, 0, 80),
            Err(ImageError::Resize(_))
        ));
    }
}
