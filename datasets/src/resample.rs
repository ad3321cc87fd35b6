//! PIL's bilinear resampling (`Image.resize(..., BILINEAR)`, what torchvision's `Resize` and
//! `RandomResizedCrop` do to a PIL image): a separable triangle filter whose support widens
//! with the reduction factor, so that shrinking averages every source pixel (antialiasing).
//! For output pixel `o` on an axis of `n_in -> n_out` pixels, with `s = n_in / n_out` and
//! `f = max(s, 1)`: centre `c = (o + 1/2) s`, taps `x` in `[c - f + 1/2, c + f + 1/2)` clipped
//! to the image, weights `max(0, 1 - |x - c + 1/2| / f)` normalised to sum 1, then fixed point
//! with 22 fraction bits; rows are resampled first into 8-bit pixels, then columns, each
//! rounding to the nearest byte. This follows Pillow's `libImaging/Resample.c` arithmetic
//! step for step, so the bytes equal PIL's.

use crate::image::Image;

/// Fraction bits of the fixed-point weights (Pillow's `PRECISION_BITS` for 8-bit images).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// The taps of one axis: for each output pixel, the first source pixel, and its weights
/// (`taps[o]` covers source pixels `first[o] ..`).
struct AxisTaps {
    first: Vec<usize>,
    weights: Vec<Vec<i32>>,
}

fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

fn axis_taps(n_in: usize, n_out: usize) -> AxisTaps {
    let scale = n_in as f64 / n_out as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale;
    let mut first = Vec::with_capacity(n_out);
    let mut weights = Vec::with_capacity(n_out);
    for o in 0..n_out {
        let centre = (o as f64 + 0.5) * scale;
        // C's (int) conversion truncates toward zero, as Pillow's does.
        let lo = ((centre - support + 0.5) as i64).max(0) as usize;
        let hi = ((centre + support + 0.5) as i64).min(n_in as i64) as usize;
        let raw: Vec<f64> = (lo..hi).map(|x| triangle((x as f64 - centre + 0.5) / filter_scale)).collect();
        let total: f64 = raw.iter().sum();
        let fixed = raw
            .iter()
            .map(|&w| {
                let w = if total != 0.0 { w / total } else { w };
                let scaled = w * (1u32 << PRECISION_BITS) as f64;
                (if scaled < 0.0 { scaled - 0.5 } else { scaled + 0.5 }) as i32
            })
            .collect();
        first.push(lo);
        weights.push(fixed);
    }
    AxisTaps { first, weights }
}

fn clip8(accumulated: i32) -> u8 {
    (accumulated >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resamples the `(top, left, height, width)` window of `image` to `out_h x out_w` as PIL
/// resizes that window cropped out (`image.crop(box).resize((out_w, out_h), BILINEAR)`).
pub fn resize_bilinear_antialiased(
    image: &Image,
    (top, left, height, width): (usize, usize, usize, usize),
    out_h: usize,
    out_w: usize,
) -> Image {
    let c = image.channels;
    let half = 1i32 << (PRECISION_BITS - 1);
    // Rows first (only if the width changes), into 8-bit pixels.
    let rows: Image = if width != out_w {
        let taps = axis_taps(width, out_w);
        let mut out = vec![0u8; height * out_w * c];
        for y in 0..height {
            let row = &image.pixels[((top + y) * image.width + left) * c..];
            for o in 0..out_w {
                let (lo, w) = (taps.first[o], &taps.weights[o]);
                for k in 0..c {
                    let sum = w.iter().enumerate().fold(half, |s, (i, &wi)| s + row[(lo + i) * c + k] as i32 * wi);
                    out[(y * out_w + o) * c + k] = clip8(sum);
                }
            }
        }
        Image::new(height, out_w, c, out)
    } else {
        let mut out = Vec::with_capacity(height * width * c);
        for y in 0..height {
            let start = ((top + y) * image.width + left) * c;
            out.extend_from_slice(&image.pixels[start..start + width * c]);
        }
        Image::new(height, width, c, out)
    };
    if height == out_h {
        return rows;
    }
    let taps = axis_taps(height, out_h);
    let stride = out_w * c;
    let mut out = vec![0u8; out_h * stride];
    for o in 0..out_h {
        let (lo, w) = (taps.first[o], &taps.weights[o]);
        for x in 0..stride {
            let sum = w.iter().enumerate().fold(half, |s, (i, &wi)| s + rows.pixels[(lo + i) * stride + x] as i32 * wi);
            out[o * stride + x] = clip8(sum);
        }
    }
    Image::new(out_h, out_w, c, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected bytes from Pillow 9.4 (Debian's python3-pil):
    /// `Image.fromarray(np.array(row, np.uint8).reshape(1, -1)).resize((n_out, 1), Image.BILINEAR)`.
    #[test]
    fn rows_equal_pillow() {
        let row: Vec<u8> = vec![0, 10, 200, 30, 255, 7, 90, 120, 3, 64];
        let image = Image::new(1, 10, 1, row);
        // Shrinking 10 -> 3 (support 3.33 pixels), 10 -> 4 and enlarging 10 -> 13.
        for (n_out, expected) in [
            (3usize, vec![72u8, 112, 60]),
            (4, vec![51, 123, 89, 53]),
            (13, vec![0, 7, 90, 167, 37, 194, 131, 29, 91, 114, 52, 24, 64]),
        ] {
            let out = resize_bilinear_antialiased(&image, (0, 0, 1, 10), 1, n_out);
            assert_eq!(out.pixels, expected, "10 -> {n_out}");
        }
    }

    /// A 2-D window resampled equals Pillow's crop-then-resize:
    /// `Image.fromarray(a).crop((1, 2, 7, 6)).resize((4, 3), Image.BILINEAR)` for the 8x8 image
    /// `a[y, x] = (37 y + 11 x) % 256`, two channels identical.
    #[test]
    fn window_equals_pillow_crop_then_resize() {
        let pixels: Vec<u8> = (0..64).flat_map(|i| [((37 * (i / 8) + 11 * (i % 8)) % 256) as u8; 2]).collect();
        let image = Image::new(8, 8, 2, pixels);
        let out = resize_bilinear_antialiased(&image, (2, 1, 4, 6), 3, 4);
        let first: Vec<u8> = out.pixels.iter().step_by(2).copied().collect();
        assert_eq!(first, vec![100, 116, 131, 147, 145, 161, 176, 192, 189, 205, 220, 236]);
        assert_eq!(out.pixels[1], out.pixels[0]);
    }
}
