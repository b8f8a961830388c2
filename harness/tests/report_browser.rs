//! index.html opened as a person would: in a real headless Chromium (Debian's `chromium`,
//! which .ci/run installs). The page loads without a console message or script error and
//! fetches nothing; a verdict filter click changes what is shown; a transcript expands; a
//! screenshot is not blank. The page checks itself when its address ends in `#selftest` and
//! writes what it found into the DOM, which `--dump-dom` hands back.
//!
//! Without Chromium the test fails under CI (CI=true) and is skipped, saying so, elsewhere.
//! `GATECHECK_CHROMIUM` names another browser binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The Chromium binary, or why there is none.
fn chromium() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("GATECHECK_CHROMIUM") {
        return Ok(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err("no chromium, chromium-browser or google-chrome on PATH (apt-get install chromium; .ci/run does)".into())
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gatecheck-browser-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Runs the browser headless with `args`, at most a minute; returns (stdout, stderr).
fn browse(browser: &Path, profile: &Path, args: &[String]) -> (String, String) {
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", browser.display()));
    let deadline = Instant::now() + Duration::from_secs(60);
    // Read both pipes on their own threads so that a chatty browser never blocks.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} did not finish within 60 s", browser.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    )
}

/// A real run's index.html: three scenarios against the ping-error mutant (one fails).
fn real_page(dir: &Path) -> PathBuf {
    let reports = dir.join("reports");
    let out = Command::new(env!("CARGO_BIN_EXE_gatecheck"))
        .args([
            "run",
            "--mutant",
            "ping-error",
            "--seed",
            "5",
            "--report-dir",
        ])
        .arg(&reports)
        .args([
            "--scenario",
            "stanza/ping",
            "--scenario",
            "stanza/iq-without-child",
        ])
        .args(["--scenario", "stanza/disco-info"])
        .env("CI", "true")
        .output()
        .expect("gatecheck runs");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let run = std::fs::read_dir(&reports)
        .expect("reports")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.is_dir())
        .expect("a run directory");
    run.join("index.html")
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The pixels of an 8-bit RGB or RGBA PNG, as (width, height, RGBA bytes).
fn decode_png(bytes: &[u8]) -> (usize, usize, Vec<[u8; 4]>) {
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let mut at = 8;
    let (mut width, mut height, mut channels) = (0usize, 0usize, 0usize);
    let mut idat = Vec::new();
    while at + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let kind = &bytes[at + 4..at + 8];
        let data = &bytes[at + 8..at + 8 + len];
        match kind {
            b"IHDR" => {
                width = u32::from_be_bytes(data[0..4].try_into().expect("4")) as usize;
                height = u32::from_be_bytes(data[4..8].try_into().expect("4")) as usize;
                assert_eq!(data[8], 8, "bit depth");
                channels = match data[9] {
                    2 => 3,
                    6 => 4,
                    other => panic!("PNG colour type {other}"),
                };
                assert_eq!(data[12], 0, "not interlaced");
            }
            b"IDAT" => idat.extend_from_slice(data),
            b"IEND" => break,
            _ => {}
        }
        at += 12 + len;
    }
    let raw = miniz_oxide::inflate::decompress_to_vec_zlib(&idat).expect("inflates");
    let stride = width * channels;
    assert_eq!(raw.len(), height * (stride + 1), "image data size");
    let mut pixels = vec![0u8; height * stride];
    for y in 0..height {
        let filter = raw[y * (stride + 1)];
        let line = &raw[y * (stride + 1) + 1..(y + 1) * (stride + 1)];
        for x in 0..stride {
            let a = if x >= channels {
                pixels[y * stride + x - channels]
            } else {
                0
            };
            let b = if y > 0 {
                pixels[(y - 1) * stride + x]
            } else {
                0
            };
            let c = if y > 0 && x >= channels {
                pixels[(y - 1) * stride + x - channels]
            } else {
                0
            };
            let predicted = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => ((u16::from(a) + u16::from(b)) / 2) as u8,
                4 => {
                    let p = i16::from(a) + i16::from(b) - i16::from(c);
                    let (pa, pb, pc) = (
                        (p - i16::from(a)).abs(),
                        (p - i16::from(b)).abs(),
                        (p - i16::from(c)).abs(),
                    );
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                other => panic!("PNG filter {other}"),
            };
            pixels[y * stride + x] = line[x].wrapping_add(predicted);
        }
    }
    let rgba = pixels
        .chunks(channels)
        .map(|p| [p[0], p[1], p[2], if channels == 4 { p[3] } else { 255 }])
        .collect();
    (width, height, rgba)
}

#[test]
fn the_report_page_works_in_headless_chromium() {
    let browser = match chromium() {
        Ok(b) => b,
        Err(why) if in_ci() => panic!("CI=true but the browser test cannot run: {why}"),
        Err(why) => {
            eprintln!("SKIPPED the_report_page_works_in_headless_chromium: {why}");
            return;
        }
    };
    let dir = tempdir("page");
    let page = real_page(&dir);
    let url = format!("file://{}", page.display());

    let (dom, stderr) = browse(
        &browser,
        &dir.join("profile-dom"),
        &["--dump-dom".into(), format!("{url}#selftest")],
    );
    let console: Vec<&str> = stderr.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(
        console.is_empty(),
        "console messages while loading the page:\n{}",
        console.join("\n")
    );
    let start = dom.find("<pre id=\"selftest-result\"").unwrap_or_else(|| {
        panic!(
            "the page wrote no self-test result (did its script run?); browser stderr:\n{stderr}"
        )
    });
    let body_start = start + dom[start..].find('>').expect("tag end") + 1;
    let body_end = body_start + dom[body_start..].find("</pre>").expect("</pre>");
    let result: serde_json::Value =
        serde_json::from_str(&unescape(&dom[body_start..body_end])).expect("self-test JSON");
    let checks = result["checks"].as_array().expect("checks");
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| c["ok"] != true)
        .map(|c| format!("{}: {}", c["name"], c["detail"]))
        .collect();
    assert!(
        failed.is_empty() && result["ok"] == true,
        "self-test failed:\n{}",
        failed.join("\n")
    );
    for name in [
        "a verdict filter click hides its scenarios",
        "a transcript expands",
        "no request left the page",
        "no script error",
    ] {
        assert!(
            checks.iter().any(|c| c["name"] == name),
            "the self-test checks {name:?}"
        );
    }

    let shot = dir.join("page.png");
    let (_, stderr) = browse(
        &browser,
        &dir.join("profile-shot"),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,1024".into(),
            "--hide-scrollbars".into(),
            url,
        ],
    );
    let png = std::fs::read(&shot)
        .unwrap_or_else(|e| panic!("no screenshot ({e}); browser stderr:\n{stderr}"));
    let (w, h, pixels) = decode_png(&png);
    assert_eq!((w, h), (1280, 1024));
    let background = pixels[0];
    let inked = pixels.iter().filter(|p| **p != background).count();
    let mut colours: Vec<[u8; 4]> = pixels.clone();
    colours.sort_unstable();
    colours.dedup();
    assert!(
        inked * 100 > pixels.len() && colours.len() > 16,
        "the screenshot looks blank: {inked} of {} pixels differ from the background, {} colours",
        pixels.len(),
        colours.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
