//! Image transforms: random-resized crop that reports its box and flip (FKD depends on
//! rebuilding exactly that crop later), bilinear resize, pad-and-random-crop, horizontal flip
//! and per-channel normalisation.

use crate::error::{DataError, Result};
use crate::image::Image;
use rand::Rng;

/// A crop as fractions of the source image: rows `top .. top + height`, columns
/// `left .. left + width`, every value in [0, 1]. Fractions make a box independent of the
/// image's size; [`CropBox::to_pixels`] recovers the integer pixel box.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CropBox {
    /// First row / image height.
    pub top: f32,
    /// First column / image width.
    pub left: f32,
    /// Rows / image height.
    pub height: f32,
    /// Columns / image width.
    pub width: f32,
}

/// An integer pixel box `(top, left, height, width)`.
pub type PixelBox = (usize, usize, usize, usize);

impl CropBox {
    /// The fractions of a pixel box in an `h x w` image.
    pub fn from_pixels((top, left, height, width): PixelBox, h: usize, w: usize) -> Self {
        Self {
            top: top as f32 / h as f32,
            left: left as f32 / w as f32,
            height: height as f32 / h as f32,
            width: width as f32 / w as f32,
        }
    }

    /// The pixel box in an `h x w` image: rounded, at least 1x1 and inside the image.
    pub fn to_pixels(&self, h: usize, w: usize) -> PixelBox {
        let top = ((self.top * h as f32).round() as usize).min(h - 1);
        let left = ((self.left * w as f32).round() as usize).min(w - 1);
        let height = ((self.height * h as f32).round() as usize).clamp(1, h - top);
        let width = ((self.width * w as f32).round() as usize).clamp(1, w - left);
        (top, left, height, width)
    }
}

/// Draws a random-resized-crop box as torchvision's `RandomResizedCrop.get_params` does
/// (Szegedy et al., 2015 "Inception" crops): area fraction from `scale`, log-uniform aspect
/// ratio from `ratio`, 10 tries, then a centre crop clamped to the ratio range. Logarithm and
/// exponential come from `libm` (pure Rust), so the same stream gives the same boxes on every
/// platform (FKD label files can store a seed instead of the boxes).
pub fn sample_resized_crop_box(rng: &mut impl Rng, h: usize, w: usize, scale: [f32; 2], ratio: [f32; 2]) -> PixelBox {
    let area = (h * w) as f32;
    let (log_lo, log_hi) = (libm::logf(ratio[0]), libm::logf(ratio[1]));
    for _ in 0..10 {
        let target = area * rng.random_range(scale[0]..=scale[1]);
        let aspect = libm::expf(rng.random_range(log_lo..=log_hi));
        let cw = (target * aspect).sqrt().round() as usize;
        let ch = (target / aspect).sqrt().round() as usize;
        if cw > 0 && ch > 0 && cw <= w && ch <= h {
            let top = rng.random_range(0..=h - ch);
            let left = rng.random_range(0..=w - cw);
            return (top, left, ch, cw);
        }
    }
    let in_ratio = w as f32 / h as f32;
    let (ch, cw) = if in_ratio < ratio[0] {
        (((w as f32 / ratio[0]).round() as usize).clamp(1, h), w)
    } else if in_ratio > ratio[1] {
        (h, ((h as f32 * ratio[1]).round() as usize).clamp(1, w))
    } else {
        (h, w)
    };
    ((h - ch) / 2, (w - cw) / 2, ch, cw)
}

