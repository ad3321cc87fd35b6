//! Reading image files: the header first (format and size), then the pixels, at full size or,
//! for JPEG, reduced by 2, 4 or 8 inside the inverse DCT (libjpeg's scaled decoding, which PIL's
//! `Image.draft` uses) when the crop taken from it keeps at least the output's pixels.
//!
//! JPEG goes through libjpeg-turbo's TurboJPEG API (`turbojpeg`, linked to the system's
//! libturbojpeg): it is the library PIL decodes with, so full-size pixels equal torchvision's,
//! it has SIMD inverse DCTs and colour conversion, and it scales in the DCT. Measured on 64
//! synthetic 500x375 quality-90 JPEGs (Intel Xeon, one thread): TurboJPEG 1194 images/s full
//! size and 1431 at 1/2, zune-jpeg 916 (no scaled decoding), jpeg-decoder 631 full and 715 at
//! 1/2, PIL 660 (docs/data.md). PNG, and JPEGs TurboJPEG cannot convert to RGB (CMYK and
//! YCCK), go through the `image` crate.

use crate::error::{DataError, Result};
use crate::image::Image;
use crate::transforms::{CropBox, PixelBox};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The largest image side decoded: a header claiming more is refused before any pixel is
/// allocated (a 1 KB file must not make the loader allocate gigabytes).
pub const MAX_SIDE: usize = 1 << 14;
/// The largest image file read, in bytes.
pub const MAX_FILE_BYTES: u64 = 1 << 28;
/// DCT reductions TurboJPEG decodes with its fast paths, largest first.
const REDUCTIONS: [usize; 3] = [8, 4, 2];

/// An image file read into memory, with its size from the header; pixels are decoded on
/// request.
#[derive(Debug)]
pub struct Encoded {
    path: PathBuf,
    bytes: Vec<u8>,
    jpeg: bool,
    /// Rows at full size.
    pub height: usize,
    /// Columns at full size.
    pub width: usize,
}

fn decode_error(path: &Path, message: impl Into<String>) -> DataError {
    DataError::Decode { path: path.into(), message: message.into() }
}

thread_local! {
    /// One TurboJPEG handle per loader thread, reused for every image it decodes.
    static DECOMPRESSOR: std::cell::RefCell<Option<turbojpeg::Decompressor>> = const { std::cell::RefCell::new(None) };
}

thread_local! {
    /// A decoded image's buffer handed back by [`recycle`], reused by this thread's next decode
    /// (a 500x375 RGB image is 560 KB: allocating and zeroing it per image costs page faults).
    static SPARE_PIXELS: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Hands a decoded image's pixels back for this thread's next decode.
pub fn recycle(pixels: Vec<u8>) {
    SPARE_PIXELS.with(|spare| spare.set(pixels));
}

fn with_decompressor<T>(path: &Path, f: impl FnOnce(&mut turbojpeg::Decompressor) -> Result<T>) -> Result<T> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(turbojpeg::Decompressor::new().map_err(|e| decode_error(path, e.to_string()))?);
        }
        f(slot.as_mut().expect("the handle was just created"))
    })
}

fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8])
}

