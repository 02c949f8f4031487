//! How long "Test connection" takes against the bundled rendezvous.
//!
//! `cargo bench -p jam --bench check_loopback` runs `jam::check::run_check`
//! against a rendezvous started in process on 127.0.0.1:0 (real HTTP over
//! loopback), with both test peers bound to 127.0.0.1 and no STUN/TURN
//! servers, and prints p50 / p90 / max of the loopback's total time and of
//! MidiEditor's rendezvous / handshake / round-trip split. The goal is a
//! total under 500 ms, so that the button feels instant.
//!
//! Knobs (environment): `CHECK_BENCH_RUNS` (20), `CHECK_BENCH_WARMUP` (2).
//! Nothing leaves 127.0.0.0/8.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use jam::check::{run_check_quiet, CheckConfig, Report, Verdict};
use rdv::{Config, Rendezvous, RunningServer};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn row(what: &str, mut values: Vec<f64>) {
    values.sort_by(f64::total_cmp);
    println!(
        "{what:<14} p50 {:>7.1} ms   p90 {:>7.1} ms   max {:>7.1} ms   min {:>7.1} ms",
        pct(&values, 0.5),
        pct(&values, 0.9),
        values[values.len() - 1],
        values[0],
    );
}

fn main() {
    let runs = env_or("CHECK_BENCH_RUNS", 20).max(1);
    let warmup = env_or("CHECK_BENCH_WARMUP", 2);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let server = RunningServer::start(
            (Ipv4Addr::LOCALHOST, 0).into(),
            Rendezvous::new(Config::default()),
        )
        .await
        .expect("the bundled rendezvous starts on 127.0.0.1");
        let cfg = CheckConfig {
            bind_ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            ..CheckConfig::new(server.url())
        };

        let mut reports: Vec<(Report, f64)> = Vec::new();
        for i in 0..warmup + runs {
            let started = Instant::now();
            let report = run_check_quiet(&cfg).await;
            let wall = started.elapsed().as_secs_f64() * 1000.0;
            if report.verdict != Verdict::Good {
                eprintln!("run {i}: {}", jam::check::details_text(&report));
            }
            if i >= warmup {
                reports.push((report, wall));
            }
        }
        server.stop().await.expect("the rendezvous stops");

        let good = reports
            .iter()
            .filter(|(r, _)| r.verdict == Verdict::Good)
            .count();
        println!(
            "check_loopback: {runs} runs against the bundled rendezvous on 127.0.0.1 ({good} Good)"
        );
        let pick = |f: fn(&Report) -> Option<f64>| -> Vec<f64> {
            reports.iter().filter_map(|(r, _)| f(r)).collect()
        };
        row("total", pick(|r| Some(r.timings.total_ms)));
        row("wall clock", reports.iter().map(|(_, w)| *w).collect());
        row("rendezvous", pick(|r| r.timings.rendezvous_ms));
        row("handshake", pick(|r| r.timings.handshake_ms));
        row("round trip", pick(|r| r.timings.round_trip_ms));
        let mut totals = pick(|r| Some(r.timings.total_ms));
        totals.sort_by(f64::total_cmp);
        let p50 = pct(&totals, 0.5);
        println!(
            "goal: total p50 under 500 ms: {}",
            if p50 < 500.0 { "met" } else { "NOT met" }
        );
    });
}
