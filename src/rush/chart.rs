//! The chart of a rush, as SVG, for a manager: how fast customers came and
//! how fast food was ready (top), how many orders were waiting (middle), and
//! how long customers waited for their food (bottom), across the rush in
//! 100 ms slices. The title says the arrival rate and how many customers were
//! never served; the unserved show in every panel that can show them (the
//! line still waiting at the end, and their waits so far, as a bar at the end
//! of the wait panel). A figure the rush did not measure says so in its
//! panel instead of drawing a flat zero.

use std::path::Path;

use anyhow::anyhow;
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::report::{Summary, number};
use super::stats::{BUCKET, Bucket, Recorder};

/// Width of the window the rates are counted over.
const RATE_WINDOW: usize = 10;
/// Waits longer than this are drawn in seconds, shorter in milliseconds.
const SECONDS_FROM_MS: f64 = 2000.0;

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Draws the rush `r` summarised by `s` into `path` (SVG); `label` names the
/// restaurant.
pub fn draw(path: &Path, label: &str, r: &Recorder, s: &Summary) -> anyhow::Result<()> {
    let fail = |e: &dyn std::fmt::Display| anyhow!("cannot draw {}: {e}", path.display());
    let root = SVGBackend::new(path, (1000, 1060)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let (head, body) = root.split_vertically(70);
    heading(&head, label, s).map_err(|e| fail(&e))?;
    let panels = body.split_evenly((3, 1));
    let end = (r.timeline.len().max(1) as f64 * BUCKET.as_secs_f64()).max(s.elapsed_s);
    let timeline = &r.timeline;
    rates(&panels[0], timeline, s, end).map_err(|e| fail(&e))?;
    waiting(&panels[1], timeline, s, end).map_err(|e| fail(&e))?;
    waits(&panels[2], r, s, end).map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

type Drawn = Result<(), Box<dyn std::error::Error>>;

/// The title (what was asked of the restaurant) and the outcome in one line.
fn heading(area: &Area, label: &str, s: &Summary) -> Drawn {
    // The real length of the arrivals (0.5 s is not "0 s"), and why they
    // stopped before --duration if they did.
    let mut span = trim((s.arrivals_s * 100.0).round() / 100.0) + " s";
    if let Some(why) = &s.stopped_early {
        span.push_str(&format!(" (stopped early: {why})"));
    }
    let how = match (s.rate, s.connections) {
        (Some(rate), _) => format!("{} customers arriving per second for {span}", trim(rate)),
        (_, Some(n)) => format!("{n} counters ordering back to back for {span}"),
        _ => String::new(),
    };
    area.draw(&Text::new(
        format!("Lunch rush: {how}"),
        (14, 8),
        ("sans-serif", 24).into_font().color(&BLACK),
    ))?;
    let outcome = match (s.ready, s.unserved) {
        (Some(ready), Some(0)) => {
            format!("{label}: all {ready} customers who got in line had their food")
        }
        (Some(ready), Some(unserved)) => format!(
            "{label}: {ready} of {} customers had their food; {unserved} were still waiting when the rush ended",
            s.arrived
        ),
        _ => format!(
            "{label}: {} tickets; food ready not measured (--no-board)",
            s.ordered
        ),
    };
    let colour = if s.unserved.unwrap_or(0) > 0 {
        RED
    } else {
        BLACK
    };
    area.draw(&Text::new(
        outcome,
        (14, 40),
        ("sans-serif", 16).into_font().color(&colour),
    ))?;
    Ok(())
}

/// `x` without a trailing `.0`.
fn trim(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x}")
    }
}

fn secs(i: usize) -> f64 {
    (i as f64 + 1.0) * BUCKET.as_secs_f64()
}

/// Events per second over the last [`RATE_WINDOW`] slices, at each slice.
/// The first slices have no whole window behind them, and one event over a
/// tenth of a second would read as ten a second: the line starts at the
/// first whole window, unless the rush is too short to have two.
fn rate(timeline: &[Bucket], field: fn(&Bucket) -> u64) -> Vec<(f64, f64)> {
    let first = match timeline.len() >= 2 * RATE_WINDOW {
        true => RATE_WINDOW - 1,
        false => 0,
    };
    let mut sum = 0u64;
    (0..timeline.len())
        .filter_map(|i| {
            sum += field(&timeline[i]);
            if i >= RATE_WINDOW {
                sum -= field(&timeline[i - RATE_WINDOW]);
            }
            let window = (i + 1).min(RATE_WINDOW) as f64 * BUCKET.as_secs_f64();
            (i >= first).then(|| (secs(i), sum as f64 / window))
        })
        .collect()
}

