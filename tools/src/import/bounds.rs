//! What a foreign weights file may make `kd-import` allocate, checked before anything is read
//! into memory: the tensors it declares and, for PyTorch's zip archives, the bytes its entries
//! inflate to, each at most [`BYTES_PER_PARAMETER`] bytes per parameter of the architecture plus
//! [`SLACK_BYTES`]. That leaves room for whole training checkpoints (optimizer state, EMA
//! weights, all in f64) and refuses a 1 KB file whose stride-0 tensor expands to gigabytes, or
//! a deflated storage that inflates to gigabytes.

use anyhow::{Context, Result, ensure};
use burn::store::{ModuleStore, PytorchStore};
use std::path::Path;

/// Bytes a file may declare per parameter of the architecture: 16 f64 copies of the weights.
pub const BYTES_PER_PARAMETER: u64 = 16 * 8;
/// Bytes a file may declare beyond that (pickled metadata, small extra tensors).
pub const SLACK_BYTES: u64 = 16 << 20;

/// The budget of an architecture with `parameters` parameters.
pub fn budget(parameters: usize) -> u64 {
    (parameters as u64).saturating_mul(BYTES_PER_PARAMETER).saturating_add(SLACK_BYTES)
}

/// Checks a PyTorch file (zip archive or legacy pickle) against `budget` bytes.
pub fn check_pytorch(path: &Path, budget: u64) -> Result<()> {
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    if let Ok(mut archive) = zip::ZipArchive::new(file) {
        let mut inflated = 0u64;
        for i in 0..archive.len() {
            let entry =
                archive.by_index_raw(i).with_context(|| format!("{}: a damaged zip archive", path.display()))?;
            inflated = inflated.saturating_add(entry.size());
        }
        ensure!(
            inflated <= budget,
            "{}: its entries inflate to {inflated} bytes, more than {budget} for this architecture \
             (a damaged or hostile file)",
            path.display()
        );
    }
    let mut store = PytorchStore::from_file(path).map_indices_contiguous(false);
    let tensors =
        store.get_all_tensors().map_err(|e| anyhow::anyhow!("{}: not a readable PyTorch file: {e}", path.display()))?;
    let mut declared = 0u64;
    for tensor in tensors.values() {
        // The product of a hostile shape may overflow: saturate instead.
        let elements = tensor.shape.as_slice().iter().fold(1u64, |product, &d| product.saturating_mul(d as u64));
        let bytes = elements.saturating_mul(tensor.dtype.size() as u64);
        declared = declared.saturating_add(bytes);
        ensure!(
            declared <= budget,
            "{}: tensor `{}` of shape {:?} takes the file's tensors past {budget} bytes for this \
             architecture (a damaged or hostile file)",
            path.display(),
            tensor.name,
            tensor.shape.as_slice()
        );
    }
    Ok(())
}
