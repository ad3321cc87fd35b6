//! Image folders in the ImageNet layout: one sub-folder per class holding PNG or JPEG files.
//! Either `root/<class>/*` (split into train and validation with a seeded shuffle), or
//! `root/train/<class>/*` with `root/val/<class>/*`.

use crate::dataset::{Dataset, Storage};
use crate::error::{DataError, Result};
use crate::image::Image;
use std::path::{Path, PathBuf};

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .map(|entry| entry.map(|e| e.path()).map_err(|e| DataError::io(dir, e)))
        .collect::<Result<_>>()?;
    entries.sort();
    Ok(entries)
}

/// Lists `dir/<class>/<image>`: class names and `(path, label)` pairs, in sorted order.
pub fn scan(dir: &Path) -> Result<(Vec<String>, Vec<(PathBuf, u16)>)> {
    let classes: Vec<PathBuf> = sorted_entries(dir)?.into_iter().filter(|p| p.is_dir()).collect();
    if classes.len() < 2 {
        return Err(DataError::Invalid(format!(
            "{}: an image folder needs at least two class sub-folders, found {}",
            dir.display(),
            classes.len()
        )));
    }
    if classes.len() > u16::MAX as usize {
        return Err(DataError::Invalid(format!("{}: more than {} classes", dir.display(), u16::MAX)));
    }
    let mut items = Vec::new();
    for (label, class_dir) in classes.iter().enumerate() {
        let before = items.len();
        items.extend(sorted_entries(class_dir)?.into_iter().filter(|p| p.is_file() && is_image(p)).map(|p| (p, label as u16)));
        if items.len() == before {
            return Err(DataError::Invalid(format!("{}: class folder holds no PNG or JPEG file", class_dir.display())));
        }
    }
    let names = classes.iter().map(|p| p.file_name().unwrap_or_default().to_string_lossy().into_owned()).collect();
    Ok((names, items))
}

/// Opens `dir` as one dataset of image files with `channels` channels.
pub fn open(dir: &Path, split: &str, channels: usize) -> Result<Dataset> {
    let (classes, items) = scan(dir)?;
    let (paths, labels): (Vec<PathBuf>, Vec<u16>) = items.into_iter().unzip();
    Dataset::new(&format!("folder:{}", dir.display()), split, classes, Storage::Files { paths, channels }, labels)
}

/// Decodes an image file to `channels` channels (1 = luma, 3 = RGB).
pub fn decode(path: &Path, channels: usize) -> Result<Image> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let decoded = image::load_from_memory(&bytes).map_err(|e| DataError::Decode { path: path.into(), message: e.to_string() })?;
    let (w, h) = (decoded.width() as usize, decoded.height() as usize);
    let pixels = if channels == 1 { decoded.into_luma8().into_raw() } else { decoded.into_rgb8().into_raw() };
    Ok(Image::new(h, w, channels, pixels))
}

/// Writes an 8-bit image as PNG (used by tests to make small folders).
pub fn write_png(path: &Path, image: &Image) -> Result<()> {
    let color = if image.channels == 1 { image::ExtendedColorType::L8 } else { image::ExtendedColorType::Rgb8 };
    image::save_buffer(path, &image.pixels, image.width as u32, image.height as u32, color)
        .map_err(|e| DataError::Decode { path: path.into(), message: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_sorted_classes_and_decodes() {
        let dir = tempfile::tempdir().unwrap();
        for (class, value) in [("b_dog", 200u8), ("a_cat", 10u8)] {
            std::fs::create_dir(dir.path().join(class)).unwrap();
            for i in 0..2 {
                let image = Image::new(3, 4, 3, vec![value + i; 36]);
                write_png(&dir.path().join(class).join(format!("{i}.png")), &image).unwrap();
            }
        }
        std::fs::write(dir.path().join("a_cat").join("notes.txt"), "skip me").unwrap();
        let data = open(dir.path(), "train", 3).unwrap();
        assert_eq!(data.classes, vec!["a_cat", "b_dog"]);
        assert_eq!(data.len(), 4);
        assert_eq!(data.labels(), vec![0, 0, 1, 1]);
        let image = data.image(3).unwrap();
        assert_eq!((image.height, image.width, image.pixels[0]), (3, 4, 201));
        let grey = open(dir.path(), "train", 1).unwrap().image(0).unwrap();
        assert_eq!(grey.channels, 1);
    }

    #[test]
    fn corrupt_image_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        for class in ["a", "b"] {
            std::fs::create_dir(dir.path().join(class)).unwrap();
            std::fs::write(dir.path().join(class).join("x.png"), b"not a png").unwrap();
        }
        let err = open(dir.path(), "train", 3).unwrap().image(0).unwrap_err().to_string();
        assert!(err.contains("x.png") && err.contains("cannot decode"), "{err}");
    }
}