/// The top of an axis of counts (orders, customers) whose largest value is
/// `peak`, and how many labels it gets: up to 10, one per whole number, so
/// a small range reads 0, 1, 2 rather than 0, 0, 0, 1, 1, 1. The lines stay
/// in the lower 60 %, below the legend.
fn count_axis(peak: f64) -> (f64, usize) {
    let top = (peak * 1.65).ceil().max(2.0);
    match top <= 10.0 {
        true => (top, top as usize + 1),
        false => (top, 10),
    }
}

/// A count's label: whole numbers only (a tick between two is left blank).
fn count_label(v: &f64) -> String {
    match (v - v.round()).abs() < 1e-9 {
        true => format!("{v:.0}"),
        false => String::new(),
    }
}

/// A vertical line where the arrivals stopped, labelled.
fn arrivals_end(chart: &mut Chart, at: f64, top: f64) -> Drawn {
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(at, 0.0), (at, top)],
        BLACK.mix(0.4).stroke_width(1),
    )))?;
    // Left of the line when it is near the right edge, so it stays on the chart.
    let end = chart.x_range().end;
    let x = match at > end * 0.85 {
        true => at - end * 0.09,
        false => at + end * 0.005,
    };
    chart.draw_series(std::iter::once(Text::new(
        "arrivals end",
        (x, top),
        ("sans-serif", 13).into_font().color(&BLACK.mix(0.6)),
    )))?;
    Ok(())
}

fn legend<'a>(chart: &mut Chart<'a, 'a>) -> Drawn {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 14))
        .draw()?;
    Ok(())
}

/// Customers arriving and food ready, per second, and the kitchen's capacity.
fn rates(area: &Area, timeline: &[Bucket], s: &Summary, end: f64) -> Drawn {
    let arrivals = rate(timeline, |b| b.arrived);
    let ready = rate(timeline, |b| b.ready);
    let mut top = arrivals
        .iter()
        .chain(&ready)
        .map(|p| p.1)
        .fold(1.0, f64::max);
    if let Some(c) = s.capacity_per_s {
        top = top.max(c);
    }
    let (top, labels) = count_axis(top);
    let from = match timeline.len() >= 2 * RATE_WINDOW {
        true => ", from 1 s on",
        false => "",
    };
    let caption = match s.ready {
        Some(_) => {
            format!("Customers arriving and food ready, per second (over the last second{from})")
        }
        None => {
            format!("Customers arriving per second{from} (food ready: not measured, --no-board)")
        }
    };
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(34)
        .y_label_area_size(64)
        .caption(caption, ("sans-serif", 17))
        .build_cartesian_2d(0.0..end, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("seconds into the rush")
        .y_desc("per second")
        .y_labels(labels)
        .y_label_formatter(&count_label)
        .draw()?;
    // Three lines that are often equal (a kitchen that keeps up makes food
    // as fast as customers come): arrivals a wide pale band, food ready a
    // thin line inside it, capacity dashed over both, so none hides another.
    let band = BLACK.mix(0.3).stroke_width(7);
    chart
        .draw_series(LineSeries::new(arrivals, band))?
        .label(format!(
            "customers arriving ({}/s)",
            number(s.arrivals_per_s)
        ))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], band));
    if s.ready.is_some() {
        let ready_style = GREEN.mix(0.9).stroke_width(2);
        chart
            .draw_series(LineSeries::new(ready, ready_style))?
            .label(format!(
                "food ready ({}/s on average)",
                number(s.ready_per_s.unwrap_or(0.0))
            ))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], ready_style));
    }
    if let Some(c) = s.capacity_per_s {
        let at_least = if s.capacity_is_lower_bound == Some(true) {
            "at least "
        } else {
            ""
        };
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, c), (end, c)],
                10,
                6,
                MAGENTA.stroke_width(2),
            ))?
            .label(format!(
                "kitchen capacity while busy: {at_least}{}/s",
                number(c)
            ))
            .legend(|(x, y)| {
                // Dashed, as the line is: two dashes.
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (7, 0)], MAGENTA.stroke_width(2))
                    + PathElement::new(vec![(11, 0), (18, 0)], MAGENTA.stroke_width(2))
            });
    }
    arrivals_end(&mut chart, s.arrivals_s, top)?;
    legend(&mut chart)
}

