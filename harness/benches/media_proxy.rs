//! The gatekeeper media proxy's cost (issue 10): throughput through the proxy against a plain
//! copy of the same bytes, and the memory the proxied transfer takes.
//!
//! One 64 MiB object is served by the harness's media host (HTTPS, loopback). Each round
//! copies it (a) straight from the host to a sink, over the same TLS the proxy uses upstream,
//! and (b) through the media proxy (HTTPS from the host, plain HTTP to the sink), in
//! alternating order. The fair baseline is "a plain loopback copy of the same bytes" from the
//! same upstream: the proxy fetches over TLS, so the baseline does too. Medians of the rounds
//! and the ratio proxy / plain are printed (target: >= 0.5).
//!
//! Memory: before each transfer the process's peak RSS is reset (`/proc/self/clear_refs`, 5)
//! and its RSS read; after it the peak (`VmHWM`) is read. The growth covers everything in the
//! process (host, proxy and sink), so it bounds the proxy's share from above (target: < 32
//! MiB for the proxied transfer).
//!
//! `cargo bench -p gatecheck --bench media_proxy` (plain `main`, no criterion: the quantities
//! are a ratio and a memory bound).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use gatecheck::media::client::{Timeouts, get_to_sink};
use gatecheck::media::host::{Fault, HostConfig, MediaHost};
use gatecheck::media::proxy::{MediaProxy, ProxyConfig};
use gatecheck::media::sink::{Discard, write_random_file};

const SIZE: u64 = 64 << 20;
const ROUNDS: usize = 7;
const MIB: f64 = (1 << 20) as f64;

/// `VmRSS` and `VmHWM` of this process, in KiB.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets the peak RSS to the current RSS; false when the kernel does not allow it.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One transfer: (MiB/s, RSS growth over the RSS just before it, in KiB).
async fn measure<F: std::future::Future<Output = u64>>(run: F) -> (f64, u64) {
    let peak_reset = reset_peak();
    let (before, _) = memory();
    let started = Instant::now();
    let bytes = run.await;
    let elapsed = started.elapsed();
    let (_, peak) = memory();
    assert_eq!(bytes, SIZE, "a whole copy");
    let growth = if peak_reset {
        peak.saturating_sub(before)
    } else {
        0
    };
    (SIZE as f64 / MIB / elapsed.as_secs_f64(), growth)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(bench());
}

async fn bench() {
    let dir = std::env::temp_dir().join(format!("gatecheck-bench-media-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let scratch = Scratch(dir.clone());
    let object = dir.join("object");
    write_random_file(&object, SIZE, 10).expect("the object");

    let host = MediaHost::start(HostConfig::new(&dir)).await.expect("host");
    let proxy = MediaProxy::start(ProxyConfig::new(host.ca_pem()))
        .await
        .expect("proxy");
    let info = host.add_object(&object, Fault::None).await.expect("object");
    let tls = gatecheck::http::client::tls_config(host.ca_pem()).expect("TLS config");
    let timeouts = Timeouts {
        idle: Duration::from_secs(30),
        ..Timeouts::default()
    };

    let plain = || async {
        let mut sink = Discard::default();
        let got = get_to_sink(&info.url, Some(&tls), &[], SIZE, &timeouts, &mut sink)
            .await
            .expect("plain copy");
        assert!(got.status == 200 && got.complete(), "{got:?}");
        sink.bytes
    };
    let proxied = || async {
        let mut sink = Discard::default();
        let (got, record) = proxy
            .fetch(&info.url, None, &mut sink)
            .await
            .expect("proxied copy");
        assert!(got.status == 200 && got.complete(), "{got:?}");
        let record = record.expect("the proxy's record");
        assert!(record.deviations.is_empty(), "{:?}", record.deviations);
        sink.bytes
    };

    // The memory probe itself: 16 MiB touched must show as 16 MiB of growth.
    let calibration = {
        let reset = reset_peak();
        let (before, _) = memory();
        let block = std::hint::black_box(vec![1u8; 16 << 20]);
        let (_, peak) = memory();
        drop(block);
        reset.then(|| peak.saturating_sub(before))
    };

    // Warm-up: page cache, allocator, TLS session setup paths.
    plain().await;
    proxied().await;
    let (idle_rss, _) = memory();

    let (mut plain_rates, mut proxy_rates) = (Vec::new(), Vec::new());
    let (mut plain_growth, mut proxy_growth) = (0u64, 0u64);
    for round in 0..ROUNDS {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            if which == 0 {
                let (rate, growth) = measure(plain()).await;
                plain_rates.push(rate);
                plain_growth = plain_growth.max(growth);
            } else {
                let (rate, growth) = measure(proxied()).await;
                proxy_rates.push(rate);
                proxy_growth = proxy_growth.max(growth);
            }
        }
    }
    let (p, x) = (median(plain_rates.clone()), median(proxy_rates.clone()));
    println!(
        "media proxy bench: {ROUNDS} rounds of {} MiB, interleaved",
        SIZE >> 20
    );
    println!(
        "  plain   HTTPS host -> sink            median {p:8.1} MiB/s  (all: {})",
        list(&plain_rates)
    );
    println!(
        "  proxied HTTPS host -> proxy -> HTTP    median {x:8.1} MiB/s  (all: {})",
        list(&proxy_rates)
    );
    println!(
        "  ratio proxy / plain                   {:.2} (target >= 0.5)",
        x / p
    );
    if let Some(calibration) = calibration {
        println!(
            "  memory probe check                    16 MiB allocated shows as {:.1} MiB",
            calibration as f64 / 1024.0
        );
        println!(
            "  peak RSS growth during a transfer     plain {:.1} MiB, proxied {:.1} MiB (target < 32 MiB; idle RSS {:.1} MiB)",
            plain_growth as f64 / 1024.0,
            proxy_growth as f64 / 1024.0,
            idle_rss as f64 / 1024.0
        );
    } else {
        println!("  peak RSS growth: /proc/self/clear_refs not writable here, not measured");
    }
    drop(proxy);
    drop(host);
    drop(scratch);
}

fn list(v: &[f64]) -> String {
    v.iter()
        .map(|r| format!("{r:.0}"))
        .collect::<Vec<_>>()
        .join(" ")
}