/// Crops `pixel_box` out of `image`, resizes it to `out_h x out_w` and optionally mirrors it:
/// a crop that shrinks on either axis is resampled as PIL does (a triangle filter widened by the
/// reduction, `crate::resample`), as torchvision's `RandomResizedCrop` and `Resize` do to PIL
/// images; a crop that only grows is interpolated bilinearly (half-pixel centres, as
/// `F.interpolate(..., align_corners=False)`, PIL's weights up to rounding). Rounds to bytes. A
/// pure function of its inputs: the same (box, flip) always gives the same pixels.
pub fn crop_resize(image: &Image, pixel_box: PixelBox, flip: bool, out_h: usize, out_w: usize) -> Image {
    let (top, left, ch, cw) = pixel_box;
    if ch > out_h || cw > out_w {
        let resized = crate::resample::resize_bilinear_antialiased(image, pixel_box, out_h, out_w);
        return if flip { mirrored(resized) } else { resized };
    }
    let c = image.channels;
    let mut out = vec![0u8; out_h * out_w * c];
    let scale_y = ch as f32 / out_h as f32;
    let scale_x = cw as f32 / out_w as f32;
    // Precompute the two source columns and weights of every output column.
    let columns: Vec<(usize, usize, f32)> = (0..out_w)
        .map(|ox| {
            let sx = ((ox as f32 + 0.5) * scale_x - 0.5).clamp(0.0, (cw - 1) as f32);
            let x0 = sx.floor() as usize;
            (x0, (x0 + 1).min(cw - 1), sx - x0 as f32)
        })
        .collect();
    // Separable: each source row interpolated along x once (f32), then pairs of those rows
    // along y; the same products and sums, in the same order, as interpolating each output
    // pixel from its four neighbours.
    let stride = out_w * c;
    let mut lines = vec![0.0f32; ch * stride];
    for (y, line) in lines.chunks_exact_mut(stride).enumerate() {
        let row = &image.pixels[((top + y) * image.width + left) * c..((top + y) * image.width + left + cw) * c];
        for (ox, pixel) in line.chunks_exact_mut(c).enumerate() {
            let (x0, x1, wx) = columns[if flip { out_w - 1 - ox } else { ox }];
            for (k, value) in pixel.iter_mut().enumerate() {
                *value = (1.0 - wx) * row[x0 * c + k] as f32 + wx * row[x1 * c + k] as f32;
            }
        }
    }
    for (oy, out_row) in out.chunks_exact_mut(stride).enumerate() {
        let sy = ((oy as f32 + 0.5) * scale_y - 0.5).clamp(0.0, (ch - 1) as f32);
        let y0 = sy.floor() as usize;
        let y1 = (y0 + 1).min(ch - 1);
        let wy = sy - y0 as f32;
        let (line0, line1) = (&lines[y0 * stride..(y0 + 1) * stride], &lines[y1 * stride..(y1 + 1) * stride]);
        for ((value, &a), &b) in out_row.iter_mut().zip(line0).zip(line1) {
            *value = round_to_byte((1.0 - wy) * a + wy * b);
        }
    }
    Image::new(out_h, out_w, c, out)
}

/// `v.round().clamp(0, 255)` as a byte (half away from zero), without a `roundf` call: for
/// `0 <= v < 2^24` the fraction `v - trunc(v)` is exact in f32, so the comparison with 0.5
/// decides as `round` does.
#[inline]
fn round_to_byte(v: f32) -> u8 {
    if v <= 0.0 {
        return 0;
    }
    if v >= 255.0 {
        return 255;
    }
    let whole = v as u32;
    (whole + (v - whole as f32 >= 0.5) as u32) as u8
}

/// `image` mirrored left to right.
fn mirrored(mut image: Image) -> Image {
    let (w, c) = (image.width, image.channels);
    for row in image.pixels.chunks_exact_mut(w * c) {
        for x in 0..w / 2 {
            for k in 0..c {
                row.swap(x * c + k, (w - 1 - x) * c + k);
            }
        }
    }
    image
}

/// torchvision's `Resize(side)` then `CenterCrop(out_h, out_w)` on an `h x w` image: the
/// shorter side scaled to `side`, the longer to `floor(side * long / short)`, then the window at
/// `round((resized - out) / 2)` (rounding half to even, as Python's `round`). Returns the
/// resized size and the window in it; a window larger than the resized image is clamped to it
/// (torchvision pads with zeros there instead).
pub fn resize_center_crop_geometry(
    h: usize,
    w: usize,
    side: usize,
    out_h: usize,
    out_w: usize,
) -> ((usize, usize), PixelBox) {
    let (short, long) = if w <= h { (w, h) } else { (h, w) };
    let scaled_long = (side as f64 * long as f64 / short as f64) as usize;
    let (rh, rw) = if w <= h { (scaled_long, side) } else { (side, scaled_long) };
    let (ch, cw) = (out_h.min(rh), out_w.min(rw));
    let top = ((rh - ch) as f64 / 2.0).round_ties_even() as usize;
    let left = ((rw - cw) as f64 / 2.0).round_ties_even() as usize;
    ((rh, rw), (top, left, ch, cw))
}

