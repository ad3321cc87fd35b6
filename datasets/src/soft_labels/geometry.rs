//! Crop geometry of region labels: boxes as u16 fractions, and per-image seeds from which the
//! boxes and flips are regenerated instead of stored (zero bytes of geometry per crop).

use crate::rng::{splitmix64, stream};
use crate::transforms::{CropBox, PixelBox, sample_resized_crop_box};
use rand::Rng;

/// Scale of the u16 box encoding: a fraction `f` is stored as `round(f * 65535)`.
pub const BOX_SCALE: f32 = 65535.0;

/// The random-resized-crop parameters of a label file.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CropParams {
    /// Area fraction range (FKD: 0.08 - 1).
    pub scale: [f32; 2],
    /// Aspect-ratio range (FKD: 3/4 - 4/3).
    pub ratio: [f32; 2],
    /// Probability of a horizontal flip (FKD: 0.5).
    pub flip_prob: f32,
    /// Side of the crops the teacher saw, `[height, width]`.
    pub output_size: [usize; 2],
}

/// Encodes a box as four u16 fractions (top, left, height, width).
pub fn encode_box(b: &CropBox) -> [u16; 4] {
    [b.top, b.left, b.height, b.width].map(|f| (f.clamp(0.0, 1.0) * BOX_SCALE).round() as u16)
}

/// Decodes four u16 fractions.
pub fn decode_box(raw: [u16; 4]) -> CropBox {
    let [top, left, height, width] = raw.map(|v| v as f32 / BOX_SCALE);
    CropBox { top, left, height, width }
}

/// The pixel box that a stored box denotes in an `h x w` image: sample, quantise, decode. The
/// teacher sees exactly this box, and a reader gets it back from the stored u16 values.
pub fn quantised(pixel_box: PixelBox, h: usize, w: usize) -> ([u16; 4], PixelBox) {
    let raw = encode_box(&CropBox::from_pixels(pixel_box, h, w));
    (raw, decode_box(raw).to_pixels(h, w))
}

/// The seed of image `index` in a file packed with `seed`.
pub fn image_seed(seed: u64, index: u64) -> u64 {
    splitmix64(seed ^ splitmix64(index))
}

/// The `crops` (box, flip) pairs of an image of size `h x w` drawn from `image_seed`: a
/// platform-independent ChaCha8 stream and `libm` arithmetic, so any machine regenerates them.
pub fn crops_from_seed(
    image_seed: u64,
    crops: usize,
    h: usize,
    w: usize,
    params: &CropParams,
) -> Vec<([u16; 4], bool)> {
    let mut rng = stream(image_seed, 0, 0);
    (0..crops)
        .map(|_| {
            let pixel_box = sample_resized_crop_box(&mut rng, h, w, params.scale, params.ratio);
            let flip = rng.random::<f32>() < params.flip_prob;
            (quantised(pixel_box, h, w).0, flip)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u16_boxes_round_trip_to_the_same_pixels() {
        for (h, w) in [(28, 28), (32, 32), (224, 300), (4000, 3000)] {
            let mut rng = stream(h as u64, w as u64, 0);
            for _ in 0..2000 {
                let b = sample_resized_crop_box(&mut rng, h, w, [0.08, 1.0], [0.75, 4.0 / 3.0]);
                assert_eq!(quantised(b, h, w).1, b, "{h}x{w}");
            }
        }
    }

    #[test]
    fn seeds_regenerate_the_same_crops() {
        let params = CropParams { scale: [0.08, 1.0], ratio: [0.75, 4.0 / 3.0], flip_prob: 0.5, output_size: [28, 28] };
        let a = crops_from_seed(image_seed(3, 17), 50, 28, 28, &params);
        assert_eq!(a, crops_from_seed(image_seed(3, 17), 50, 28, 28, &params));
        assert_ne!(a, crops_from_seed(image_seed(3, 18), 50, 28, 28, &params));
        let flips = a.iter().filter(|c| c.1).count();
        assert!((10..40).contains(&flips), "{flips} flips of 50");
    }

    /// Golden values: files packed with `--geometry seed` store only the seed, so the stream
    /// (splitmix64, ChaCha8 from rand_chacha, the crop sampler's libm arithmetic) must give the
    /// same crops after any dependency upgrade. Recorded from kdkit 0.1.
    #[test]
    fn seed_geometry_golden_values() {
        let params = CropParams { scale: [0.08, 1.0], ratio: [0.75, 4.0 / 3.0], flip_prob: 0.5, output_size: [28, 28] };
        let seed = image_seed(3, 17);
        assert_eq!(seed, 16_914_522_132_785_079_836);
        assert_eq!(
            crops_from_seed(seed, 4, 28, 28, &params),
            vec![
                ([7022, 9362, 49151, 56173], true),
                ([7022, 2341, 56173, 63194], false),
                ([11703, 7022, 39789, 37449], false),
                ([16384, 44470, 25746, 21065], false),
            ]
        );
        assert_eq!(
            crops_from_seed(image_seed(0, 59_999), 2, 375, 500, &params),
            vec![([9262, 20054, 53127, 36306], false), ([17826, 14024, 42641, 30670], false)]
        );
    }
}
