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
use crate::transforms::PixelBox;

/// Fraction bits of the fixed-point weights (Pillow's `PRECISION_BITS` for 8-bit images).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// The taps of one axis: output pixel `o` reads source pixels `first[o] .. first[o] +
/// count[o]` with weights `weights[o * stride ..]`.
struct AxisTaps {
    first: Vec<usize>,
    count: Vec<usize>,
    stride: usize,
    weights: Vec<i32>,
}

impl AxisTaps {
    fn of(&self, o: usize) -> (usize, &[i32]) {
        (self.first[o], &self.weights[o * self.stride..o * self.stride + self.count[o]])
    }
}

fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

/// The taps of output pixels `outputs` (numbered as in the whole `n_out`-pixel axis) reading an
/// `n_in`-pixel axis; `of(0)` is the first of `outputs`.
fn axis_taps(n_in: usize, n_out: usize, outputs: std::ops::Range<usize>) -> AxisTaps {
    let scale = n_in as f64 / n_out as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale;
    // Pillow multiplies by the reciprocal (`ss`); dividing can differ in the last bit.
    let inverse_scale = 1.0 / filter_scale;
    let stride = support.ceil() as usize * 2 + 1;
    let mut taps = AxisTaps {
        first: Vec::with_capacity(outputs.len()),
        count: Vec::with_capacity(outputs.len()),
        stride,
        weights: vec![0; outputs.len() * stride],
    };
    let mut raw = Vec::with_capacity(stride);
    for (local, o) in outputs.enumerate() {
        let centre = (o as f64 + 0.5) * scale;
        // C's (int) conversion truncates toward zero, as Pillow's does.
        let lo = ((centre - support + 0.5) as i64).max(0) as usize;
        let hi = ((centre + support + 0.5) as i64).min(n_in as i64) as usize;
        raw.clear();
        raw.extend((lo..hi).map(|x| triangle((x as f64 - centre + 0.5) * inverse_scale)));
        let total: f64 = raw.iter().sum();
        for (slot, &w) in taps.weights[local * stride..].iter_mut().zip(&raw) {
            let w = if total != 0.0 { w / total } else { w };
            let scaled = w * (1u32 << PRECISION_BITS) as f64;
            *slot = (if scaled < 0.0 { scaled - 0.5 } else { scaled + 0.5 }) as i32;
        }
        taps.first.push(lo);
        taps.count.push(raw.len());
    }
    taps
}

fn clip8(accumulated: i32) -> u8 {
    (accumulated >> PRECISION_BITS).clamp(0, 255) as u8
}

/// One row resampled to `out.len() / C` pixels of `C` channels.
#[inline(always)]
fn resample_row<const C: usize>(row: &[u8], taps: &AxisTaps, out: &mut [u8]) {
    let half = 1i32 << (PRECISION_BITS - 1);
    for (o, pixel) in out.chunks_exact_mut(C).enumerate() {
        let (lo, weights) = taps.of(o);
        let mut sums = [half; C];
        for (source, &w) in row[lo * C..(lo + weights.len()) * C].chunks_exact(C).zip(weights) {
            for k in 0..C {
                sums[k] += source[k] as i32 * w;
            }
        }
        for k in 0..C {
            pixel[k] = clip8(sums[k]);
        }
    }
}

/// The row pass over `height` rows of `width` pixels starting at `first` in `pixels` (rows
/// `stride` bytes apart), into `out` (`height` rows of `taps`' output width). Compiled for
/// AVX2 and SSE4.1 besides the baseline, chosen at run time (the same integer arithmetic, so
/// the same bytes on every path).
#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+sse4.1"))]
fn row_pass(pixels: &[u8], first: usize, stride: usize, width: usize, c: usize, taps: &AxisTaps, out: &mut [u8]) {
    for (y, row_out) in out.chunks_exact_mut(taps.first.len() * c).enumerate() {
        let row = &pixels[first + y * stride..first + y * stride + width * c];
        match c {
            1 => resample_row::<1>(row, taps, row_out),
            3 => resample_row::<3>(row, taps, row_out),
            4 => resample_row::<4>(row, taps, row_out),
            _ => {
                let half = 1i32 << (PRECISION_BITS - 1);
                for (o, pixel) in row_out.chunks_exact_mut(c).enumerate() {
                    let (lo, weights) = taps.of(o);
                    for (k, value) in pixel.iter_mut().enumerate() {
                        let sum =
                            weights.iter().enumerate().fold(half, |s, (i, &w)| s + row[(lo + i) * c + k] as i32 * w);
                        *value = clip8(sum);
                    }
                }
            }
        }
    }
}

