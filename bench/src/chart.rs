//! `--scaling`'s chart: items per second against workers, ours and Python's, on log scales,
//! saved as an SVG the README shows.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

/// One contender's points: (workers, k items/s).
pub type Series = Vec<(u32, f64)>;

/// The scaling rows' medians by contender, from labels such as
/// `map 100k, chunksize 1,  4 workers (k items/s)`.
pub fn series(medians: &BTreeMap<String, BTreeMap<String, f64>>) -> BTreeMap<String, Series> {
    let mut out: BTreeMap<String, Series> = BTreeMap::new();
    for (label, by_who) in medians {
        let Some(w) = label
            .strip_prefix("map 100k, chunksize 1,")
            .and_then(|rest| rest.trim_start().split(' ').next())
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        for (who, &v) in by_who {
            out.entry(who.clone()).or_default().push((w, v));
        }
    }
    for s in out.values_mut() {
        s.sort_by_key(|p| p.0);
    }
    out
}

/// Draws the series into an SVG at `path`.
pub fn draw(path: &Path, series: &BTreeMap<String, Series>, cpus: usize) -> Result<(), String> {
    let points = || series.values().flatten();
    let max_w = points().map(|p| p.0).max().unwrap_or(1).max(2);
    let lo = points().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let hi = points().map(|p| p.1).fold(0.0, f64::max);
    if !(lo.is_finite() && lo > 0.0 && hi > 0.0) {
        return Err("no scaling figures to draw".into());
    }
    // Whole decades on the y axis, a little room either side of the x axis.
    let (lo, hi) = (
        10f64.powf(lo.log10().floor()),
        10f64.powf(hi.log10().ceil()).max(lo * 10.0),
    );
    let root = SVGBackend::new(path, (720, 440)).into_drawing_area();
    let e = |e: DrawingAreaErrorKind<_>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("map of 100k trivial items, chunksize 1 ({cpus}-CPU machine)"),
            ("sans-serif", 18),
        )
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(
            (0.8..f64::from(max_w) * 1.25).log_scale(),
            (lo..hi).log_scale(),
        )
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("workers")
        .y_desc("k items/s")
        .light_line_style(WHITE)
        .x_label_formatter(&|w| format!("{w:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(e)?;
    let colours = [RED, BLUE, GREEN, MAGENTA, CYAN];
    for (i, (who, s)) in series.iter().enumerate() {
        let c = colours[i % colours.len()];
        chart
            .draw_series(LineSeries::new(
                s.iter().map(|&(w, v)| (f64::from(w), v)),
                c.stroke_width(2),
            ))
            .map_err(e)?
            .label(who.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        chart
            .draw_series(
                s.iter()
                    .map(|&(w, v)| Circle::new((f64::from(w), v), 4, c.filled())),
            )
            .map_err(e)?;
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_rows_become_series_and_a_chart() {
        let mut medians = BTreeMap::new();
        for (w, ours, py) in [(1, 290.0, 15.0), (2, 540.0, 21.0), (4, 900.0, 30.0)] {
            let mut by = BTreeMap::new();
            by.insert("multiproc".to_string(), ours);
            by.insert("python".to_string(), py);
            medians.insert(
                format!("map 100k, chunksize 1, {w:>2} workers (k items/s)"),
                by,
            );
        }
        medians.insert("Process start + join (ms)".into(), BTreeMap::new());
        let s = series(&medians);
        assert_eq!(s["multiproc"], vec![(1, 290.0), (2, 540.0), (4, 900.0)]);
        assert_eq!(s["python"].len(), 3);
        let path = std::env::temp_dir().join(format!("scaling-{}.svg", std::process::id()));
        draw(&path, &s, 4).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        assert!(svg.contains("multiproc") && svg.contains("python"));
        assert!(draw(&path, &BTreeMap::new(), 4).is_err());
    }
}