/// Random augmentation applied to training images.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Augment {
    /// No augmentation (evaluation): resize to the output size if needed.
    None,
    /// Evaluation of variable-sized images: the shorter side resized to
    /// `floor(min(out) / crop_fraction)`, then the centre `out_h x out_w` window (torchvision's
    /// `Resize(256)` + `CenterCrop(224)` at 0.875, timm's `crop_pct`).
    ResizeCenterCrop {
        /// Output side over resized shorter side (ImageNet: 0.875).
        crop_fraction: f32,
    },
    /// Zero-pad by `pad` pixels, take a random crop of the original size, flip with p = 0.5 if
    /// `flip` (the CIFAR recipe of He et al. 2016, §4.2).
    PadCrop {
        /// Padding on every side.
        pad: usize,
        /// Random horizontal flip.
        flip: bool,
    },
    /// Random-resized crop to the output size, flip with p = 0.5 if `flip`.
    RandomResizedCrop {
        /// Range of the crop's area as a fraction of the image.
        scale: [f32; 2],
        /// Range of the crop's aspect ratio (width / height).
        ratio: [f32; 2],
        /// Random horizontal flip.
        flip: bool,
    },
    /// MoCo v2's view (Chen et al. 2020, §2): random-resized crop, colour jitter, random
    /// grayscale, Gaussian blur, horizontal flip with p = 0.5 if `flip` (`crate::photometric`
    /// says what applies to one-channel images).
    MocoV2 {
        /// Range of the crop's area (MoCo v2: 0.2 - 1).
        scale: [f32; 2],
        /// Colour jitter (MoCo v2: 0.4, 0.4, 0.4, 0.1 with p = 0.8).
        jitter: crate::photometric::ColourJitter,
        /// Probability of grayscale (MoCo v2: 0.2).
        grayscale: f32,
        /// Range of the blur's sigma in output pixels (MoCo v2: 0.1 - 2 at 224 pixels).
        blur_sigma: [f32; 2],
        /// Probability of blurring (MoCo v2: 0.5).
        blur: f32,
        /// Random horizontal flip (MoCo v2: yes; not for digits).
        flip: bool,
    },
}

impl Augment {
    /// MoCo v2's augmentation for `side`-pixel outputs: its blur sigma range (0.1 - 2 pixels at
    /// 224) scaled to the output size, so a blur removes the same share of the image's detail.
    pub fn moco_v2(side: usize, flip: bool) -> Self {
        let scale = side as f32 / 224.0;
        Self::MocoV2 {
            scale: [0.2, 1.0],
            jitter: crate::photometric::ColourJitter {
                brightness: 0.4,
                contrast: 0.4,
                saturation: 0.4,
                hue: 0.1,
                probability: 0.8,
            },
            grayscale: 0.2,
            blur_sigma: [0.1 * scale, 2.0 * scale],
            blur: 0.5,
            flip,
        }
    }
}

/// Augmentation, output size and normalisation: image bytes in, normalised CHW floats out.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transform {
    /// Random augmentation.
    pub augment: Augment,
    /// Output height.
    pub out_height: usize,
    /// Output width.
    pub out_width: usize,
    /// Per-channel mean (of pixels scaled to [0, 1]).
    pub mean: Vec<f32>,
    /// Per-channel standard deviation.
    pub std: Vec<f32>,
}

