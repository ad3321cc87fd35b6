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

/// Image files with their labels.
pub type LabelledFiles = Vec<(PathBuf, u16)>;

/// Lists `dir/<class>/<image>`: class names and `(path, label)` pairs, in sorted order.
pub fn scan(dir: &Path) -> Result<(Vec<String>, LabelledFiles)> {
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
        items.extend(
            sorted_entries(class_dir)?.into_iter().filter(|p| p.is_file() && is_image(p)).map(|p| (p, label as u16)),
        );
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

/// The largest file list read, in bytes (ImageNet's training list is about 40 MB).
const MAX_LIST_BYTES: u64 = 1 << 30;

/// Reads a file list: `path label` lines (the path relative to the list's folder unless
/// absolute, the label a class index after the last whitespace); blank lines and `#` comments
/// are skipped. Every named file must exist.
fn read_list(list: &Path) -> Result<LabelledFiles> {
    use std::io::Read;
    let file = std::fs::File::open(list).map_err(|e| DataError::io(list, e))?;
    let mut text = String::new();
    file.take(MAX_LIST_BYTES + 1).read_to_string(&mut text).map_err(|e| DataError::io(list, e))?;
    if text.len() as u64 > MAX_LIST_BYTES {
        return Err(DataError::Invalid(format!("{}: a file list above {MAX_LIST_BYTES} bytes", list.display())));
    }
    let base = list.parent().unwrap_or(Path::new("."));
    let mut items = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |message: String| DataError::Invalid(format!("{} line {}: {message}", list.display(), number + 1));
        let (path, label) =
            line.rsplit_once(char::is_whitespace).ok_or_else(|| bad(format!("`{line}` is not `path label`")))?;
        let label: u16 =
            label.parse().map_err(|_| bad(format!("label `{label}` is not a class index below {}", u16::MAX)))?;
        let path = base.join(path.trim());
        if !path.is_file() {
            return Err(bad(format!("{} does not exist", path.display())));
        }
        items.push((path, label));
    }
    if items.is_empty() {
        return Err(DataError::Invalid(format!("{}: the file list names no image", list.display())));
    }
    Ok(items)
}

/// Opens a split given by file lists in `root`: `train.txt` and `val.txt` of `path label` lines,
/// with class names from `classes.txt` (one per line, in label order) when present, else the
/// labels `0 ..= the largest label of either list`.
pub fn open_lists(root: &Path, split: &str, channels: usize) -> Result<Dataset> {
    let list = root.join(if split == "train" { "train.txt" } else { "val.txt" });
    let items = read_list(&list)?;
    let names_file = root.join("classes.txt");
    let classes: Vec<String> = if names_file.is_file() {
        let text = std::fs::read_to_string(&names_file).map_err(|e| DataError::io(&names_file, e))?;
        text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect()
    } else {
        let largest = ["train.txt", "val.txt"]
            .iter()
            .map(|name| read_list(&root.join(name)).map(|l| l.iter().map(|(_, label)| *label).max().unwrap_or(0)))
            .collect::<Result<Vec<u16>>>()?;
        (0..=largest.into_iter().max().unwrap_or(0)).map(|c| c.to_string()).collect()
    };
    if classes.len() < 2 {
        return Err(DataError::Invalid(format!("{}: a file list needs at least two classes", root.display())));
    }
    if let Some((path, label)) = items.iter().find(|(_, label)| *label as usize >= classes.len()) {
        return Err(DataError::Invalid(format!(
            "{}: label {label} of {} is beyond the {} classes of {}",
            list.display(),
            path.display(),
            classes.len(),
            names_file.display()
        )));
    }
    let (paths, labels): (Vec<PathBuf>, Vec<u16>) = items.into_iter().unzip();
    Dataset::new(&format!("folder:{}", root.display()), split, classes, Storage::Files { paths, channels }, labels)
}

/// Opens every PNG/JPEG file under `dir` (recursively, sorted) as one unlabeled split: a single
/// class `unlabeled`, label 0 for all (callers relabel, for example with a teacher's argmax).
pub fn open_unlabeled(dir: &Path, channels: usize) -> Result<Dataset> {
    let mut paths = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for path in sorted_entries(&next)? {
            if path.is_dir() {
                pending.push(path);
            } else if is_image(&path) {
                paths.push(path);
            }
        }
    }
    paths.sort();
    if paths.is_empty() {
        return Err(DataError::Invalid(format!("{}: no PNG or JPEG file in the folder or below it", dir.display())));
    }
    let labels = vec![0; paths.len()];
    Dataset::new(
        &format!("folder:{}", dir.display()),
        "unlabeled",
        vec!["unlabeled".into()],
        Storage::Files { paths, channels },
        labels,
    )
}

/// Decodes an image file to `channels` channels (1 = luma, 3 = RGB) at full size.
pub fn decode(path: &Path, channels: usize) -> Result<Image> {
    crate::decode::Encoded::read(path)?.decode(channels, 1)
}

/// Decodes the bytes of an image file (`path` names it in errors) at full size. Images above
/// [`crate::decode::MAX_SIDE`] pixels a side are refused before any pixel is decoded.
pub fn decode_bytes(path: &Path, bytes: &[u8], channels: usize) -> Result<Image> {
    crate::decode::Encoded::from_bytes(path, bytes.to_vec())?.decode(channels, 1)
}

/// Writes an 8-bit image as PNG (used by tests to make small folders).
pub fn write_png(path: &Path, image: &Image) -> Result<()> {
    let color = if image.channels == 1 { image::ExtendedColorType::L8 } else { image::ExtendedColorType::Rgb8 };
    image::save_buffer(path, &image.pixels, image.width as u32, image.height as u32, color)
        .map_err(|e| DataError::Decode { path: path.into(), message: e.to_string() })
}

