//! PNG charts for the report, drawn with `plotters` into an RGB buffer (800 x 500 pixels, DejaVu
//! Sans embedded, so no system fonts are needed) and written with the workspace's PNG encoder.

use anyhow::{Result, anyhow};
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

/// Chart size in pixels.
pub const SIZE: (u32, u32) = (800, 500);
pub(super) const FONT: &str = "sans-serif";
/// Width of the legend panel on the right.
const LEGEND_WIDTH: u32 = 200;

/// A named set of points.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend entry.
    pub label: String,
    /// (x, y) points, in drawing order.
    pub points: Vec<(f64, f64)>,
}

/// How a chart draws its series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Lines through markers (curves over epochs).
    Lines,
    /// Markers only (one point per method).
    Points,
}

/// A chart: title, axis labels, series.
#[derive(Clone, Debug)]
pub struct Chart {
    /// Caption.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// The data.
    pub series: Vec<Series>,
    /// Lines or points.
    pub style: Style,
}

pub(super) fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok());
    if ok { Ok(()) } else { Err(anyhow!("the embedded DejaVu Sans font could not be loaded")) }
}

/// The range of `values` widened by 5% on each side (or by 1 around a single value).
pub(super) fn padded_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi > lo { 0.05 * (hi - lo) } else { 1.0f64.max(lo.abs() * 0.01) };
    (lo - pad, hi + pad)
}

/// The largest magnitude a plotted coordinate may have. Metrics live far inside it; beyond it
/// (or at infinity, or NaN) plotters' axis key points do not terminate, so such points are
/// dropped with a warning.
const MAX_COORDINATE: f64 = 1e15;

/// `chart` without the points it cannot draw (non-finite or beyond [`MAX_COORDINATE`]).
fn drawable(chart: &Chart) -> Chart {
    let fits = |v: f64| v.is_finite() && v.abs() <= MAX_COORDINATE;
    let mut dropped = 0;
    let series = chart
        .series
        .iter()
        .map(|s| {
            let points: Vec<_> = s.points.iter().copied().filter(|&(x, y)| fits(x) && fits(y)).collect();
            dropped += s.points.len() - points.len();
            Series { label: s.label.clone(), points }
        })
        .collect();
    if dropped > 0 {
        tracing::warn!("{}: {dropped} point(s) not drawn (not finite, or beyond +-{MAX_COORDINATE:e})", chart.title);
    }
    Chart { series, ..chart.clone() }
}

/// Draws `chart` into an RGB buffer of [`SIZE`].
pub fn render(chart: &Chart) -> Result<Vec<u8>> {
    register_font()?;
    let chart = &drawable(chart);
    let mut buffer = vec![255u8; (SIZE.0 * SIZE.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, SIZE).into_drawing_area();
        let fail = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", chart.title);
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        // The plot on the left, the legend in a panel of its own on the right (never over data).
        let (plot_area, legend_area) = root.split_horizontally(SIZE.0 - LEGEND_WIDTH);
        let points = || chart.series.iter().flat_map(|s| s.points.iter());
        let (x0, x1) = padded_range(points().map(|p| p.0));
        let (y0, y1) = padded_range(points().map(|p| p.1));
        let mut context = ChartBuilder::on(&plot_area)
            .caption(&chart.title, (FONT, 22))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(65)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| fail(&e))?;
        context
            .configure_mesh()
            .x_desc(&chart.x_label)
            .y_desc(&chart.y_label)
            .label_style((FONT, 15))
            .axis_desc_style((FONT, 17))
            .light_line_style(TRANSPARENT)
            .draw()
            .map_err(|e| fail(&e))?;
        for (i, series) in chart.series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            if chart.style == Style::Lines {
                context
                    .draw_series(LineSeries::new(series.points.iter().copied(), color.stroke_width(2)))
                    .map_err(|e| fail(&e))?;
            }
            context
                .draw_series(series.points.iter().map(|&p| Circle::new(p, 4, color.filled())))
                .map_err(|e| fail(&e))?;
            let y = 50 + 24 * i as i32;
            legend_area.draw(&Circle::new((12, y), 5, color.filled())).map_err(|e| fail(&e))?;
            legend_area
                .draw(&Text::new(series.label.as_str(), (24, y - 7), (FONT, 15).into_font().color(&BLACK)))
                .map_err(|e| fail(&e))?;
        }
        root.present().map_err(|e| fail(&e))?;
    }
    Ok(buffer)
}

/// Draws `chart` and writes it to `path` as PNG (through a temporary name).
pub fn write_png(chart: &Chart, path: &Path) -> Result<()> {
    write_rgb_png(render(chart)?, path)
}

/// Writes an RGB buffer of [`SIZE`] to `path` as PNG (through a temporary name).
pub fn write_rgb_png(buffer: Vec<u8>, path: &Path) -> Result<()> {
    let image = kd_datasets::image::Image::new(SIZE.1 as usize, SIZE.0 as usize, 3, buffer);
    let temp = path.with_extension("tmp.png");
    kd_datasets::folder::write_png(&temp, &image)?;
    std::fs::rename(&temp, path).map_err(|e| anyhow!("renaming {} to {}: {e}", temp.display(), path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unplottable_points_are_dropped_not_hung_on() {
        let chart = Chart {
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            series: vec![Series {
                label: "s".into(),
                points: vec![
                    (0.0, f64::INFINITY),
                    (1.0, -1e308),
                    (2.0, 1e308),
                    (f64::NAN, 1.0),
                    (3.0, 80.0),
                    (4.0, 81.0),
                ],
            }],
            style: Style::Lines,
        };
        assert_eq!(drawable(&chart).series[0].points, vec![(3.0, 80.0), (4.0, 81.0)]);
        assert_eq!(render(&chart).unwrap().len(), (SIZE.0 * SIZE.1 * 3) as usize);
    }

    #[test]
    fn ranges_are_padded() {
        assert_eq!(padded_range([0.0, 10.0].into_iter()), (-0.5, 10.5));
        assert_eq!(padded_range([5.0].into_iter()), (4.0, 6.0));
        assert_eq!(padded_range(std::iter::empty()), (0.0, 1.0));
    }

    /// A chart with two series draws non-white pixels in each series' colour, and text (the
    /// caption's dark pixels in the top rows).
    #[test]
    fn charts_draw_series_legends_and_text() {
        let chart = Chart {
            title: "accuracy".into(),
            x_label: "epoch".into(),
            y_label: "top-1 (%)".into(),
            series: vec![
                Series { label: "a".into(), points: vec![(1.0, 80.0), (2.0, 85.0)] },
                Series { label: "b".into(), points: vec![(1.0, 70.0), (2.0, 90.0)] },
            ],
            style: Style::Lines,
        };
        let buffer = render(&chart).unwrap();
        let pixels: Vec<[u8; 3]> = buffer.chunks(3).map(|p| [p[0], p[1], p[2]]).collect();
        for i in 0..2 {
            let RGBAColor(r, g, b, _) = Palette99::pick(i).to_rgba();
            assert!(pixels.contains(&[r, g, b]), "series {i} is drawn");
        }
        let caption_dark = pixels[..SIZE.0 as usize * 30].iter().filter(|p| p.iter().all(|&c| c < 100)).count();
        assert!(caption_dark > 20, "the caption is rendered ({caption_dark} dark pixels)");
        let dir = tempfile::tempdir().unwrap();
        write_png(&chart, &dir.path().join("a.png")).unwrap();
        let decoded = kd_datasets::folder::decode(&dir.path().join("a.png"), 3).unwrap();
        assert_eq!((decoded.width, decoded.height), (800, 500));
    }
}
