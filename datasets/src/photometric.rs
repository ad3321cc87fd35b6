//! MoCo v2's photometric augmentations (Chen et al., "Improved Baselines with Momentum
//! Contrastive Learning", 2020, §2; torchvision's definitions): colour jitter (brightness,
//! contrast, saturation, hue factors drawn uniformly, applied in a random order), random
//! grayscale and Gaussian blur with a random sigma. On one-channel images only brightness and
//! contrast apply: saturation and hue have no meaning, and grayscale is the identity.
//! Pixels are interleaved u8 (`y, x, channel`).

use crate::image::Image;
use rand::Rng;
use rand::seq::SliceRandom;

/// Colour jitter strengths (torchvision's `ColorJitter(b, c, s, h)`) and the probability of
/// applying it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColourJitter {
    /// Brightness factor in `[1 - b, 1 + b]`.
    pub brightness: f32,
    /// Contrast factor in `[1 - c, 1 + c]`.
    pub contrast: f32,
    /// Saturation factor in `[1 - s, 1 + s]`.
    pub saturation: f32,
    /// Hue shift in `[-h, h]` turns (h <= 0.5).
    pub hue: f32,
    /// Probability of jittering an image.
    pub probability: f32,
}

/// ITU-R 601 luma, as PIL's `convert("L")`: `0.299 R + 0.587 G + 0.114 B`.
fn luma(r: f32, g: f32, b: f32) -> f32 {
    0.299 * r + 0.587 * g + 0.114 * b
}

fn clamp_u8(v: f32) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

/// Blends every pixel with `other(pixel)`: `factor x + (1 - factor) other`.
fn blend(image: &mut Image, factor: f32, other: impl Fn(&[u8]) -> Vec<f32>) {
    let c = image.channels;
    for pixel in image.pixels.chunks_mut(c) {
        let towards = other(pixel);
        for (v, o) in pixel.iter_mut().zip(towards) {
            *v = clamp_u8(factor * *v as f32 + (1.0 - factor) * o);
        }
    }
}

fn gray_of(pixel: &[u8]) -> f32 {
    if pixel.len() >= 3 { luma(pixel[0] as f32, pixel[1] as f32, pixel[2] as f32) } else { pixel[0] as f32 }
}

/// Brightness: `x f` (blend with black).
pub fn adjust_brightness(image: &mut Image, factor: f32) {
    blend(image, factor, |p| vec![0.0; p.len()]);
}

/// Contrast: blend with the image's mean gray level.
pub fn adjust_contrast(image: &mut Image, factor: f32) {
    let c = image.channels;
    let n = (image.pixels.len() / c).max(1) as f32;
    let mean = image.pixels.chunks(c).map(gray_of).sum::<f32>() / n;
    blend(image, factor, |p| vec![mean; p.len()]);
}

/// Saturation: blend with the pixel's own gray level (RGB only).
pub fn adjust_saturation(image: &mut Image, factor: f32) {
    if image.channels >= 3 {
        blend(image, factor, |p| vec![gray_of(p); p.len()]);
    }
}

/// Hue: rotate every RGB pixel's hue by `shift` turns (HSV, as torchvision; RGB only).
pub fn adjust_hue(image: &mut Image, shift: f32) {
    if image.channels < 3 {
        return;
    }
    let c = image.channels;
    for pixel in image.pixels.chunks_mut(c) {
        let [r, g, b] = [pixel[0], pixel[1], pixel[2]].map(|v| v as f32 / 255.0);
        let max = r.max(g).max(b);
        let min = r.min(g).min(b);
        let delta = max - min;
        if delta <= 0.0 {
            continue;
        }
        let hue = if max == r {
            ((g - b) / delta).rem_euclid(6.0)
        } else if max == g {
            (b - r) / delta + 2.0
        } else {
            (r - g) / delta + 4.0
        } / 6.0;
        let h = (hue + shift).rem_euclid(1.0) * 6.0;
        let (s, v) = (delta / max, max);
        let sector = h.floor();
        let f = h - sector;
        let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
        let (nr, ng, nb) = match sector as i32 {
            0 => (v, t, p),
            1 => (q, v, p),
            2 => (p, v, t),
            3 => (p, q, v),
            4 => (t, p, v),
            _ => (v, p, q),
        };
        pixel[0] = clamp_u8(nr * 255.0);
        pixel[1] = clamp_u8(ng * 255.0);
        pixel[2] = clamp_u8(nb * 255.0);
    }
}

/// Colour jitter with probability `jitter.probability`, the four adjustments in a random order.
pub fn colour_jitter(image: &mut Image, jitter: &ColourJitter, rng: &mut impl Rng) {
    if !rng.random_bool(jitter.probability.clamp(0.0, 1.0) as f64) {
        return;
    }
    let mut order = [0, 1, 2, 3];
    order.shuffle(rng);
    let mut factor =
        |strength: f32| if strength > 0.0 { rng.random_range(1.0 - strength..=1.0 + strength) } else { 1.0 };
    let factors = [factor(jitter.brightness), factor(jitter.contrast), factor(jitter.saturation)];
    let shift = if jitter.hue > 0.0 { rng.random_range(-jitter.hue..=jitter.hue) } else { 0.0 };
    for op in order {
        match op {
            0 => adjust_brightness(image, factors[0]),
            1 => adjust_contrast(image, factors[1]),
            2 => adjust_saturation(image, factors[2]),
            _ => adjust_hue(image, shift),
        }
    }
}