impl Encoded {
    /// Reads `path` (at most [`MAX_FILE_BYTES`]) and its header.
    pub fn read(path: &Path) -> Result<Self> {
        let unreadable = |e: std::io::Error| decode_error(path, format!("unreadable: {e}"));
        let file = std::fs::File::open(path).map_err(unreadable)?;
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(unreadable)?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(decode_error(path, format!("the file is larger than {MAX_FILE_BYTES} bytes")));
        }
        Self::from_bytes(path, bytes)
    }

    /// Parses the header of an image file's `bytes` (`path` names it in errors).
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self> {
        if bytes.is_empty() {
            return Err(decode_error(path, "the file is empty"));
        }
        let jpeg_header = if is_jpeg(&bytes) {
            with_decompressor(path, |d| Ok(d.read_header(&bytes).ok()))?.filter(|h| {
                matches!(
                    h.colorspace,
                    turbojpeg::Colorspace::YCbCr | turbojpeg::Colorspace::Gray | turbojpeg::Colorspace::RGB
                )
            })
        } else {
            None
        };
        let (height, width, jpeg) = match jpeg_header {
            Some(header) => (header.height, header.width, true),
            None => {
                let reader = image::ImageReader::new(std::io::Cursor::new(&bytes))
                    .with_guessed_format()
                    .map_err(|e| decode_error(path, e.to_string()))?;
                let (w, h) = reader.into_dimensions().map_err(|e| decode_error(path, e.to_string()))?;
                (h as usize, w as usize, false)
            }
        };
        if height == 0 || width == 0 || height > MAX_SIDE || width > MAX_SIDE {
            return Err(decode_error(
                path,
                format!("the image is {width}x{height} pixels (at most {MAX_SIDE} a side)"),
            ));
        }
        Ok(Self { path: path.into(), bytes, jpeg, height, width })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The largest reduction (1, 2, 4 or 8) at which every crop in `boxes` (full-size pixel
    /// boxes) still has at least `out_h x out_w` pixels, so that no crop is enlarged more than
    /// at full size. 1 for files that are not JPEG.
    pub fn reduction_for(&self, boxes: &[PixelBox], out_h: usize, out_w: usize) -> usize {
        if !self.jpeg {
            return 1;
        }
        REDUCTIONS
            .into_iter()
            .find(|&r| boxes.iter().all(|&(_, _, h, w)| h / r >= out_h && w / r >= out_w))
            .unwrap_or(1)
    }

    /// Decodes to `channels` channels (1 = luma, 3 = RGB), reduced by `reduction` for JPEG
    /// (1, 2, 4 or 8; `ceil(side / reduction)` pixels a side). Truncated or corrupt data is an
    /// error naming the file (libjpeg's warnings included, as PIL raises on a truncated file).
    pub fn decode(&self, channels: usize, reduction: usize) -> Result<Image> {
        if !self.jpeg {
            return decode_other(&self.path, &self.bytes, channels);
        }
        let (h, w) = (self.height.div_ceil(reduction), self.width.div_ceil(reduction));
        let format = if channels == 1 { turbojpeg::PixelFormat::GRAY } else { turbojpeg::PixelFormat::RGB };
        let mut pixels = SPARE_PIXELS.with(|spare| spare.take());
        pixels.resize(h * w * channels, 0);
        let image =
            turbojpeg::Image { pixels: pixels.as_mut_slice(), width: w, pitch: w * channels, height: h, format };
        with_decompressor(&self.path, |d| {
            d.decompress(&self.bytes, image).map_err(|e| decode_error(&self.path, e.to_string()))
        })?;
        Ok(Image::new(h, w, channels, pixels))
    }

    /// `pixel_box` of the full-size image, in an image decoded at `reduced` (its height,
    /// width), with at least `out` pixels a side where the reduced image has them (rounding the
    /// box's edges may lose one, which would enlarge the crop [`Encoded::reduction_for`] chose
    /// to keep).
    pub fn box_in(&self, pixel_box: PixelBox, reduced: (usize, usize), out: (usize, usize)) -> PixelBox {
        if reduced == (self.height, self.width) {
            return pixel_box;
        }
        let (mut top, mut left, mut h, mut w) =
            CropBox::from_pixels(pixel_box, self.height, self.width).to_pixels(reduced.0, reduced.1);
        if h < out.0 {
            h = out.0.min(reduced.0);
            top = top.min(reduced.0 - h);
        }
        if w < out.1 {
            w = out.1.min(reduced.1);
            left = left.min(reduced.1 - w);
        }
        (top, left, h, w)
    }
}

/// Decodes PNG (8 or 16 bits, grey, RGB, with alpha) and the JPEGs TurboJPEG does not convert,
/// through the `image` crate, with the side limit applied before decoding.
fn decode_other(path: &Path, bytes: &[u8], channels: usize) -> Result<Image> {
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| decode_error(path, e.to_string()))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE as u32);
    limits.max_image_height = Some(MAX_SIDE as u32);
    reader.limits(limits);
    let decoded = reader.decode().map_err(|e| decode_error(path, e.to_string()))?;
    let (w, h) = (decoded.width() as usize, decoded.height() as usize);
    if w == 0 || h == 0 {
        return Err(decode_error(path, format!("the image is {w}x{h} pixels")));
    }
    let pixels = if channels == 1 { decoded.into_luma8().into_raw() } else { decoded.into_rgb8().into_raw() };
    Ok(Image::new(h, w, channels, pixels))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 40x24 RGB JPEG of smooth colour ramps, encoded by TurboJPEG at quality 95.
    fn jpeg(h: usize, w: usize) -> Vec<u8> {
        let pixels: Vec<u8> =
            (0..h * w).flat_map(|i| [(i % w * 255 / w) as u8, (i / w * 255 / h) as u8, 128]).collect();
        let image = turbojpeg::Image {
            pixels: pixels.as_slice(),
            width: w,
            pitch: w * 3,
            height: h,
            format: turbojpeg::PixelFormat::RGB,
        };
        turbojpeg::compress(image, 95, turbojpeg::Subsamp::Sub2x2).unwrap().to_vec()
    }

    #[test]
    fn reduced_decoding_has_the_scaled_size_and_the_same_picture() {
        let e = Encoded::from_bytes(Path::new("a.jpg"), jpeg(24, 40)).unwrap();
        assert_eq!((e.height, e.width), (24, 40));
        let full = e.decode(3, 1).unwrap();
        let half = e.decode(3, 2).unwrap();
        assert_eq!((half.height, half.width), (12, 20));
        // A smooth ramp: a reduced pixel is close to the mean of its 2x2 block at full size.
        let block =
            |y: usize, x: usize| (0..4).map(|k| full.at(2 * y + k / 2, 2 * x + k % 2, 0) as f32).sum::<f32>() / 4.0;
        assert!((half.at(5, 7, 0) as f32 - block(5, 7)).abs() <= 4.0, "{} vs {}", half.at(5, 7, 0), block(5, 7));
        assert_eq!(e.decode(1, 8).unwrap().channels, 1);
        assert_eq!((e.decode(1, 8).unwrap().height, e.decode(1, 8).unwrap().width), (3, 5));
    }

    #[test]
    fn reduction_keeps_at_least_the_output_pixels() {
        let e = Encoded::from_bytes(Path::new("a.jpg"), jpeg(24, 40)).unwrap();
        assert_eq!(e.reduction_for(&[(0, 0, 24, 40)], 3, 5), 8);
        assert_eq!(e.reduction_for(&[(0, 0, 24, 40)], 6, 5), 4);
        assert_eq!(e.reduction_for(&[(0, 0, 24, 40), (0, 0, 12, 12)], 6, 5), 2, "the smallest crop decides");
        assert_eq!(e.reduction_for(&[(0, 0, 7, 7)], 6, 5), 1);
        assert_eq!(e.box_in((4, 8, 12, 20), (12, 20), (6, 10)), (2, 4, 6, 10));
        // 13 rows ending at the bottom, at 1/2: 6.5 rows whose top rounds to 5.5; whichever way
        // the halves round, the box keeps 7 rows inside the 12.
        assert_eq!(e.box_in((11, 0, 13, 40), (12, 20), (7, 5)), (5, 0, 7, 20));
    }

    /// CMYK JPEGs (Adobe's YCCK, which TurboJPEG will not turn into RGB), 16-bit and grey
    /// PNGs all decode to RGB or grey.
    #[test]
    fn cmyk_jpeg_and_16_bit_png_decode() {
        let (h, w) = (8, 12);
        let cmyk: Vec<u8> = (0..h * w).flat_map(|i| [(i * 3) as u8, 40, 200, 10]).collect();
        let source = turbojpeg::Image {
            pixels: cmyk.as_slice(),
            width: w,
            pitch: w * 4,
            height: h,
            format: turbojpeg::PixelFormat::CMYK,
        };
        let bytes = turbojpeg::compress(source, 95, turbojpeg::Subsamp::None).unwrap().to_vec();
        let image = Encoded::from_bytes(Path::new("cmyk.jpg"), bytes).unwrap().decode(3, 2).unwrap();
        assert_eq!((image.height, image.width, image.channels), (8, 12, 3), "other decoders ignore the reduction");
        let dir = tempfile::tempdir().unwrap();
        let deep = image::ImageBuffer::<image::Rgb<u16>, _>::from_fn(5, 3, |x, y| {
            image::Rgb([x as u16 * 10000, y as u16 * 30000, 65535])
        });
        deep.save(dir.path().join("deep.png")).unwrap();
        let decoded = Encoded::read(&dir.path().join("deep.png")).unwrap().decode(3, 1).unwrap();
        assert_eq!((decoded.height, decoded.width), (3, 5));
        assert_eq!(decoded.pixels[2], 255, "65535 is full scale");
        let grey = Encoded::read(&dir.path().join("deep.png")).unwrap().decode(1, 1).unwrap();
        assert_eq!(grey.channels, 1);
    }

    #[test]
    fn bad_files_name_the_file() {
        let p = Path::new("x/bad.jpg");
        let empty = Encoded::from_bytes(p, Vec::new()).unwrap_err().to_string();
        assert!(empty.contains("bad.jpg") && empty.contains("empty"), "{empty}");
        let mut truncated = jpeg(24, 40);
        truncated.truncate(truncated.len() - 60);
        let e = Encoded::from_bytes(p, truncated).unwrap();
        let err = e.decode(3, 1).unwrap_err().to_string();
        assert!(err.contains("bad.jpg"), "{err}");
        let text = Encoded::from_bytes(p, b"hello".to_vec()).unwrap_err().to_string();
        assert!(text.contains("bad.jpg"), "{text}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

        /// A valid JPEG with bytes overwritten and its tail cut: pixels or an error naming the
        /// file, never a panic or an allocation beyond the side limit.
        #[test]
        fn mutated_jpeg_never_panics(edits in proptest::collection::vec((0usize..2000, proptest::prelude::any::<u8>()), 1..8), keep in 2usize..2000) {
            let mut bytes = jpeg(24, 40);
            for (at, value) in edits {
                let at = at % bytes.len();
                bytes[at] = value;
            }
            bytes.truncate(keep.min(bytes.len()));
            match Encoded::from_bytes(Path::new("m.jpg"), bytes) {
                Ok(e) => if let Err(err) = e.decode(3, 2) {
                    proptest::prop_assert!(err.to_string().contains("m.jpg"), "{}", err);
                },
                Err(err) => proptest::prop_assert!(err.to_string().contains("m.jpg"), "{}", err),
            }
        }
    }
}