/// Writes an 8-bit image as JPEG at `quality` with 4:2:0 chroma subsampling (as cameras and
/// most of ImageNet; grey images as one channel), through TurboJPEG. Benchmarks and tests make
/// folders with it.
pub fn write_jpeg(path: &Path, image: &Image, quality: u8) -> Result<()> {
    let (format, subsampling) = match image.channels {
        1 => (turbojpeg::PixelFormat::GRAY, turbojpeg::Subsamp::Gray),
        _ => (turbojpeg::PixelFormat::RGB, turbojpeg::Subsamp::Sub2x2),
    };
    let source = turbojpeg::Image {
        pixels: image.pixels.as_slice(),
        width: image.width,
        pitch: image.width * image.channels,
        height: image.height,
        format,
    };
    let bytes = turbojpeg::compress(source, quality as i32, subsampling)
        .map_err(|e| DataError::Decode { path: path.into(), message: e.to_string() })?;
    std::fs::write(path, &*bytes).map_err(|e| DataError::io(path, e))
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
    fn unlabeled_folder_is_read_recursively_and_joins_a_labeled_set() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("x/y")).unwrap();
        write_png(&dir.path().join("x/y/1.png"), &Image::new(2, 2, 1, vec![7; 4])).unwrap();
        write_png(&dir.path().join("0.png"), &Image::new(3, 3, 1, vec![9; 9])).unwrap();
        let unlabeled = open_unlabeled(dir.path(), 1).unwrap();
        assert_eq!(unlabeled.len(), 2);
        let labeled = Dataset::new(
            "m",
            "train",
            vec!["a".into(), "b".into()],
            Storage::Memory { pixels: vec![1, 2, 3, 4], height: 1, width: 2, channels: 1 },
            vec![1, 0],
        )
        .unwrap();
        let relabeled = unlabeled.relabel(&[1, 0], labeled.classes.clone()).unwrap();
        let joined = labeled.subset(&[1], "train").join(&relabeled, "train+unlabeled").unwrap();
        assert_eq!(joined.len(), 3);
        assert_eq!(joined.labels(), vec![0, 1, 0]);
        assert_eq!(joined.image(0).unwrap().pixels, vec![3, 4]);
        assert_eq!(joined.image(1).unwrap().pixels, vec![9; 9], "sorted: 0.png before x/y/1.png");
        assert_eq!(joined.image(2).unwrap().pixels, vec![7; 4]);
        assert_ne!(joined.identity().list_hash, labeled.identity().list_hash);
        assert!(relabeled.relabel(&[2, 0], vec!["a".into(), "b".into()]).is_err(), "label beyond the classes");
    }

    /// `train.txt` / `val.txt` with labels, a comment and a blank line; classes from the
    /// largest label, then from `classes.txt`; a missing file and a bad label name the line.
    #[test]
    fn file_lists_name_their_images() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("img")).unwrap();
        for i in 0..3 {
            write_png(&dir.path().join(format!("img/{i}.png")), &Image::new(2, 2, 1, vec![i * 50; 4])).unwrap();
        }
        std::fs::write(dir.path().join("train.txt"), "# path label\nimg/0.png 0\n\nimg/1.png 2\n").unwrap();
        std::fs::write(dir.path().join("val.txt"), "img/2.png 1\n").unwrap();
        let train = open_lists(dir.path(), "train", 1).unwrap();
        assert_eq!((train.len(), train.classes.len(), train.labels()), (2, 3, vec![0, 2]));
        assert_eq!(train.image(1).unwrap().pixels, vec![50; 4]);
        std::fs::write(dir.path().join("classes.txt"), "cat\ndog\nemu\nfox\n").unwrap();
        assert_eq!(open_lists(dir.path(), "val", 1).unwrap().classes, vec!["cat", "dog", "emu", "fox"]);
        std::fs::write(dir.path().join("val.txt"), "img/2.png 1\nimg/9.png 0\n").unwrap();
        let err = open_lists(dir.path(), "val", 1).unwrap_err().to_string();
        assert!(err.contains("val.txt line 2") && err.contains("9.png does not exist"), "{err}");
        std::fs::write(dir.path().join("val.txt"), "img/2.png one\n").unwrap();
        let err = open_lists(dir.path(), "val", 1).unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("`one`"), "{err}");
        std::fs::write(dir.path().join("val.txt"), "img/2.png 7\n").unwrap();
        let err = open_lists(dir.path(), "val", 1).unwrap_err().to_string();
        assert!(err.contains("label 7") && err.contains("4 classes"), "{err}");
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

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

        /// A valid PNG with bytes overwritten and its tail cut: an image or a decode error
        /// naming the file, never a panic.
        #[test]
        fn mutated_png_never_panics(edits in proptest::collection::vec((0usize..400, proptest::prelude::any::<u8>()), 1..8), keep in 8usize..400) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("a.png");
            let image = Image::new(5, 7, 3, (0..105).map(|i| (i * 37 % 256) as u8).collect());
            write_png(&path, &image).unwrap();
            let mut bytes = std::fs::read(&path).unwrap();
            for (at, value) in edits {
                let at = at % bytes.len();
                bytes[at] = value;
            }
            bytes.truncate(keep.min(bytes.len()));
            if let Err(e) = decode_bytes(&path, &bytes, 1) {
                proptest::prop_assert!(e.to_string().contains("a.png"), "{}", e);
            }
        }
    }
}
