//! `cargo xtask bench [--quick] [--json FILE]`: our figures beside Linux's, measured in
//! the same run, as ratios; instruction counts from callgrind; a plot of pair latency
//! against region count.

use crate::setup;
use plotters::prelude::*;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The ratio cases: (JSON case name, criterion directory of ours, of Linux's).
const CASES: &[(&str, &str, &str)] = &[
    ("mmap_munmap", "mmap_munmap/ours", "mmap_munmap/linux"),
    (
        "mprotect_split_merge",
        "mprotect_split_merge/ours",
        "mprotect_split_merge/linux",
    ),
    (
        "mmap_munmap_at_10",
        "mmap_munmap_at/ours/10",
        "mmap_munmap_at/linux/10",
    ),
    (
        "mmap_munmap_at_1000",
        "mmap_munmap_at/ours/1000",
        "mmap_munmap_at/linux/1000",
    ),
    (
        "mmap_munmap_at_65536",
        "mmap_munmap_at/ours/65536",
        "mmap_munmap_at/linux/65536",
    ),
    ("first_touch", "first_touch/ours", "first_touch/linux"),
    ("file_fault", "file_fault/ours", "file_fault/linux"),
    (
        "file_fault_cached",
        "file_fault/ours_cached",
        "file_fault/linux",
    ),
    (
        "hosted_mmap_munmap",
        "hosted_mmap_munmap/ours",
        "hosted_mmap_munmap/linux",
    ),
    (
        "hosted_first_touch",
        "hosted_first_touch/ours",
        "hosted_first_touch/linux",
    ),
    (
        "host_file_fault",
        "host_file_fault/ours",
        "host_file_fault/linux",
    ),
];

/// One line of the table: case, ours (ns), Linux (ns), ratio.
type Row = (&'static str, Option<f64>, Option<f64>, Option<f64>);

/// Entry point.
pub fn run(args: &[String]) -> Result<(), String> {
    if let Some(rest) = args.strip_prefix(&["--guest".to_string()]) {
        return crate::guest_bench::run(rest);
    }
    let mut quick = false;
    let mut json_path: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--json" => json_path = Some(it.next().ok_or("--json needs a file")?.into()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    let root = std::env::current_dir().map_err(|e| e.to_string())?;
    let crit = root.join("target/criterion");
    // Stale results of a case not run this time must not be reported.
    let _ = std::fs::remove_dir_all(&crit);
    let mut bench_args = vec!["bench", "-q", "-p", "bench", "--bench", "pairs", "--"];
    if quick {
        bench_args.extend([
            "--warm-up-time",
            "0.5",
            "--measurement-time",
            "1",
            "--sample-size",
            "10",
        ]);
    }
    setup::status("cargo", &bench_args)?;
    if root.join("hosted/benches/hosted.rs").exists() {
        let mut hosted = vec![
            "bench",
            "-q",
            "-p",
            "memserver-hosted",
            "--bench",
            "hosted",
            "--",
        ];
        if quick {
            hosted.extend([
                "--warm-up-time",
                "0.5",
                "--measurement-time",
                "1",
                "--sample-size",
                "10",
            ]);
        }
        setup::status("cargo", &hosted)?;
    }

    let mut out = Map::new();
    let mut rows: Vec<Row> = Vec::new();
    for &(name, ours_dir, linux_dir) in CASES {
        let ours = mean_ns(&crit.join(ours_dir));
        let linux = mean_ns(&crit.join(linux_dir));
        let ratio = ours.zip(linux).map(|(o, l)| o / l);
        out.insert(format!("{name}_ours_ns"), json!(ours));
        out.insert(format!("{name}_linux_ns"), json!(linux));
        out.insert(format!("{name}_ratio"), json!(ratio));
        rows.push((name, ours, linux, ratio));
    }
    let wire = mean_ns(&crit.join("encode_decode"));
    out.insert("encode_decode_ns".into(), json!(wire));
    // Instructions per iteration of each probe case, under the name it is reported by.
    let counts: Vec<(&str, Option<f64>)> = [
        ("pair", "mmap_munmap"),
        ("wire", "encode_decode"),
        ("file", "file_page_in"),
    ]
    .into_iter()
    .map(|(case, name)| (name, callgrind(&root, case)))
    .collect();
    for (name, ir) in &counts {
        out.insert(format!("{name}_instructions"), json!(ir));
    }

    println!(
        "{:<24} {:>12} {:>12} {:>8}",
        "case", "ours", "Linux", "ratio"
    );
    for (name, ours, linux, ratio) in &rows {
        println!(
            "{name:<24} {:>12} {:>12} {:>8}",
            ns(*ours),
            ns(*linux),
            ratio.map_or("-".into(), |r| format!("{r:.3}"))
        );
    }
    println!("{:<24} {:>12}", "encode_decode", ns(wire));
    for (name, ir) in &counts {
        println!(
            "{:<24} {:>12}",
            format!("{name} (instr)"),
            ir.map_or("-".into(), |i| format!("{i:.0}"))
        );
    }

    let plot_path = match &json_path {
        Some(p) => {
            let text =
                serde_json::to_string_pretty(&Value::Object(out)).map_err(|e| e.to_string())?;
            std::fs::write(p, text + "\n").map_err(|e| format!("{}: {e}", p.display()))?;
            p.with_extension("svg")
        }
        None => root.join("target/bench-scaling.svg"),
    };
    plot(&rows, &plot_path)?;
    println!("plot: {}", plot_path.display());
    Ok(())
}

fn ns(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 1000.0 => format!("{:.2} µs", v / 1000.0),
        Some(v) => format!("{v:.1} ns"),
        None => "-".into(),
    }
}

/// Criterion's mean estimate of one benchmark, in ns.
fn mean_ns(dir: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(dir.join("new/estimates.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

/// Instructions per iteration of a probe case: callgrind totals for n and 0 iterations.
fn callgrind(root: &Path, case: &str) -> Option<f64> {
    let has_valgrind = Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_valgrind {
        eprintln!("xtask bench: valgrind not found, skipping instruction counts");
        return None;
    }
    setup::status(
        "cargo",
        &["build", "-q", "--release", "-p", "bench", "--bin", "probe"],
    )
    .ok()?;
    let probe = root.join("target/release/probe");
    let count = |n: u64| -> Option<f64> {
        let out_file = std::env::temp_dir().join(format!("callgrind-{case}-{n}.out"));
        let st = Command::new("valgrind")
            .arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}", out_file.display()))
            .arg(&probe)
            .args([case, &n.to_string()])
            .output()
            .ok()?;
        if !st.status.success() {
            return None;
        }
        let text = std::fs::read_to_string(&out_file).ok()?;
        text.lines()
            .find_map(|l| {
                l.strip_prefix("summary:")
                    .or_else(|| l.strip_prefix("totals:"))
            })
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    let n = 20_000;
    Some((count(n)? - count(0)?) / n as f64)
}

/// Pair latency against region count, ours and Linux's, as SVG.
fn plot(rows: &[Row], path: &Path) -> Result<(), String> {
    let point = |name: &str| rows.iter().find(|r| r.0 == name).map(|r| (r.1, r.2));
    let counts = [
        (10.0, "mmap_munmap_at_10"),
        (1000.0, "mmap_munmap_at_1000"),
        (65536.0, "mmap_munmap_at_65536"),
    ];
    let ours: Vec<(f64, f64)> = counts
        .iter()
        .filter_map(|&(x, n)| Some((x, point(n)?.0?)))
        .collect();
    let linux: Vec<(f64, f64)> = counts
        .iter()
        .filter_map(|&(x, n)| Some((x, point(n)?.1?)))
        .collect();
    let ymax = ours.iter().chain(&linux).map(|p| p.1).fold(1.0, f64::max) * 1.15;
    let root = SVGBackend::new(path, (720, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "mmap+munmap pair latency vs regions in the address space",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((5.0f64..100_000.0f64).log_scale(), 0.0..ymax)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("existing regions")
        .y_desc("ns per pair")
        .draw()
        .map_err(|e| e.to_string())?;
    for (data, color, label) in [
        (&ours, BLUE, "memserver (in-process)"),
        (&linux, RED, "Linux syscalls"),
    ] {
        chart
            .draw_series(LineSeries::new(data.iter().copied(), color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
        chart
            .draw_series(data.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}
