//! The report's summary at a glance: per claim, the difference treatment - control with its 95%
//! confidence interval as a blue error bar, and the claim's margin as a red line across its column.

use super::plots::{FONT, SIZE, padded_range, register_font, write_rgb_png};
use anyhow::{Result, anyhow};
use plotters::prelude::*;
use std::path::Path;

/// One claim's column.
#[derive(Clone, Debug, PartialEq)]
pub struct DifferenceRow {
    /// The claim's short name (x axis).
    pub label: String,
    /// `mean(treatment) - mean(control)`.
    pub difference: f64,
    /// Its 95% confidence interval (absent with one seed on a side: the point alone).
    pub interval: Option<(f64, f64)>,
    /// The claim: `difference > margin`.
    pub margin: f64,
}

/// Chart title.
pub const TITLE: &str = "Treatment minus control per claim (95% CI; red: the claim's margin)";

/// Draws the rows into an RGB buffer of [`SIZE`].
pub fn render(rows: &[DifferenceRow]) -> Result<Vec<u8>> {
    register_font()?;
    let fail = |e: &dyn std::fmt::Display| anyhow!("drawing the difference chart: {e}");
    let finite = |v: &f64| v.is_finite() && v.abs() < 1e6;
    let rows: Vec<&DifferenceRow> = rows.iter().filter(|r| finite(&r.difference) && finite(&r.margin)).collect();
    let values = rows.iter().flat_map(|r| {
        let (low, high) = r.interval.filter(|(l, h)| finite(l) && finite(h)).unwrap_or((r.difference, r.difference));
        [r.difference, r.margin, low, high]
    });
    let (y0, y1) = padded_range(values);
    let mut buffer = vec![255u8; (SIZE.0 * SIZE.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let x1 = rows.len().max(1) as f64 - 0.5;
        let mut context = ChartBuilder::on(&root)
            .caption(TITLE, (FONT, 20))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(65)
            .build_cartesian_2d(-0.5..x1, y0..y1)
            .map_err(|e| fail(&e))?;
        let label_of = |x: &f64| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                rows.get(i as usize).map_or(String::new(), |r| r.label.clone())
            } else {
                String::new()
            }
        };
        context
            .configure_mesh()
            .x_labels(rows.len().max(1))
            .x_label_formatter(&label_of)
            .y_desc("difference (points)")
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 16))
            .light_line_style(TRANSPARENT)
            .draw()
            .map_err(|e| fail(&e))?;
        let blue = BLUE.to_rgba();
        for (i, row) in rows.iter().enumerate() {
            let x = i as f64;
            let margin_line = vec![(x - 0.35, row.margin), (x + 0.35, row.margin)];
            context
                .draw_series(std::iter::once(PathElement::new(margin_line, RED.stroke_width(2))))
                .map_err(|e| fail(&e))?;
            if let Some((low, high)) = row.interval.filter(|(l, h)| finite(l) && finite(h)) {
                let bar = [
                    vec![(x, low), (x, high)],
                    vec![(x - 0.08, low), (x + 0.08, low)],
                    vec![(x - 0.08, high), (x + 0.08, high)],
                ];
                context
                    .draw_series(bar.into_iter().map(|p| PathElement::new(p, blue.stroke_width(2))))
                    .map_err(|e| fail(&e))?;
            }
            context
                .draw_series(std::iter::once(Circle::new((x, row.difference), 5, blue.filled())))
                .map_err(|e| fail(&e))?;
        }
        root.present().map_err(|e| fail(&e))?;
    }
    Ok(buffer)
}

/// Draws the rows and writes them to `path` as PNG (through a temporary name).
pub fn write_png(rows: &[DifferenceRow], path: &Path) -> Result<()> {
    write_rgb_png(render(rows)?, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two claims, one with an interval: the error bar's blue and the margin's red are drawn;
    /// a non-finite row is left out rather than hanging the axis code.
    #[test]
    fn bars_and_margins_are_drawn() {
        let rows = [
            DifferenceRow { label: "KD".into(), difference: -0.2, interval: Some((-0.6, 0.3)), margin: 0.0 },
            DifferenceRow { label: "FKD".into(), difference: -0.5, interval: None, margin: -0.5 },
            DifferenceRow { label: "bad".into(), difference: f64::NAN, interval: None, margin: 0.0 },
        ];
        let buffer = render(&rows).unwrap();
        let pixels: Vec<[u8; 3]> = buffer.chunks(3).map(|p| [p[0], p[1], p[2]]).collect();
        assert!(pixels.contains(&[0, 0, 255]), "the difference and its bar");
        assert!(pixels.contains(&[255, 0, 0]), "the margin");
        let dir = tempfile::tempdir().unwrap();
        write_png(&rows, &dir.path().join("d.png")).unwrap();
        let decoded = kd_datasets::folder::decode(&dir.path().join("d.png"), 3).unwrap();
        assert_eq!((decoded.width, decoded.height), (SIZE.0 as usize, SIZE.1 as usize));
        assert_eq!(render(&[]).unwrap().len(), buffer.len(), "no rows: an empty chart");
    }
}