impl Transform {
    /// Checks parameters once, before workers start.
    pub fn validate(&self, channels: usize) -> Result<()> {
        let bad = |m: String| Err(DataError::Invalid(m));
        if self.out_height == 0 || self.out_width == 0 {
            return bad("output size must be positive".into());
        }
        if self.mean.len() != channels || self.std.len() != channels || self.std.iter().any(|&s| s <= 0.0) {
            return bad(format!("normalisation needs {channels} means and {channels} positive standard deviations"));
        }
        if let Augment::ResizeCenterCrop { crop_fraction } = self.augment
            && !(crop_fraction > 0.05 && crop_fraction <= 1.0)
        {
            return bad(format!("the centre crop fraction {crop_fraction} must be in (0.05, 1]"));
        }
        let scale = match &self.augment {
            Augment::RandomResizedCrop { scale, ratio, .. } => {
                if !(0.0 < ratio[0] && ratio[0] <= ratio[1]) {
                    return bad(format!("crop ratio range {ratio:?} must satisfy 0 < min <= max"));
                }
                Some(scale)
            }
            Augment::MocoV2 { scale, jitter, grayscale, blur_sigma, blur, .. } => {
                let probability = |p: f32| (0.0..=1.0).contains(&p);
                if ![jitter.probability, *grayscale, *blur].into_iter().all(probability) {
                    return bad("augmentation probabilities must be in [0, 1]".into());
                }
                if ![jitter.brightness, jitter.contrast, jitter.saturation].iter().all(|s| (0.0..=1.0).contains(s))
                    || !(0.0..=0.5).contains(&jitter.hue)
                {
                    return bad("colour jitter strengths must be in [0, 1] (hue [0, 0.5])".into());
                }
                if !(0.0 < blur_sigma[0] && blur_sigma[0] <= blur_sigma[1] && blur_sigma[1] <= 64.0) {
                    return bad(format!("blur sigma range {blur_sigma:?} must satisfy 0 < min <= max <= 64"));
                }
                Some(scale)
            }
            _ => None,
        };
        if let Some(scale) = scale
            && !(0.0 < scale[0] && scale[0] <= scale[1] && scale[1] <= 1.0)
        {
            return bad(format!("crop scale range {scale:?} must satisfy 0 < min <= max <= 1"));
        }
        Ok(())
    }

    /// Augments `image` with `rng` and appends its normalised CHW floats to `out`.
    pub fn apply_into(&self, image: &Image, rng: &mut impl Rng, out: &mut Vec<f32>) {
        let (h, w) = (image.height, image.width);
        let augmented = match &self.augment {
            Augment::None => self.resized(image),
            Augment::ResizeCenterCrop { crop_fraction } => {
                let side = (self.out_height.min(self.out_width) as f32 / crop_fraction).floor() as usize;
                let ((rh, rw), window) = resize_center_crop_geometry(h, w, side, self.out_height, self.out_width);
                let cropped = crate::resample::resize_window(image, (0, 0, h, w), (rh, rw), window);
                self.resized(&cropped)
            }
            Augment::PadCrop { pad, flip } => {
                let top = rng.random_range(0..=2 * pad);
                let left = rng.random_range(0..=2 * pad);
                let mirror = *flip && rng.random_bool(0.5);
                let shifted = pad_crop(image, *pad, top, left, mirror);
                self.resized(&shifted)
            }
            Augment::RandomResizedCrop { scale, ratio, flip } => {
                let pixel_box = sample_resized_crop_box(rng, h, w, *scale, *ratio);
                let mirror = *flip && rng.random_bool(0.5);
                crop_resize(image, pixel_box, mirror, self.out_height, self.out_width)
            }
            Augment::MocoV2 { scale, jitter, grayscale, blur_sigma, blur, flip } => {
                let pixel_box = sample_resized_crop_box(rng, h, w, *scale, [0.75, 4.0 / 3.0]);
                let mirror = *flip && rng.random_bool(0.5);
                let mut view = crop_resize(image, pixel_box, mirror, self.out_height, self.out_width);
                crate::photometric::colour_jitter(&mut view, jitter, rng);
                if rng.random_bool(*grayscale as f64) {
                    crate::photometric::to_grayscale(&mut view);
                }
                if rng.random_bool(*blur as f64) {
                    let sigma = rng.random_range(blur_sigma[0]..=blur_sigma[1]);
                    // +-3 sigma, at most the image.
                    let taps = (2 * (3.0 * sigma).ceil() as usize + 1).min(2 * self.out_height.max(self.out_width) - 1);
                    crate::photometric::gaussian_blur(&mut view, sigma, taps);
                }
                view
            }
        };
        self.normalise_into(&augmented, out);
    }

