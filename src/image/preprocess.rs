//! Decoded pixels to the model's input, matching the classic Python pipeline
//! (`classic_pipeline.py` `preprocess`: Pillow BICUBIC resize of the shorter side to
//! round(S*256/224), centre crop S x S) so features from both agree. The crop stays 8-bit RGB
//! until the network: each backend scales it to floats itself (see `model::input`), so batches
//! on their way to the network, and uploads to a GPU, are a quarter of the size of floats.

use fast_image_resize as fir;
use fir::PixelType::U8x3;
use image::RgbImage;

use super::ImageError;
use crate::index::Region;

/// Turns an RGB image into the model's input of side `size`: the centre crop, 8-bit RGB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preprocessor {
    size: u32,
}

/// Where the centre crop sits in the resized image, and how big that image is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    resized_width: u32,
    resized_height: u32,
    left: u32,
    top: u32,
}

impl Preprocessor {
    /// `size` is the model's input side S (224 for EfficientNet-Lite0, 260 for Lite2).
    ///
    /// # Panics
    /// If `size` is 0 (a programming error: it comes from the model, not from users).
    pub fn new(size: u32) -> Self {
        assert!(size > 0, "model input size must be positive");
        Preprocessor { size }
    }

    /// The model's input side S.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// The shorter side images are resized to before the centre crop, round(S * 256 / 224)
    /// (256 for S = 224); pass it as `min_side` when decoding so JPEGs are shrunk no further.
    pub fn short_side(&self) -> u32 {
        // Python's round() rounds ties to even; so must we to pick the same size.
        (f64::from(self.size) * 256.0 / 224.0).round_ties_even() as u32
    }

    /// The part of a `width` x `height` image that the centre crop keeps, as fractions of its
    /// width and height: what the network sees of it.
    pub fn crop_region(&self, width: u32, height: u32) -> Region {
        let g = self.geometry(width.max(1), height.max(1));
        let (rw, rh) = (g.resized_width as f32, g.resized_height as f32);
        Region {
            x: g.left as f32 / rw,
            y: g.top as f32 / rh,
            w: self.size as f32 / rw,
            h: self.size as f32 / rh,
        }
    }

    /// Bytes in one input: 3 * S * S.
    pub fn tensor_len(&self) -> usize {
        3 * self.size as usize * self.size as usize
    }

    /// Writes `image` into `out` (length [`Self::tensor_len`]) as packed (HWC) 8-bit RGB:
    /// bicubic (Catmull-Rom, Pillow's BICUBIC) resize so the shorter side is
    /// [`Self::short_side`], then the centre S x S crop. Only the crop is computed: resizing
    /// with a source crop box gives the same pixels as Pillow's resize-then-crop, because the
    /// filter weights depend only on the output position and scale, and both clip the filter
    /// at the image's (not the box's) edges.
    ///
    /// # Panics
    /// If `out` has the wrong length (a programming error).
    pub fn preprocess(&self, image: &RgbImage, out: &mut [u8]) -> Result<(), ImageError> {
        assert_eq!(
            out.len(),
            self.tensor_len(),
            "tensor buffer has the wrong length"
        );
        let (width, height) = image.dimensions();
        if width == 0 || height == 0 {
            return Err(ImageError::Resize("the image has no pixels".into()));
        }
        self.resize_and_crop(image, self.geometry(width, height), out)
    }