/// Every channel set to the pixel's luma (RGB; one channel is already gray).
pub fn to_grayscale(image: &mut Image) {
    if image.channels < 3 {
        return;
    }
    let c = image.channels;
    for pixel in image.pixels.chunks_mut(c) {
        let gray = clamp_u8(gray_of(pixel));
        pixel[..3].fill(gray);
    }
}

/// Separable Gaussian blur with standard deviation `sigma` pixels and a `kernel`-tap (odd)
/// window, edges reflected (torchvision's `GaussianBlur`).
pub fn gaussian_blur(image: &mut Image, sigma: f32, kernel: usize) {
    let radius = (kernel / 2) as isize;
    let weights: Vec<f32> = (-radius..=radius).map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp()).collect();
    let total: f32 = weights.iter().sum();
    let weights: Vec<f32> = weights.iter().map(|w| w / total).collect();
    let (h, w, c) = (image.height as isize, image.width as isize, image.channels);
    let reflect = |i: isize, n: isize| -> usize {
        if n == 1 {
            return 0;
        }
        let period = 2 * (n - 1);
        let m = i.rem_euclid(period);
        (if m < n { m } else { period - m }) as usize
    };
    let source: Vec<f32> = image.pixels.iter().map(|&v| v as f32).collect();
    let mut rows = vec![0f32; source.len()];
    for y in 0..h {
        for x in 0..w {
            for k in 0..c {
                rows[(y * w + x) as usize * c + k] = weights
                    .iter()
                    .enumerate()
                    .map(|(j, wt)| wt * source[(y as usize * w as usize + reflect(x + j as isize - radius, w)) * c + k])
                    .sum();
            }
        }
    }
    for y in 0..h {
        for x in 0..w {
            for k in 0..c {
                let v: f32 = weights
                    .iter()
                    .enumerate()
                    .map(|(j, wt)| wt * rows[(reflect(y + j as isize - radius, h) * w as usize + x as usize) * c + k])
                    .sum();
                image.pixels[(y * w + x) as usize * c + k] = clamp_u8(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::stream;

    /// Brightness 0.5 halves, contrast 0 gives the mean gray, saturation 0 the luma; by hand.
    #[test]
    fn adjustments_follow_their_blends() {
        let mut image = Image::new(1, 2, 1, vec![100, 201]);
        adjust_brightness(&mut image, 0.5);
        assert_eq!(image.pixels, vec![50, 101]); // 100.5 rounds to 101 (half away from zero)
        adjust_contrast(&mut image, 0.0);
        assert_eq!(image.pixels, vec![76, 76]); // mean (50 + 101) / 2 = 75.5
        let mut rgb = Image::new(1, 1, 3, vec![200, 100, 0]);
        adjust_saturation(&mut rgb, 0.0);
        assert_eq!(rgb.pixels, vec![119, 119, 119]); // 0.299 x 200 + 0.587 x 100 = 118.5
        let mut gray = Image::new(1, 1, 1, vec![42]);
        adjust_saturation(&mut gray, 0.0);
        adjust_hue(&mut gray, 0.3);
        to_grayscale(&mut gray);
        assert_eq!(gray.pixels, vec![42], "saturation, hue and grayscale leave one channel alone");
    }

    /// Pure red shifted by 1/3 turn is pure green, by 2/3 pure blue (HSV).
    #[test]
    fn hue_rotates_primaries() {
        let mut red = Image::new(1, 1, 3, vec![255, 0, 0]);
        adjust_hue(&mut red, 1.0 / 3.0);
        assert_eq!(red.pixels, vec![0, 255, 0]);
        adjust_hue(&mut red, 1.0 / 3.0);
        assert_eq!(red.pixels, vec![0, 0, 255]);
    }

    /// A constant image stays constant under blur (weights sum to 1, edges reflected); a single
    /// bright pixel spreads symmetrically: with sigma 1 and 3 taps the weights are
    /// e^-0.5 / (1 + 2 e^-0.5) = 0.274 and 0.452 (centre), so 255 becomes 0.452^2 x 255 = 52.
    #[test]
    fn blur_preserves_constants_and_spreads_symmetrically() {
        let mut flat = Image::new(4, 5, 1, vec![77; 20]);
        gaussian_blur(&mut flat, 1.3, 5);
        assert!(flat.pixels.iter().all(|&v| v == 77));
        let mut dot = Image::new(5, 5, 1, (0..25).map(|i| if i == 12 { 255 } else { 0 }).collect());
        gaussian_blur(&mut dot, 1.0, 3);
        assert_eq!(dot.at(2, 2, 0), 52);
        assert_eq!(dot.at(1, 2, 0), dot.at(3, 2, 0));
        assert_eq!(dot.at(2, 1, 0), dot.at(2, 3, 0));
        assert_eq!(dot.at(0, 0, 0), 0);
    }

    #[test]
    fn jitter_probability_zero_is_the_identity() {
        let mut image = Image::new(2, 2, 3, vec![10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120]);
        let before = image.clone();
        let jitter = ColourJitter { brightness: 0.4, contrast: 0.4, saturation: 0.4, hue: 0.1, probability: 0.0 };
        colour_jitter(&mut image, &jitter, &mut stream(1, 0, 0));
        assert_eq!(image, before);
    }
}