/// The column pass: output row `o` is the weighted sum of input rows `first[o] ..` (rows of
/// `stride` bytes), which vectorises across the row. Multiversioned as [`row_pass`].
#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+sse4.1"))]
fn column_pass(rows: &[u8], stride: usize, taps: &AxisTaps, out: &mut [u8]) {
    let mut sums = vec![0i32; stride];
    for (o, row_out) in out.chunks_exact_mut(stride).enumerate() {
        let (lo, weights) = taps.of(o);
        sums.fill(1i32 << (PRECISION_BITS - 1));
        for (i, &w) in weights.iter().enumerate() {
            let source = &rows[(lo + i) * stride..(lo + i + 1) * stride];
            for (sum, &value) in sums.iter_mut().zip(source) {
                *sum += value as i32 * w;
            }
        }
        for (value, &sum) in row_out.iter_mut().zip(&sums) {
            *value = clip8(sum);
        }
    }
}

/// Resamples the `(top, left, height, width)` window of `image` to `out_h x out_w` as PIL
/// resizes that window cropped out (`image.crop(box).resize((out_w, out_h), BILINEAR)`).
pub fn resize_bilinear_antialiased(image: &Image, source: PixelBox, out_h: usize, out_w: usize) -> Image {
    resize_window(image, source, (out_h, out_w), (0, 0, out_h, out_w))
}

/// The `window` of the `source` box of `image` resized to `full` (height, width), as PIL's
/// `image.crop(source).resize(full).crop(window)`, computing only the window's pixels (a thin
/// image's shorter side resized to 256 makes a huge full image; only 224x224 of it is made).
pub fn resize_window(image: &Image, source: PixelBox, full: (usize, usize), window: PixelBox) -> Image {
    let (top, left, height, width) = source;
    let (w_top, w_left, w_h, w_w) = window;
    let c = image.channels;
    let stride = image.width * c;
    // PIL resamples an axis only when its size changes; rows first, into 8-bit pixels.
    let column_taps = (height != full.0).then(|| axis_taps(height, full.0, w_top..w_top + w_h));
    let (row_lo, row_hi) = match &column_taps {
        Some(t) => (t.first[0], t.first.iter().zip(&t.count).map(|(f, n)| f + n).max().unwrap_or(t.first[0])),
        None => (w_top, w_top + w_h),
    };
    let first = (top + row_lo) * stride + left * c;
    let mut rows = vec![0u8; (row_hi - row_lo) * w_w * c];
    if width != full.1 {
        row_pass(&image.pixels, first, stride, width, c, &axis_taps(width, full.1, w_left..w_left + w_w), &mut rows);
    } else {
        for (y, row) in rows.chunks_exact_mut(w_w * c).enumerate() {
            let start = first + y * stride + w_left * c;
            row.copy_from_slice(&image.pixels[start..start + w_w * c]);
        }
    }
    let Some(mut taps) = column_taps else {
        return Image::new(w_h, w_w, c, rows);
    };
    for f in taps.first.iter_mut() {
        *f -= row_lo;
    }
    let mut out = vec![0u8; w_h * w_w * c];
    column_pass(&rows, w_w * c, &taps, &mut out);
    Image::new(w_h, w_w, c, out)
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

    /// A window of a resize equals the whole resize cut: enlarging, shrinking, mixed axes.
    #[test]
    fn windows_equal_the_whole_resize_cut() {
        let image = Image::new(9, 13, 3, (0..9 * 13 * 3).map(|i| (i * 29 % 256) as u8).collect());
        for (full, window) in [((20, 7), (3, 1, 10, 5)), ((4, 30), (1, 10, 3, 12)), ((9, 13), (2, 2, 5, 5))] {
            let whole = resize_bilinear_antialiased(&image, (0, 0, 9, 13), full.0, full.1);
            let part = resize_window(&image, (0, 0, 9, 13), full, window);
            let (t, l, h, w) = window;
            for y in 0..h {
                for x in 0..w {
                    for k in 0..3 {
                        assert_eq!(part.at(y, x, k), whole.at(t + y, l + x, k), "{full:?} {window:?}");
                    }
                }
            }
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