    /// Augments the image of `file`, decoding it reduced in the DCT when the augmentation is a
    /// random-resized crop whose box keeps at least the output's pixels at that reduction (the
    /// box is drawn on the full-size header dimensions, so the same stream draws the same box
    /// whatever the reduction); other augmentations decode at full size.
    pub fn apply_file_into(
        &self,
        file: &crate::decode::Encoded,
        channels: usize,
        rng: &mut impl Rng,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        match &self.augment {
            Augment::RandomResizedCrop { scale, ratio, flip } => {
                let pixel_box = sample_resized_crop_box(rng, file.height, file.width, *scale, *ratio);
                let mirror = *flip && rng.random_bool(0.5);
                let reduction = file.reduction_for(&[pixel_box], self.out_height, self.out_width);
                let image = file.decode(channels, reduction)?;
                let reduced_box =
                    file.box_in(pixel_box, (image.height, image.width), (self.out_height, self.out_width));
                let crop = crop_resize(&image, reduced_box, mirror, self.out_height, self.out_width);
                crate::decode::recycle(image.pixels);
                self.normalise_into(&crop, out);
            }
            _ => self.apply_into(&file.decode(channels, 1)?, rng, out),
        }
        Ok(())
    }

    fn resized(&self, image: &Image) -> Image {
        if image.height == self.out_height && image.width == self.out_width {
            image.clone()
        } else {
            crop_resize(image, (0, 0, image.height, image.width), false, self.out_height, self.out_width)
        }
    }

    /// Appends `(pixel / 255 - mean) / std` in CHW order (a 256-entry table per channel).
    pub fn normalise_into(&self, image: &Image, out: &mut Vec<f32>) {
        let c = image.channels;
        let plane = image.height * image.width;
        let start = out.len();
        out.resize(start + c * plane, 0.0);
        for k in 0..c {
            let (mean, inv_std) = (self.mean[k], 1.0 / self.std[k]);
            let table: [f32; 256] = std::array::from_fn(|p| (p as f32 / 255.0 - mean) * inv_std);
            let target = &mut out[start + k * plane..start + (k + 1) * plane];
            for (value, pixel) in target.iter_mut().zip(image.pixels.chunks_exact(c)) {
                *value = table[pixel[k] as usize];
            }
        }
    }
}

