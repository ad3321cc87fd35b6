//! `--shard`: which slice of the images one packing process labels. `i/n` names it; `auto`
//! takes it from a Slurm job array (`SLURM_ARRAY_TASK_ID` minus `SLURM_ARRAY_TASK_MIN`, of
//! `SLURM_ARRAY_TASK_COUNT`); `auto/n` takes the index from a Kubernetes Indexed Job
//! (`JOB_COMPLETION_INDEX`) or a Slurm array, with the count given. `{shard}` in `--out` becomes
//! the index, so one command line serves every task of the array.

use anyhow::{Context, Result, bail, ensure};
use std::path::{Path, PathBuf};

/// Parses `--shard` with `env` reading the environment (a parameter for tests).
pub fn resolve(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<(usize, usize)> {
    let number = |name: &str| -> Result<Option<usize>> {
        env(name).map(|v| v.trim().parse::<usize>().with_context(|| format!("{name}=`{v}` is not a count"))).transpose()
    };
    let slurm_index = || -> Result<Option<usize>> {
        let Some(id) = number("SLURM_ARRAY_TASK_ID")? else { return Ok(None) };
        let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let step = number("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
        ensure!(id >= min, "SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}");
        ensure!((id - min) % step == 0, "SLURM_ARRAY_TASK_ID {id} is not MIN {min} plus a multiple of STEP {step}");
        if let (Some(max), Some(count)) = (number("SLURM_ARRAY_TASK_MAX")?, number("SLURM_ARRAY_TASK_COUNT")?) {
            ensure!(
                max >= min && (max - min) / step + 1 == count,
                "the Slurm array is not the range {min}-{max}:{step} of {count} tasks (a list of IDs?); \
                 use --array=0-N or --shard i/n"
            );
        }
        Ok(Some((id - min) / step))
    };
    let (index, count) = match text.split_once('/') {
        None if text == "auto" => {
            let index = slurm_index()?;
            let count = number("SLURM_ARRAY_TASK_COUNT")?;
            match (index, count) {
                (Some(index), Some(count)) => (index, count),
                _ => bail!(
                    "--shard auto: SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT are not set (not a Slurm job \
                     array); in a Kubernetes Indexed Job give the count: --shard auto/N"
                ),
            }
        }
        Some(("auto", count)) => {
            let count: usize = count.parse().with_context(|| format!("--shard {text}: the count is not a number"))?;
            let index = match number("JOB_COMPLETION_INDEX")? {
                Some(index) => index,
                None => slurm_index()?.with_context(|| {
                    format!("--shard {text}: neither JOB_COMPLETION_INDEX (Kubernetes) nor SLURM_ARRAY_TASK_ID is set")
                })?,
            };
            if let Some(slurm_count) = number("SLURM_ARRAY_TASK_COUNT")?
                && env("JOB_COMPLETION_INDEX").is_none()
            {
                ensure!(slurm_count == count, "--shard {text}: the Slurm array has {slurm_count} tasks");
            }
            (index, count)
        }
        Some((i, n)) => (
            i.parse().with_context(|| format!("--shard {text}: the index is not a number"))?,
            n.parse().with_context(|| format!("--shard {text}: the count is not a number"))?,
        ),
        None => bail!("--shard `{text}` is not i/n, auto or auto/n"),
    };
    ensure!(count > 0 && index < count, "--shard {text}: index {index} must be below the count {count}");
    Ok((index, count))
}

/// `out` with `{shard}` replaced by the shard's index.
pub fn output_path(out: &Path, shard: Option<(usize, usize)>) -> Result<PathBuf> {
    let text = out.to_string_lossy();
    if !text.contains("{shard}") {
        return Ok(out.to_path_buf());
    }
    let (index, _) = shard.with_context(|| format!("--out {text}: `{{shard}}` needs --shard"))?;
    Ok(PathBuf::from(text.replace("{shard}", &index.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn explicit_slurm_and_kubernetes_shards() {
        assert_eq!(resolve("2/8", env(&[])).unwrap(), (2, 8));
        // `sbatch --array=1-4`: IDs 1..4, minimum 1.
        let slurm = [("SLURM_ARRAY_TASK_ID", "3"), ("SLURM_ARRAY_TASK_MIN", "1"), ("SLURM_ARRAY_TASK_COUNT", "4")];
        assert_eq!(resolve("auto", env(&slurm)).unwrap(), (2, 4));
        // `--array=0-12:4`: IDs 0, 4, 8, 12 are shards 0..3; `--array=1,3,8` is refused.
        let stepped = [
            ("SLURM_ARRAY_TASK_ID", "8"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "12"),
            ("SLURM_ARRAY_TASK_STEP", "4"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ];
        assert_eq!(resolve("auto", env(&stepped)).unwrap(), (2, 4));
        let list = [
            ("SLURM_ARRAY_TASK_ID", "8"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_MAX", "8"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ];
        assert!(resolve("auto", env(&list)).unwrap_err().to_string().contains("not the range"));
        assert_eq!(resolve("auto/4", env(&slurm)).unwrap(), (2, 4));
        assert!(resolve("auto/5", env(&slurm)).unwrap_err().to_string().contains("4 tasks"));
        assert_eq!(resolve("auto/6", env(&[("JOB_COMPLETION_INDEX", "5")])).unwrap(), (5, 6));
        let err = resolve("auto", env(&[("JOB_COMPLETION_INDEX", "0")])).unwrap_err().to_string();
        assert!(err.contains("auto/N"), "{err}");
        assert!(resolve("auto/2", env(&[("JOB_COMPLETION_INDEX", "2")])).is_err(), "index beyond the count");
        assert!(resolve("auto/2", env(&[])).is_err());
        assert!(resolve("1/0", env(&[])).is_err());
        assert!(resolve("x", env(&[])).is_err());
        assert!(resolve("auto/2", env(&[("JOB_COMPLETION_INDEX", "one")])).unwrap_err().to_string().contains("one"));
    }

    #[test]
    fn out_names_the_shard() {
        assert_eq!(output_path(Path::new("l-{shard}.h5"), Some((3, 8))).unwrap(), Path::new("l-3.h5"));
        assert_eq!(output_path(Path::new("l.h5"), Some((3, 8))).unwrap(), Path::new("l.h5"));
        assert!(output_path(Path::new("l-{shard}.h5"), None).is_err());
    }
}
