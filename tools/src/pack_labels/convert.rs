//! `kd-pack-labels convert`: a label file re-compressed as another FKD type without running the
//! teacher again (the same crops; see `kd_datasets::soft_labels::recompress` for which types a
//! file can give). Written like a packed file: `<out>.partial`, renamed when complete.

use super::pack::now_unix;
use anyhow::{Context, Result, ensure};
use kd_datasets::soft_labels::file::partial_path;
use kd_datasets::soft_labels::recompress::{check_derivable, recompress};
use kd_datasets::soft_labels::{
    Compression, LabelBlock, LabelMeta, LabelType, LabelWriter, ProbEncoding, RegionLabels,
};
use std::path::Path;

/// The compression to convert to.
pub struct Target {
    /// Type.
    pub label_type: LabelType,
    /// K of the top-K types (default: the source's K, or FKD's 5 capped at classes - 1).
    pub top_k: Option<usize>,
    /// Probability encoding (default: the source's).
    pub encoding: Option<ProbEncoding>,
}

/// Whether `path` is a complete label file with `meta` (its creation time and tool aside).
pub fn holds_labels(path: &Path, meta: &LabelMeta) -> bool {
    let comparable = |m: &LabelMeta| LabelMeta { created_unix: 0, tool: String::new(), ..m.clone() };
    RegionLabels::open(path).is_ok_and(|existing| comparable(&existing.meta) == comparable(meta))
}

/// Converts `input` into `out`; returns the summary that the tool prints.
pub fn convert(input: &Path, out: &Path, target: &Target, force: bool) -> Result<serde_json::Value> {
    let labels = RegionLabels::open(input).with_context(|| format!("reading {}", input.display()))?;
    let from = labels.meta.compression;
    let classes = labels.meta.num_classes;
    let default_k = match from.label_type {
        LabelType::MarginalSmoothing | LabelType::MarginalRenorm => from.k,
        _ => 5.min(classes - 1),
    };
    let to = Compression {
        label_type: target.label_type,
        k: target.top_k.unwrap_or(default_k),
        encoding: target.encoding.unwrap_or(from.encoding),
    };
    check_derivable(&from, &to, classes).with_context(|| format!("converting {}", input.display()))?;
    let meta = LabelMeta {
        compression: to,
        tool: format!("kd-pack-labels {} convert", env!("CARGO_PKG_VERSION")),
        created_unix: now_unix(),
        ..labels.meta.clone()
    };
    if !force && out.exists() {
        // The same conversion again (a retried job) is a no-op; anything else is refused.
        ensure!(
            holds_labels(out, &meta),
            "{} already exists (another label file or other settings); use --force to replace it",
            out.display()
        );
        tracing::info!("{} is already complete with these settings; nothing to do", out.display());
        return Ok(serde_json::json!({"input": input, "out": out, "already_complete": true}));
    }
    let mut block = LabelBlock { indices: Vec::new(), probs: Vec::new(), ..labels.as_block() };
    for image in 0..meta.num_images {
        for crop in 0..meta.crops_per_image {
            let (indices, probs) = labels.raw(image, crop);
            let encoded = recompress(&from, &to, indices, probs, classes);
            block.indices.extend_from_slice(&encoded.indices);
            block.probs.extend_from_slice(&encoded.probs);
        }
    }
    let _ = std::fs::remove_file(partial_path(out));
    let (mut writer, _) = LabelWriter::create_or_resume(out, &meta)?;
    writer.write_block(0, &block)?;
    writer.finish(out)?;
    let crops = (meta.num_images * meta.crops_per_image).max(1) as f64;
    let size = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    Ok(serde_json::json!({
        "input": input,
        "out": out,
        "images": meta.num_images,
        "crops_per_image": meta.crops_per_image,
        "label_type": to.label_type.name(),
        "top_k": meta.k_indices(),
        "prob_encoding": to.encoding.name(),
        "raw_bytes_per_crop": meta.raw_bytes_per_crop(),
        "file_bytes_per_crop": size as f64 / crops,
        "input_file_bytes_per_crop": std::fs::metadata(input).map(|m| m.len()).unwrap_or(0) as f64 / crops,
    }))
}