/// The `h x w` window at (`top`, `left`) of `image` zero-padded by `pad`, optionally mirrored.
fn pad_crop(image: &Image, pad: usize, top: usize, left: usize, flip: bool) -> Image {
    let (h, w, c) = (image.height, image.width, image.channels);
    let mut out = vec![0u8; h * w * c];
    for y in 0..h {
        let sy = (y + top) as isize - pad as isize;
        if sy < 0 || sy >= h as isize {
            continue;
        }
        for x in 0..w {
            let sx = (x + left) as isize - pad as isize;
            if sx < 0 || sx >= w as isize {
                continue;
            }
            let ox = if flip { w - 1 - x } else { x };
            for k in 0..c {
                out[(y * w + ox) * c + k] = image.at(sy as usize, sx as usize, k);
            }
        }
    }
    Image::new(h, w, c, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::stream;

    fn ramp(h: usize, w: usize) -> Image {
        Image::new(h, w, 1, (0..h * w).map(|i| (i * 7 % 256) as u8).collect())
    }

    /// Equal to `round().clamp(0, 255)` on every f32 in [-1, 257) with the 12 low mantissa
    /// bits zero, and on the halves and their neighbours.
    #[test]
    fn byte_rounding_equals_round() {
        let reference = |v: f32| v.round().clamp(0.0, 255.0) as u8;
        let mut v = -1.0f32;
        while v < 257.0 {
            assert_eq!(round_to_byte(v), reference(v), "{v}");
            v = f32::from_bits(((v.to_bits() >> 12) + 1) << 12).max(v + f32::EPSILON);
        }
        for i in 0..256 {
            let half = i as f32 + 0.5;
            for x in [half, f32::from_bits(half.to_bits() - 1), f32::from_bits(half.to_bits() + 1)] {
                assert_eq!(round_to_byte(x), reference(x), "{x}");
            }
        }
    }

    /// Enlarging crops equal the per-pixel four-neighbour formula (f32, half-pixel centres,
    /// clamped at the edges, rounded), computed here directly for every output pixel.
    #[test]
    fn enlarging_crops_equal_the_four_neighbour_formula() {
        let image = Image::new(9, 7, 3, (0..9 * 7 * 3).map(|i| (i * 53 % 256) as u8).collect());
        for (pixel_box, out_h, out_w, flip) in
            [((1, 2, 5, 4), 9, 7, false), ((0, 0, 9, 7), 11, 13, true), ((3, 1, 2, 6), 5, 6, true)]
        {
            let (top, left, ch, cw) = pixel_box;
            let got = crop_resize(&image, pixel_box, flip, out_h, out_w);
            for oy in 0..out_h {
                for ox in 0..out_w {
                    let sx_of =
                        |ox: usize| ((ox as f32 + 0.5) * (cw as f32 / out_w as f32) - 0.5).clamp(0.0, (cw - 1) as f32);
                    let sx = sx_of(if flip { out_w - 1 - ox } else { ox });
                    let sy = ((oy as f32 + 0.5) * (ch as f32 / out_h as f32) - 0.5).clamp(0.0, (ch - 1) as f32);
                    let (x0, y0) = (sx.floor() as usize, sy.floor() as usize);
                    let (x1, y1) = ((x0 + 1).min(cw - 1), (y0 + 1).min(ch - 1));
                    let (wx, wy) = (sx - x0 as f32, sy - y0 as f32);
                    for k in 0..3 {
                        let p = |y: usize, x: usize| image.at(top + y, left + x, k) as f32;
                        let v = (1.0 - wy) * ((1.0 - wx) * p(y0, x0) + wx * p(y0, x1))
                            + wy * ((1.0 - wx) * p(y1, x0) + wx * p(y1, x1));
                        assert_eq!(
                            got.at(oy, ox, k),
                            v.round().clamp(0.0, 255.0) as u8,
                            "{pixel_box:?} ({oy}, {ox}, {k})"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn identity_crop_resize_is_exact_and_flip_mirrors() {
        let image = ramp(5, 4);
        assert_eq!(crop_resize(&image, (0, 0, 5, 4), false, 5, 4), image);
        let flipped = crop_resize(&image, (0, 0, 5, 4), true, 5, 4);
        assert_eq!(flipped.at(2, 0, 0), image.at(2, 3, 0));
    }

    /// 2x downscale of [[0, 10], [20, 30]]-style blocks: with half-pixel centres each output
    /// pixel sits between four input pixels (sy = 0.5), so it is their mean.
    #[test]
    fn bilinear_downscale_averages_neighbours() {
        let image = Image::new(2, 2, 1, vec![0, 10, 20, 30]);
        let out = crop_resize(&image, (0, 0, 2, 2), false, 1, 1);
        assert_eq!(out.pixels, vec![15]);
        // Upscale 1x2 -> 1x4: positions -0.25, 0.25, 0.75, 1.25 clamp to [0, 1]: 0, 2.5, 7.5, 10.
        let row = Image::new(1, 2, 1, vec![0, 10]);
        assert_eq!(crop_resize(&row, (0, 0, 1, 2), false, 1, 4).pixels, vec![0, 3, 8, 10]);
    }

    #[test]
    fn sampled_boxes_respect_the_ranges_and_rebuild_from_fractions() {
        let mut rng = stream(7, 0, 0);
        for _ in 0..500 {
            let (t, l, h, w) = sample_resized_crop_box(&mut rng, 28, 32, [0.08, 1.0], [0.75, 4.0 / 3.0]);
            assert!(t + h <= 28 && l + w <= 32 && h > 0 && w > 0);
            let fractions = CropBox::from_pixels((t, l, h, w), 28, 32);
            assert_eq!(fractions.to_pixels(28, 32), (t, l, h, w));
        }
    }

    #[test]
    fn pad_crop_shifts_with_zeros() {
        let image = Image::new(2, 2, 1, vec![1, 2, 3, 4]);
        // pad 1, window at (0, 0): the image moves down-right by one pixel.
        assert_eq!(pad_crop(&image, 1, 0, 0, false).pixels, vec![0, 0, 0, 1]);
        assert_eq!(pad_crop(&image, 1, 1, 1, true).pixels, vec![2, 1, 4, 3]);
    }

    /// Two MoCo v2 views of one image (1 channel, 28 pixels) from consecutive draws of one
    /// stream differ, have the output size, and a strength-0 setting with no crop range is the
    /// plain resize.
    #[test]
    fn moco_v2_views() {
        let image = ramp(28, 28);
        let t = Transform {
            augment: Augment::moco_v2(28, true),
            out_height: 28,
            out_width: 28,
            mean: vec![0.0],
            std: vec![1.0],
        };
        t.validate(1).unwrap();
        let mut rng = stream(3, 0, 0);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        t.apply_into(&image, &mut rng, &mut a);
        t.apply_into(&image, &mut rng, &mut b);
        assert_eq!((a.len(), b.len()), (784, 784));
        assert_ne!(a, b);
        let off = Augment::MocoV2 {
            scale: [1.0, 1.0],
            jitter: crate::photometric::ColourJitter {
                brightness: 0.0,
                contrast: 0.0,
                saturation: 0.0,
                hue: 0.0,
                probability: 1.0,
            },
            grayscale: 1.0,
            blur_sigma: [0.1, 0.1],
            blur: 0.0,
            flip: true,
        };
        let plain = Transform { augment: off, ..t.clone() };
        let mut out = Vec::new();
        plain.apply_into(&image, &mut rng, &mut out);
        let mirrored: Vec<f32> = (0..784).map(|i| image.at(i / 28, 27 - i % 28, 0) as f32 / 255.0).collect();
        let straight: Vec<f32> = image.pixels.iter().map(|&p| p as f32 / 255.0).collect();
        assert!(out == straight || out == mirrored);
        let Augment::MocoV2 { scale, jitter, blur_sigma, blur, flip, .. } = Augment::moco_v2(28, true) else {
            unreachable!()
        };
        let bad = Transform { augment: Augment::MocoV2 { scale, jitter, grayscale: 1.5, blur_sigma, blur, flip }, ..t };
        assert!(bad.validate(1).is_err());
    }

    /// A 3x4000 image's shorter side resized to 256 would be a 256x341333 image (262 MB); only
    /// the centre 224x224 is computed, and a uniform image stays uniform.
    #[test]
    fn thin_images_resize_only_the_centre() {
        let t = Transform {
            augment: Augment::ResizeCenterCrop { crop_fraction: 0.875 },
            out_height: 224,
            out_width: 224,
            mean: vec![0.0],
            std: vec![1.0],
        };
        let mut out = Vec::new();
        t.apply_into(&Image::new(3, 4000, 1, vec![51; 12000]), &mut stream(0, 0, 0), &mut out);
        assert_eq!(out.len(), 224 * 224);
        assert!(out.iter().all(|&v| (v - 0.2).abs() < 1e-6));
        assert_eq!(resize_center_crop_geometry(3, 4000, 256, 224, 224), ((256, 341333), (16, 170554, 224, 224)));
        // (341333 - 224) / 2 = 170554.5 rounds half to even, as Python's round.
    }

    #[test]
    fn normalisation_is_chw() {
        let t = Transform {
            augment: Augment::None,
            out_height: 1,
            out_width: 2,
            mean: vec![0.0, 0.5],
            std: vec![1.0, 0.5],
        };
        let image = Image::new(1, 2, 2, vec![255, 0, 0, 255]);
        let mut out = Vec::new();
        t.apply_into(&image, &mut stream(0, 0, 0), &mut out);
        assert_eq!(out, vec![1.0, 0.0, -1.0, 1.0]);
    }
}
