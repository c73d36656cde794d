//! The chart of a rush, as SVG: orders waiting (above) and how long customers
//! waited for their food (below), across the rush, in 100 ms slices.

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

use super::stats::{BUCKET, Bucket};

/// Draws `timeline` into `path` (SVG).
pub fn draw(path: &Path, title: &str, timeline: &[Bucket]) -> anyhow::Result<()> {
    let secs = |i: usize| (i as f64 + 1.0) * BUCKET.as_secs_f64();
    let end = secs(timeline.len().max(1));
    let peak = timeline
        .iter()
        .map(|b| b.in_line.max(b.cooking))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let wait_ms = |us: u64| us as f64 / 1000.0;
    let longest = timeline
        .iter()
        .map(|b| wait_ms(b.wait_max))
        .fold(1.0, f64::max);

    let root = SVGBackend::new(path, (1000, 700)).into_drawing_area();
    let fail = |e: &dyn std::fmt::Display| anyhow!("cannot draw {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let root = root
        .titled(title, ("sans-serif", 22))
        .map_err(|e| fail(&e))?;
    let (top, bottom) = root.split_vertically(340);

    let mut chart = ChartBuilder::on(&top)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .caption("Orders waiting", ("sans-serif", 17))
        .build_cartesian_2d(0.0..end, 0.0..peak * 1.1)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("seconds into the rush")
        .y_desc("orders")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(|e| fail(&e))?;
    let cooking = timeline
        .iter()
        .enumerate()
        .map(|(i, b)| (secs(i), b.cooking as f64));
    chart
        .draw_series(LineSeries::new(cooking, BLUE.stroke_width(2)))
        .map_err(|e| fail(&e))?
        .label("with a ticket, food not ready")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE.stroke_width(2)));
    let in_line = timeline
        .iter()
        .enumerate()
        .map(|(i, b)| (secs(i), b.in_line as f64));
    chart
        .draw_series(LineSeries::new(in_line, RED.stroke_width(2)))
        .map_err(|e| fail(&e))?
        .label("in line for a ticket")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RED.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(|e| fail(&e))?;

    let mut chart = ChartBuilder::on(&bottom)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .caption(
            "Wait from arrival to food ready, by when the food was ready",
            ("sans-serif", 17),
        )
        .build_cartesian_2d(0.0..end, 0.0..longest * 1.1)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("seconds into the rush")
        .y_desc("milliseconds")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(|e| fail(&e))?;
    let served = || {
        timeline
            .iter()
            .enumerate()
            .filter(|(_, b)| b.wait_count > 0)
    };
    let longest = served().map(|(i, b)| (secs(i), wait_ms(b.wait_max)));
    chart
        .draw_series(LineSeries::new(longest, RED.mix(0.7).stroke_width(1)))
        .map_err(|e| fail(&e))?
        .label("longest")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RED.stroke_width(2)));
    let mean = served().map(|(i, b)| (secs(i), wait_ms(b.wait_sum / b.wait_count)));
    chart
        .draw_series(LineSeries::new(mean, BLUE.stroke_width(2)))
        .map_err(|e| fail(&e))?
        .label("average")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_an_svg_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rush.svg");
        let timeline: Vec<Bucket> = (0..50)
            .map(|i| Bucket {
                cooking: i,
                in_line: i / 2,
                wait_sum: 1000 * i,
                wait_count: 1,
                wait_max: 2000 * i,
                ..Bucket::default()
            })
            .collect();
        draw(&path, "test rush", &timeline).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("Orders waiting"),
            "{}",
            &svg[..200.min(svg.len())]
        );
        draw(&path, "empty rush", &[]).unwrap();
    }
}
