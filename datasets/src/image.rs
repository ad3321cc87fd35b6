//! An 8-bit image in height x width x channels order.

/// Pixels in row-major HWC order, one byte per channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// Channels (1 grey, 3 RGB).
    pub channels: usize,
    /// `height * width * channels` bytes.
    pub pixels: Vec<u8>,
}

impl Image {
    /// Wraps pixels; panics if the length does not match the shape (an invariant of callers).
    pub fn new(height: usize, width: usize, channels: usize, pixels: Vec<u8>) -> Self {
        assert_eq!(pixels.len(), height * width * channels, "pixel buffer should match the image shape");
        Self { height, width, channels, pixels }
    }

    /// The byte at row `y`, column `x`, channel `c`.
    #[inline]
    pub fn at(&self, y: usize, x: usize, c: usize) -> u8 {
        self.pixels[(y * self.width + x) * self.channels + c]
    }
}