/// Orders waiting: in line for a ticket, and with a ticket, food not ready.
fn waiting(area: &Area, timeline: &[Bucket], s: &Summary, end: f64) -> Drawn {
    let width_us = BUCKET.as_micros() as f64;
    let in_line_mean = |b: &Bucket| b.in_line_us as f64 / width_us;
    let peak = timeline
        .iter()
        .map(|b| in_line_mean(b).max(b.cooking as f64))
        .fold(1.0, f64::max);
    let (top, labels) = count_axis(peak);
    let caption = match s.ready {
        Some(_) => "Orders waiting",
        None => "Customers waiting for a ticket (orders in the kitchen: not measured, --no-board)",
    };
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(34)
        .y_label_area_size(64)
        .caption(caption, ("sans-serif", 17))
        .build_cartesian_2d(0.0..end, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("seconds into the rush")
        .y_desc(match s.ready {
            Some(_) => "orders",
            None => "customers",
        })
        .y_labels(labels)
        .y_label_formatter(&count_label)
        .draw()?;
    if s.ready.is_some() {
        let cooking = timeline
            .iter()
            .enumerate()
            .map(|(i, b)| (secs(i), b.cooking as f64));
        chart
            .draw_series(LineSeries::new(cooking, BLUE.stroke_width(2)))?
            .label("with a ticket, food not ready")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE.stroke_width(2)));
    }
    // Time-weighted: a request of a few ms counts as the few ms it took,
    // not as a customer in line for the whole slice when a sample hit it.
    let in_line = timeline
        .iter()
        .enumerate()
        .map(|(i, b)| (secs(i), in_line_mean(b)));
    chart
        .draw_series(LineSeries::new(in_line, RED.stroke_width(2)))?
        .label("in line for a ticket (average over each 100 ms)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RED.stroke_width(2)));
    if let Some(unserved) = s.unserved.filter(|u| *u > 0) {
        let y = (unserved as f64).min(peak);
        chart.draw_series(std::iter::once(Circle::new((end, y), 5, RED.filled())))?;
        chart.draw_series(std::iter::once(Text::new(
            format!("{unserved} still waiting at the end"),
            (end * 0.72, (y - top * 0.1).max(top * 0.12)),
            ("sans-serif", 14).into_font().color(&RED),
        )))?;
    }
    arrivals_end(&mut chart, s.arrivals_s, top)?;
    legend(&mut chart)
}

/// Waits from arrival to food ready, by when the food was ready; the
/// unserved as a bar at the end, spanning the waits they had reached.
fn waits(area: &Area, r: &Recorder, s: &Summary, end: f64) -> Drawn {
    if s.ready.is_none() {
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .caption(
                "Wait from arrival to food ready: not measured (--no-board: nobody watched the board)",
                ("sans-serif", 17),
            )
            .build_cartesian_2d(0.0..end, 0.0..1.0)?;
        chart.configure_mesh().disable_mesh().draw()?;
        return Ok(());
    }
    let unserved = &r.unserved_wait;
    let longest_us = r
        .timeline
        .iter()
        .map(|b| b.wait_max)
        .max()
        .unwrap_or(0)
        .max(if unserved.is_empty() {
            0
        } else {
            unserved.max()
        });
    let in_seconds = longest_us as f64 / 1000.0 > SECONDS_FROM_MS;
    let (scale, unit) = match in_seconds {
        true => (1e-6, "seconds"),
        false => (1e-3, "milliseconds"),
    };
    // Headroom for the legend, as on the other panels.
    let top = (longest_us as f64 * scale).max(1.0) * 1.65;
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(34)
        .y_label_area_size(64)
        .caption(
            "Wait from arrival to food ready, by when the food was ready",
            ("sans-serif", 17),
        )
        .build_cartesian_2d(0.0..end, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("seconds into the rush")
        .y_desc(unit)
        .y_label_formatter(&|v| {
            if in_seconds {
                format!("{v:.1}")
            } else {
                format!("{v:.0}")
            }
        })
        .draw()?;
    let served = || {
        r.timeline
            .iter()
            .enumerate()
            .filter(|(_, b)| b.wait_count > 0)
    };
    let longest: Vec<(usize, f64)> = served()
        .map(|(i, b)| (i, b.wait_max as f64 * scale))
        .collect();
    let mean: Vec<(usize, f64)> = served()
        .map(|(i, b)| (i, (b.wait_sum / b.wait_count) as f64 * scale))
        .collect();
    // The longest is listed first and drawn last, over the average.
    chart
        .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
        .label("longest wait among the food ready in that 100 ms")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RED.stroke_width(2)));
    chart
        .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
        .label("average wait")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE.stroke_width(1)));
    broken_line(&mut chart, &mean, BLUE.stroke_width(1))?;
    broken_line(&mut chart, &longest, RED.stroke_width(2))?;
    if !unserved.is_empty() {
        let (low, high) = (unserved.min() as f64 * scale, unserved.max() as f64 * scale);
        let median = unserved.value_at_quantile(0.5) as f64 * scale;
        let x = end - (end * 0.004);
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x, low), (x, high)],
                RGBColor(230, 120, 0).stroke_width(6),
            )))?
            .label(format!(
                "never served ({}): waited {} to {} so far, median {}",
                unserved.len(),
                amount(low, in_seconds),
                amount(high, in_seconds),
                amount(median, in_seconds)
            ))
            .legend(|(x, y)| {
                PathElement::new(
                    vec![(x, y), (x + 18, y)],
                    RGBColor(230, 120, 0).stroke_width(6),
                )
            });
        chart.draw_series(std::iter::once(Circle::new(
            (x, median),
            5,
            RGBColor(230, 120, 0).filled(),
        )))?;
    }
    legend(&mut chart)
}

