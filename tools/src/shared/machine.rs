//! The machine a measurement ran on, for the provenance of reports and benchmark tables.

/// The CPU's model name from `/proc/cpuinfo` (e.g. "AMD EPYC"), `None` where it is not readable.
pub fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("model name"))?;
    line.split_once(':').map(|(_, model)| model.trim().to_string())
}