    /// Bicubic resize to the geometry's size, computing only the S x S crop. Done as two
    /// explicit passes, horizontal then vertical, because that is Pillow's order: with 8-bit
    /// rounding and clipping between the passes the order matters at hard edges (up to ~25
    /// levels on synthetic graphics), and `fast_image_resize` on its own runs the vertical
    /// pass first. The crop is written into `out`.
    fn resize_and_crop(
        &self,
        image: &RgbImage,
        g: Geometry,
        out: &mut [u8],
    ) -> Result<(), ImageError> {
        let (width, height) = image.dimensions();
        let scale_x = f64::from(width) / f64::from(g.resized_width);
        let scale_y = f64::from(height) / f64::from(g.resized_height);
        let size = f64::from(self.size);
        let left = f64::from(g.left) * scale_x;
        let top = f64::from(g.top) * scale_y;
        // Clamped so float rounding can never push the box past the image edge.
        let crop_width = (size * scale_x).min(f64::from(width) - left);
        let crop_height = (size * scale_y).min(f64::from(height) - top);
        // Source rows the vertical pass reads: the crop plus the filter's reach (Catmull-Rom
        // support 2, widened by the downscale factor), plus one for rounding.
        let reach = 2.0 * scale_y.max(1.0) + 1.0;
        let first_row = (top - reach).floor().max(0.0) as u32;
        let end_row = ((top + crop_height + reach).ceil() as u32).min(height);
        let rows = end_row - first_row;

        let bicubic = fir::ResizeOptions::new()
            .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::CatmullRom));
        let mut resizer = fir::Resizer::new();
        let resize_error = |e: fir::ResizeError| ImageError::Resize(e.to_string());
        // Horizontal only: same number of rows, whole-pixel top.
        let mut narrow = RgbImage::new(self.size, rows);
        let horizontal = bicubic.crop(left, f64::from(first_row), crop_width, f64::from(rows));
        resizer
            .resize(image, &mut narrow, &horizontal)
            .map_err(resize_error)?;
        // Vertical only: same width, whole-pixel left.
        let mut crop = fir::images::Image::from_slice_u8(self.size, self.size, out, U8x3)
            .map_err(|e| ImageError::Resize(e.to_string()))?;
        let vertical = bicubic.crop(0.0, top - f64::from(first_row), size, crop_height);
        resizer
            .resize(&narrow, &mut crop, &vertical)
            .map_err(resize_error)
    }

    /// The classic pipeline's arithmetic, in the same float64 steps and the same rounding
    /// (ties to even) as Python, so both crop exactly the same window.
    fn geometry(&self, width: u32, height: u32) -> Geometry {
        let short = self.short_side();
        let scale = f64::from(short) / f64::from(width.min(height));
        let resized = |side: u32| short.max((f64::from(side) * scale).round_ties_even() as u32);
        let (resized_width, resized_height) = (resized(width), resized(height));
        Geometry {
            resized_width,
            resized_height,
            left: (resized_width - self.size) / 2,
            top: (resized_height - self.size) / 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn short_side_rounds_like_python() {
        assert_eq!(Preprocessor::new(224).short_side(), 256);
        assert_eq!(Preprocessor::new(260).short_side(), 297); // 297.14
        assert_eq!(Preprocessor::new(240).short_side(), 274); // 274.29
                                                              // 7 * 256 / 224 = 8 exactly; 21 * 256 / 224 = 24 exactly.
        assert_eq!(Preprocessor::new(7).short_side(), 8);
        assert_eq!(Preprocessor::new(21).short_side(), 24);
    }

    #[test]
    fn crop_region_is_the_centre_square_of_the_shorter_side() {
        let p = Preprocessor::new(224);
        // 640x427 -> 384x256, crop 224 at (80, 16).
        let r = p.crop_region(640, 427);
        assert!((r.x - 80.0 / 384.0).abs() < 1e-6 && (r.w - 224.0 / 384.0).abs() < 1e-6);
        assert!((r.y - 16.0 / 256.0).abs() < 1e-6 && (r.h - 224.0 / 256.0).abs() < 1e-6);
    }

    #[test]
    fn geometry_matches_classic_pipeline() {
        let p = Preprocessor::new(224);
        // 640x427 (china.jpg): s = 256/427; round(640*s) = round(383.7) = 384.
        let g = p.geometry(640, 427);
        assert_eq!((g.resized_width, g.resized_height), (384, 256));
        assert_eq!((g.left, g.top), (80, 16));
        // Portrait 720x1440: 256 x 512, crop at (16, 144).
        let g = p.geometry(720, 1440);
        assert_eq!(
            (g.resized_width, g.resized_height, g.left, g.top),
            (256, 512, 16, 144)
        );
        // A tiny 1x1 image is scaled up to 256x256.
        let g = p.geometry(1, 1);
        assert_eq!(
            (g.resized_width, g.resized_height, g.left, g.top),
            (256, 256, 16, 16)
        );
        // Extreme aspect ratio: 10000x10 -> 256000x256.
        let g = p.geometry(10000, 10);
        assert_eq!((g.resized_width, g.resized_height), (256000, 256));
    }

    #[test]
    fn constant_colour_stays_exact() {
        let p = Preprocessor::new(32);
        let image = RgbImage::from_pixel(50, 40, Rgb([255, 127, 0]));
        let mut out = vec![7; p.tensor_len()];
        p.preprocess(&image, &mut out).unwrap();
        assert!(out.chunks_exact(3).all(|px| px == [255, 127, 0]));
    }

    /// The red values of crop row `row` (packed RGB, side `side`).
    fn red_row(out: &[u8], side: usize, row: usize) -> Vec<u8> {
        out[row * side * 3..(row + 1) * side * 3]
            .chunks_exact(3)
            .map(|px| px[0])
            .collect()
    }

    #[test]
    fn left_right_split_lands_in_the_crop_columns() {
        // 512x256, left half black, right half white, S = 224: the short side is already
        // 256, so there is no resize (512x256) and the crop starts at x = 144. Crop columns
        // 0..112 (x 144..256) are black and 112..224 (x 256..368) white, exactly.
        let p = Preprocessor::new(224);
        let image = RgbImage::from_fn(512, 256, |x, _| {
            if x < 256 {
                Rgb([0, 0, 0])
            } else {
                Rgb([255, 255, 255])
            }
        });
        let mut out = vec![7; p.tensor_len()];
        p.preprocess(&image, &mut out).unwrap();
        for row in [0usize, 100, 223] {
            let pixels = &out[row * 224 * 3..(row + 1) * 224 * 3];
            assert!(pixels[..112 * 3].iter().all(|&v| v == 0));
            assert!(pixels[112 * 3..].iter().all(|&v| v == 255));
        }
    }

    #[test]
    fn downscaled_split_keeps_its_edge_in_the_middle() {
        // 1024x512 split at x = 512, S = 224: resized to 512x256 (exactly half), crop at
        // x = 144, so the edge falls between crop columns 111 and 112; bicubic blurs only a
        // few columns around it.
        let p = Preprocessor::new(224);
        let image = RgbImage::from_fn(1024, 512, |x, _| {
            if x < 512 {
                Rgb([0, 0, 0])
            } else {
                Rgb([255, 255, 255])
            }
        });
        let mut out = vec![7; p.tensor_len()];
        p.preprocess(&image, &mut out).unwrap();
        let row = red_row(&out, 224, 50);
        assert!(row[..108].iter().all(|&v| v == 0));
        assert!(row[116..].iter().all(|&v| v == 255));
        assert!(row[111] < 128 && row[112] > 127);
    }

    #[test]
    fn empty_image_is_an_error_not_a_panic() {
        let p = Preprocessor::new(8);
        let mut out = vec![0; p.tensor_len()];
        assert!(matches!(
            p.preprocess(&RgbImage::new(0, 5), &mut out),
            Err(ImageError::Resize(_))
        ));
    }
}