/// A line through `points` (slice, value) that breaks where slices are
/// missing (no food ready then), so a few servings do not read as a steady
/// service; with few points, each is marked too.
fn broken_line(chart: &mut Chart, points: &[(usize, f64)], style: ShapeStyle) -> Drawn {
    let mut start = 0;
    for end in 1..=points.len() {
        if end == points.len() || points[end].0 != points[end - 1].0 + 1 {
            let run = points[start..end].iter().map(|&(i, v)| (secs(i), v));
            chart.draw_series(LineSeries::new(run, style))?;
            start = end;
        }
    }
    if points.len() <= 200 {
        let dots = points
            .iter()
            .map(|&(i, v)| Circle::new((secs(i), v), 3, style.filled()));
        chart.draw_series(dots)?;
    }
    Ok(())
}

fn amount(x: f64, in_seconds: bool) -> String {
    match in_seconds {
        true => format!("{x:.1} s"),
        false => format!("{x:.0} ms"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::rush::report::tests::summary_of;

    #[test]
    fn a_small_range_of_counts_reads_in_whole_numbers_each_once() {
        assert_eq!(count_axis(1.0), (2.0, 3));
        assert_eq!(count_axis(4.0), (7.0, 8));
        assert_eq!(count_axis(100.0), (165.0, 10));
        assert_eq!(count_label(&0.5), "");
        assert_eq!(count_label(&3.0), "3");

        // A small run: 4 customers in 2 s, one order waiting at a time.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rush.svg");
        let mut r = Recorder::default();
        let ms = Duration::from_millis;
        for i in 0..4u64 {
            let at = ms(500 * i);
            r.arrived += 1;
            r.bucket(at).arrived += 1;
            r.ordered(at, ms(3));
            r.waited_in_line(at, at + ms(3));
            r.bucket(at).cooking = 1;
            r.ready(i as u32 + 1, at + ms(300), ms(297), ms(300));
        }
        r.bucket(ms(2000));
        let s = summary_of(&r, true, Some(1));
        draw(&path, "small rush", &r, &s).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        // The y labels of the count axes (whole numbers; the x axis has
        // decimals), in order: never the same twice in a row.
        let labels: Vec<&str> = svg
            .split("<text")
            .filter_map(|t| Some(t.split('>').nth(1)?.split('<').next()?.trim()))
            .filter(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()))
            .collect();
        assert!(labels.len() >= 4, "{labels:?}");
        assert!(
            labels.windows(2).all(|w| w[0] != w[1]),
            "a label repeats: {labels:?}"
        );
    }

    #[test]
    fn the_rate_line_starts_at_its_first_whole_window() {
        let mut timeline = vec![Bucket::default(); 30];
        timeline[0].arrived = 1;
        timeline[5].arrived = 1;
        let rates = rate(&timeline, |b| b.arrived);
        // One customer in the first 100 ms is not 10 a second.
        assert_eq!(rates.first(), Some(&(1.0, 2.0)));
        assert!(rates.iter().all(|(_, r)| *r <= 2.0), "{rates:?}");
    }

    #[test]
    fn a_chart_is_an_svg_file_that_shows_the_unserved() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rush.svg");
        let mut r = Recorder::default();
        for i in 0..50u64 {
            let at = Duration::from_millis(100 * i);
            r.arrived += 1;
            r.bucket(at).arrived += 1;
            r.ordered(at, Duration::from_millis(3));
            let b = r.bucket(at);
            b.cooking = i;
            b.in_line = i / 2;
        }
        for i in 1..=5 {
            r.ready(
                i,
                Duration::from_secs(i as u64),
                Duration::from_secs(1),
                Duration::from_secs(i as u64),
            );
        }
        for _ in 0..45 {
            r.unserved(Some((9, Duration::from_secs(3))), Duration::from_secs(4));
        }
        let s = summary_of(&r, true, Some(1));
        draw(&path, "test rush", &r, &s).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..200.min(svg.len())]);
        for text in [
            "customers arriving per second",
            "45 were still waiting when the rush ended",
            "45 still waiting at the end",
            "never served (45)",
            "seconds",
            "longest wait",
        ] {
            assert!(svg.contains(text), "the chart says {text:?}");
        }
        assert!(svg.contains("in line for a ticket (average over each 100 ms)"));
        let quiet = summary_of(&Recorder::default(), false, None);
        draw(&path, "empty rush", &Recorder::default(), &quiet).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("not measured"), "--no-board says so");
    }
}
