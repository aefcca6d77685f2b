//! The network's input. Images reach the network as their preprocessed crops, S x S packed
//! (HWC) 8-bit RGB ([`crate::image::Preprocessor`]), laid end to end; the network sees each
//! value as `(x - 127) / 128` (the classic pipeline's scaling). Each backend scales the bytes
//! itself: ONNX Runtime takes planar f32 ([`planar_f32`]), the GPU's stem kernel reads the
//! bytes directly. Until then a batch is a quarter of its size as floats: less to gather
//! between threads, and less to upload to a GPU (150 KB per image at 224 px instead of 602 KB).

/// What the network sees of one 8-bit value; exact in f32.
#[inline]
pub fn scaled(value: u8) -> f32 {
    (f32::from(value) - 127.0) / 128.0
}

/// Packed RGB crops of side `side`, end to end, as the NCHW f32 tensor ONNX Runtime takes,
/// written into `out` (whose allocation is reused).
pub fn planar_f32(pixels: &[u8], side: usize, out: &mut Vec<f32>) {
    let plane = side * side;
    debug_assert_eq!(pixels.len() % (3 * plane), 0);
    out.clear();
    out.resize(pixels.len(), 0.0);
    for (image, tensor) in pixels
        .chunks_exact(3 * plane)
        .zip(out.chunks_exact_mut(3 * plane))
    {
        let (red, rest) = tensor.split_at_mut(plane);
        let (green, blue) = rest.split_at_mut(plane);
        for (i, px) in image.chunks_exact(3).enumerate() {
            red[i] = scaled(px[0]);
            green[i] = scaled(px[1]);
            blue[i] = scaled(px[2]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_covers_the_classic_range_exactly() {
        assert_eq!(scaled(0), -127.0 / 128.0);
        assert_eq!(scaled(127), 0.0);
        assert_eq!(scaled(255), 1.0);
    }

    #[test]
    fn packed_pixels_become_planes_per_image() {
        // Two 2x2 images; pixel p of image i is (10i + p, 50 + 10i + p, 100 + 10i + p).
        #[rustfmt::skip]
        let pixels = [
            0, 50, 100, 1, 51, 101, 2, 52, 102, 3, 53, 103,
            10, 60, 110, 11, 61, 111, 12, 62, 112, 13, 63, 113,
        ];
        #[rustfmt::skip]
        let planes: [u8; 24] = [
            0, 1, 2, 3, 50, 51, 52, 53, 100, 101, 102, 103,
            10, 11, 12, 13, 60, 61, 62, 63, 110, 111, 112, 113,
        ];
        let expected: Vec<f32> = planes.into_iter().map(scaled).collect();
        let mut out = vec![9.0; 3];
        planar_f32(&pixels, 2, &mut out);
        assert_eq!(out, expected);
    }
}
