//! `kd-pack-labels merge`: shard files (`--shard i/n`) joined into one label file.

use super::pack::now_unix;
use anyhow::{Context, Result, ensure};
use kd_datasets::soft_labels::file::partial_path;
use kd_datasets::soft_labels::{LabelMeta, LabelWriter, RegionLabels};
use std::path::{Path, PathBuf};

pub fn merge(out: &Path, shards: &[PathBuf], force: bool) -> Result<()> {
    let mut parts: Vec<RegionLabels> = shards
        .iter()
        .map(|p| RegionLabels::open(p).with_context(|| format!("reading shard {}", p.display())))
        .collect::<Result<_>>()?;
    parts.sort_by_key(|p| p.meta.image_offset);
    let first = parts[0].meta.clone();
    let count = first.shard.map(|s| s.1).with_context(|| format!("{} is not a shard file", shards[0].display()))?;
    ensure!(parts.len() == count, "{count} shards expected, {} given", parts.len());
    let mut expected_offset = 0;
    for (i, part) in parts.iter().enumerate() {
        let normalised = LabelMeta {
            num_images: first.num_images,
            image_offset: 0,
            shard: None,
            created_unix: 0,
            ..part.meta.clone()
        };
        ensure!(
            normalised == LabelMeta { image_offset: 0, shard: None, created_unix: 0, ..first.clone() },
            "shard {} was packed with other settings than the first",
            shards[i].display()
        );
        ensure!(
            part.meta.shard == Some((i, count)) && part.meta.image_offset == expected_offset,
            "shards do not tile the dataset: shard {i} starts at image {}",
            part.meta.image_offset
        );
        expected_offset += part.meta.num_images;
    }
    ensure!(expected_offset == first.dataset.count, "shards cover {expected_offset} of {} images", first.dataset.count);
    let meta =
        LabelMeta { num_images: expected_offset, image_offset: 0, shard: None, created_unix: now_unix(), ..first };
    if !force && out.exists() {
        // The same merge again (a retried job) is a no-op; anything else is refused.
        ensure!(
            super::convert::holds_labels(out, &meta),
            "{} already exists (another label file or other shards); use --force to replace it",
            out.display()
        );
        tracing::info!("{} is already complete with these shards; nothing to do", out.display());
        outln!("{}: already complete ({} images)", out.display(), meta.num_images);
        return Ok(());
    }
    let _ = std::fs::remove_file(partial_path(out));
    let (mut writer, _) = LabelWriter::create_or_resume(out, &meta)?;
    for part in &parts {
        writer.write_block(part.meta.image_offset, &part.as_block())?;
    }
    writer.finish(out)?;
    outln!("{}: merged {} shards, {} images", out.display(), parts.len(), meta.num_images);
    Ok(())
}
