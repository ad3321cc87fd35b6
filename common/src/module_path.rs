//! The dotted path of a parameter while a visitor or mapper walks a module
//! (`layer1.0.conv1.weight`), built as burn-store builds it: enum variants are skipped, so the
//! path equals the checkpoint's tensor name before the PyTorch adapter renames it.

/// Path segments of the current position.
#[derive(Debug, Default)]
pub struct ModulePath(Vec<String>);

impl ModulePath {
    /// Call from `enter_module`.
    pub fn enter(&mut self, name: &str, container_type: &str) {
        if !container_type.starts_with("Enum:") {
            self.0.push(name.to_string());
        }
    }

    /// Call from `exit_module`.
    pub fn exit(&mut self, container_type: &str) {
        if !container_type.starts_with("Enum:") {
            self.0.pop();
        }
    }

    /// The dotted path.
    pub fn current(&self) -> String {
        self.0.join(".")
    }
}
