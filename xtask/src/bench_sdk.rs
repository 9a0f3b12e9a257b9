//! `cargo xtask bench-sdk`: the Rust client against the official Python SDK, side by side.
//!
//! For each scenario it starts one release `tinker-local serve` (model `tinker-local/micro`),
//! then runs the Rust side (`crates/tinker-client/examples/sdk_bench.rs`, release) and the
//! Python side (`scripts/bench/sdk_bench.py` in the SDK venv) against it, alternating which
//! goes first, `--reps` times each. Every run is a fresh client process that prints one
//! `key=value` line with the wall and CPU time of its timed section; the driver adds the
//! whole process's wall and CPU time (its `cutime`+`cstime` in `/proc/self/stat`) and the
//! server's CPU time during the run, then prints medians and Rust/Python ratios as
//! Markdown. Not part of `cargo xtask test`: it is slow and its numbers depend on the load.
//!
//! Scenarios: `p1`-`p4` (the performance goals of issue 14: a large `forward_backward`, a
//! 10,000-sample fan-out, the memory of 2,000 samples in flight, pipelined training
//! overhead) and `sample`, `train`, `forward`, `startup`. The server runs with
//! `--zero-compute`, so the numbers are the clients' and the protocol's, not the model's.
//!
//! Options: `--reps N` (default 3), `--only p1,p2,...`, `--quick` (smaller sizes, for a
//! smoke run; writes nothing), `--no-build` (use the binaries already in
//! `target/release`), `--no-write` (print only; otherwise the tables replace the results
//! section of `docs/benchmarks.md`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crate::workspace_root;

/// Bytes per datum token of a cross-entropy forward request in protobuf: an int32 input
/// token, an int64 target and a float32 weight.
const PROTO_BYTES_PER_TOKEN: f64 = 16.0;

struct Options {
    reps: usize,
    only: Option<Vec<String>>,
    quick: bool,
    build: bool,
    /// Replace the results section of `docs/benchmarks.md` with this run's tables.
    write: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut options = Options {
            reps: 3,
            only: None,
            quick: false,
            build: true,
            write: true,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--reps" => {
                    let n = args.next().ok_or("--reps needs a number")?;
                    options.reps = n
                        .parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| format!("--reps: not a positive number: {n}"))?;
                }
                "--only" => {
                    let list = args.next().ok_or("--only needs a list of scenarios")?;
                    options.only = Some(list.split(',').map(str::to_owned).collect());
                }
                "--quick" => options.quick = true,
                "--no-build" => options.build = false,
                "--no-write" => options.write = false,
                other => return Err(format!("bench-sdk: unknown option {other}")),
            }
        }
        // A smoke run's numbers do not go into the docs.
        if options.quick {
            options.write = false;
        }
        Ok(options)
    }
}

/// One thing both clients do, with the same parameters.
struct Scenario {
    /// The name in tables and `--only`.
    name: &'static str,
    /// The client scenario both sides run (`sdk_bench.rs`, `sdk_bench.py`).
    client: &'static str,
    measures: String,
    /// `key=value` parameters passed to both sides.
    params: Vec<(&'static str, usize)>,
    metrics: Vec<Metric>,
}

impl Scenario {
    fn param(&self, key: &str) -> f64 {
        self.params
            .iter()
            .find(|(k, _)| *k == key)
            .map_or(0.0, |&(_, v)| v as f64)
    }
}

/// A number derived from one run.
struct Metric {
    label: &'static str,
    /// Whether a larger value is better (throughputs) or worse (times).
    higher_is_better: bool,
    value: fn(&RunResult, &Scenario) -> Option<f64>,
}

impl Metric {
    const fn new(
        label: &'static str,
        higher_is_better: bool,
        value: fn(&RunResult, &Scenario) -> Option<f64>,
    ) -> Self {
        Self {
            label,
            higher_is_better,
            value,
        }
    }
}

/// What one client process reported, plus what the driver measured around it.
#[derive(Debug, Clone, Default)]
struct RunResult {
    ops: f64,
    wall_s: f64,
    cpu_s: f64,
    /// Further numbers on the client's result line (`import_s`, `rss_peak_mib`, ...).
    extra: std::collections::BTreeMap<String, f64>,
    process_wall_s: f64,
    process_cpu_s: f64,
    server_cpu_s: f64,
    /// TCP connections opened on this machine during the run (`ActiveOpens` of
    /// `/proc/net/snmp`: system-wide, so other processes' connections count too).
    tcp_opened: f64,
}

impl RunResult {
    fn extra(&self, key: &str) -> Option<f64> {
        self.extra.get(key).copied()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Rust,
    Python,
}

/// Throughput, client CPU per op and the Rust side's allocations per op.
fn fanout_metrics() -> Vec<Metric> {
    vec![
        Metric::new("throughput (requests/s)", true, |r, _| {
            Some(r.ops / r.wall_s)
        }),
        Metric::new("client CPU per request (µs)", false, |r, _| {
            Some(r.cpu_s / r.ops * 1e6)
        }),
        Metric::new("TCP connections opened (system-wide)", false, |r, _| {
            Some(r.tcp_opened)
        }),
        Metric::new("allocations per request (Rust only)", false, |r, _| {
            r.extra("allocs_per_op")
        }),
        Metric::new("KiB allocated per request (Rust only)", false, |r, _| {
            r.extra("alloc_kib_per_op")
        }),
        Metric::new("server CPU per request (µs, context)", false, |r, _| {
            Some(r.server_cpu_s / r.ops * 1e6)
        }),
    ]
}

fn scenarios(quick: bool) -> Vec<Scenario> {
    let pick = |full: usize, small: usize| if quick { small } else { full };
    let n = pick(512, 128);
    let steps = pick(200, 40);
    let fwd_batch = pick(256, 32);
    let p1_batch = pick(1024, 128);
    let p2_n = pick(10_000, 1_000);
    let p3_n = pick(2_000, 500);
    let p4_steps = pick(200, 40);
    vec![
        Scenario {
            name: "p1",
            client: "fwdbwd",
            measures: format!(
                "P1, large forward_backward: 1 call of {p1_batch} datums × 2048 tokens \
                 (cross_entropy, model tinker-local/small), from the call to its result; \
                 {:.1} MB of tensors in protobuf before compression",
                p1_batch as f64 * 2048.0 * PROTO_BYTES_PER_TOKEN / 1e6
            ),
            params: vec![
                ("requests", 1),
                ("batch", p1_batch),
                ("seq_len", 2048),
                ("small", 1),
            ],
            metrics: vec![
                Metric::new("call → result (s)", false, |r, _| Some(r.wall_s / r.ops)),
                Metric::new("client CPU per call (s)", false, |r, _| {
                    Some(r.cpu_s / r.ops)
                }),
                Metric::new("server CPU per call (s, context)", false, |r, _| {
                    Some(r.server_cpu_s / r.ops)
                }),
            ],
        },
        Scenario {
            name: "p2",
            client: "sample",
            measures: format!(
                "P2, sampling fan-out: {p2_n} `sample` calls (8-token prompt, \
                 `max_tokens=1`) submitted at once, then all awaited"
            ),
            params: vec![("n", p2_n), ("prompt_len", 8)],
            metrics: fanout_metrics(),
        },
        Scenario {
            name: "p3",
            client: "burst",
            measures: format!(
                "P3, memory of a burst: {p3_n} `sample` calls in flight (as P2); resident \
                 set of the client process"
            ),
            params: vec![("n", p3_n), ("prompt_len", 8)],
            metrics: vec![
                Metric::new("peak RSS during the burst (MiB)", false, |r, _| {
                    r.extra("rss_peak_mib")
                }),
                Metric::new("RSS before (MiB)", false, |r, _| r.extra("rss_idle_mib")),
                Metric::new("RSS 200 ms after (MiB)", false, |r, _| {
                    r.extra("rss_after_mib")
                }),
                Metric::new(
                    "peak live heap per sample in flight (KiB, Rust only)",
                    false,
                    |r, _| r.extra("live_peak_kib_per_op"),
                ),
                Metric::new("TCP connections opened (system-wide)", false, |r, _| {
                    Some(r.tcp_opened)
                }),
            ],
        },
        Scenario {
            name: "p4",
            client: "train",
            measures: format!(
                "P4, pipelined training overhead: {p4_steps} `forward_backward` (8 datums × \
                 128 tokens, cross_entropy) + `optim_step` pairs, step i submitted before step \
                 i−1 is awaited; with zero compute the wall time per step is the overhead"
            ),
            params: vec![("steps", p4_steps), ("batch", 8), ("seq_len", 128)],
            metrics: vec![
                Metric::new("wall per step (ms)", false, |r, _| {
                    Some(r.wall_s / r.ops * 1e3)
                }),
                Metric::new("client CPU per step (ms)", false, |r, _| {
                    Some(r.cpu_s / r.ops * 1e3)
                }),
                Metric::new("allocations per step (Rust only)", false, |r, _| {
                    r.extra("allocs_per_op")
                }),
                Metric::new("server CPU per step (ms, context)", false, |r, _| {
                    Some(r.server_cpu_s / r.ops * 1e3)
                }),
            ],
        },
        Scenario {
            name: "sample",
            client: "sample",
            measures: format!(
                "sampling fan-out: {n} concurrent `sample` calls (8-token prompt, \
                 `max_tokens=1`), submitted at once, then all awaited"
            ),
            params: vec![("n", n), ("prompt_len", 8)],
            metrics: fanout_metrics(),
        },
        Scenario {
            name: "train",
            client: "train",
            measures: format!(
                "pipelined training: {steps} `forward_backward` (4 datums × 16 tokens, \
                 cross_entropy) + `optim_step` (Adam) pairs, step i submitted before step \
                 i−1 is awaited"
            ),
            params: vec![("steps", steps), ("batch", 4), ("seq_len", 16)],
            metrics: vec![
                Metric::new("wall per step (ms)", false, |r, _| {
                    Some(r.wall_s / r.ops * 1e3)
                }),
                Metric::new("client CPU per step (ms)", false, |r, _| {
                    Some(r.cpu_s / r.ops * 1e3)
                }),
                Metric::new("server CPU per step (ms, context)", false, |r, _| {
                    Some(r.server_cpu_s / r.ops * 1e3)
                }),
            ],
        },
        Scenario {
            name: "forward",
            client: "forward",
            measures: format!(
                "large request encoding: 1 `forward` (forward-only, cross_entropy) of \
                 {fwd_batch} datums × 512 tokens ({:.1} MB of tensors in protobuf)",
                fwd_batch as f64 * 512.0 * PROTO_BYTES_PER_TOKEN / 1e6
            ),
            params: vec![("requests", 1), ("batch", fwd_batch), ("seq_len", 512)],
            metrics: vec![
                Metric::new("client CPU per request (ms)", false, |r, _| {
                    Some(r.cpu_s / r.ops * 1e3)
                }),
                Metric::new("request MB per client CPU-second", true, |r, s| {
                    let bytes = s.param("batch") * s.param("seq_len") * PROTO_BYTES_PER_TOKEN;
                    Some(bytes * r.ops / r.cpu_s / 1e6)
                }),
                Metric::new("wall per request (s)", false, |r, _| Some(r.wall_s / r.ops)),
            ],
        },
        Scenario {
            name: "startup",
            client: "startup",
            measures: "start-up: client construction to the first \
                       `create_lora_training_client` result (rank 4); the process rows \
                       add interpreter/runtime start, `import tinker` and exit"
                .to_owned(),
            params: vec![],
            metrics: vec![
                Metric::new("construction → training client (ms)", false, |r, _| {
                    Some(r.wall_s * 1e3)
                }),
                Metric::new("client CPU in that span (ms)", false, |r, _| {
                    Some(r.cpu_s * 1e3)
                }),
                Metric::new("whole process, spawn → exit (ms)", false, |r, _| {
                    Some(r.process_wall_s * 1e3)
                }),
                Metric::new("whole process CPU (ms)", false, |r, _| {
                    Some(r.process_cpu_s * 1e3)
                }),
                Metric::new("`import tinker` (ms, Python only)", false, |r, _| {
                    r.extra("import_s").map(|s| s * 1e3)
                }),
            ],
        },
    ]
}

/// Where the driver's tables go in `docs/benchmarks.md`.
const DOC_BEGIN: &str = "<!-- bench-sdk results: begin (written by `cargo xtask bench-sdk`) -->";
const DOC_END: &str = "<!-- bench-sdk results: end -->";

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let options = Options::parse(args)?;
    let root = workspace_root();
    let python = crate::venv::sdk_python()?;
    if options.build {
        build(&root)?;
    }
    let release = target_dir(&root).join("release");
    let server_bin = release.join("tinker-local");
    let rust_bin = release.join("examples").join("sdk_bench");
    for bin in [&server_bin, &rust_bin] {
        if !bin.exists() {
            return Err(format!(
                "{} is missing: build it or drop --no-build",
                bin.display()
            ));
        }
    }
    let script = root.join("scripts").join("bench").join("sdk_bench.py");
    let ticks = clock_ticks();

    let mut report = Report::default();
    report.line(&format!(
        "Command: `cargo xtask bench-sdk {}`",
        args.join(" ")
    ));
    report.line("");
    report.line(&machine_description());
    report.line("");
    report.line(&format!(
        "Each scenario: one fresh `tinker-local serve --zero-compute` (release; instant \
         results of the right shapes, so the numbers are the clients' and the protocol's), \
         one unrecorded Rust run to warm it, then {} A/B runs per side in alternating order, each a fresh client process; median \
         with min–max in brackets. Rust/Python < 1 means Rust is lower (better for times \
         and memory, worse for throughputs).",
        options.reps
    ));

    for scenario in scenarios(options.quick) {
        if let Some(only) = &options.only
            && !only.iter().any(|o| o == scenario.name)
        {
            continue;
        }
        let load_before = load_average();
        let server = Server::start(&server_bin)?;
        // The first run on a fresh server is slower (lazy set-up, cold caches): one
        // unrecorded run first, so that neither side's first run pays for it.
        let mut warm_up = Command::new(&rust_bin);
        warm_up.arg(scenario.client).arg(&server.url);
        for (key, value) in &scenario.params {
            warm_up.arg(format!("{key}={value}"));
        }
        run_client(&mut warm_up, &server, ticks)
            .map_err(|e| format!("{} warm-up run: {e}", scenario.name))?;
        let mut rust_runs = Vec::new();
        let mut python_runs = Vec::new();
        for rep in 0..options.reps {
            let order = if rep.is_multiple_of(2) {
                [Side::Rust, Side::Python]
            } else {
                [Side::Python, Side::Rust]
            };
            for side in order {
                let mut command = match side {
                    Side::Rust => Command::new(&rust_bin),
                    Side::Python => {
                        let mut c = Command::new(&python);
                        c.arg(&script);
                        c
                    }
                };
                command.arg(scenario.client).arg(&server.url);
                for (key, value) in &scenario.params {
                    command.arg(format!("{key}={value}"));
                }
                let result = run_client(&mut command, &server, ticks)
                    .map_err(|e| format!("{} {side:?} run {rep}: {e}", scenario.name))?;
                eprintln!(
                    "  {} {side:?} run {rep}: wall {:.3}s cpu {:.3}s",
                    scenario.name, result.wall_s, result.cpu_s
                );
                match side {
                    Side::Rust => rust_runs.push(result),
                    Side::Python => python_runs.push(result),
                }
            }
        }
        drop(server);
        print_table(
            &mut report,
            &scenario,
            &rust_runs,
            &python_runs,
            (&load_before, &load_average()),
        );
    }
    report.line("");
    report.line(&format!("Load average at the end: {}", load_average()));
    if options.write {
        let path = root.join("docs").join("benchmarks.md");
        write_results(&path, &report.0)?;
        eprintln!("wrote the results into {}", path.display());
    }
    Ok(())
}

/// The Markdown the run produces, echoed to stdout as it grows.
#[derive(Default)]
struct Report(String);

impl Report {
    fn line(&mut self, text: &str) {
        println!("{text}");
        self.0.push_str(text);
        self.0.push('\n');
    }
}

/// Replaces the text between [`DOC_BEGIN`] and [`DOC_END`] in `path` (appending both
/// markers if they are missing).
fn write_results(path: &Path, results: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let block = format!("{DOC_BEGIN}\n\n{results}\n{DOC_END}");
    let updated = match (text.find(DOC_BEGIN), text.find(DOC_END)) {
        (Some(begin), Some(end)) if begin < end => {
            format!("{}{block}{}", &text[..begin], &text[end + DOC_END.len()..])
        }
        _ => format!("{text}\n{block}\n"),
    };
    std::fs::write(path, updated).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Builds the server and the Rust side in one cargo invocation, so that both see one
/// feature set (two separate builds would each rebuild the other's dependencies).
fn build(root: &Path) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let args = [
        "build",
        "--release",
        "--locked",
        "-p",
        "tinker-local",
        "-p",
        "tinker-client",
        "--bin",
        "tinker-local",
        "--example",
        "sdk_bench",
    ];
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(root)
        .status()
        .map_err(|e| format!("could not run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`cargo {}` exited with {status} (use --no-build to run the binaries already \
             built)",
            args.join(" ")
        ))
    }
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

/// A zero-compute `tinker-local serve` on a free port with its own data directory, killed on drop.
struct Server {
    child: Child,
    url: String,
    _data_dir: tempfile::TempDir,
}

impl Server {
    fn start(binary: &Path) -> Result<Self, String> {
        let data_dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let mut child = Command::new(binary)
            .args([
                "serve",
                "--zero-compute",
                "--addr",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data_dir.path())
            .env("TINKER_LOCAL_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("could not start {}: {e}", binary.display()))?;
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            BufReader::new(stdout)
                .read_line(&mut line)
                .map_err(|e| format!("reading the server's first line: {e}"))?;
        }
        let Some(url) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("unexpected first line from tinker-local: {line:?}"));
        };
        Ok(Self {
            url: url.to_owned(),
            child,
            _data_dir: data_dir,
        })
    }

    /// CPU seconds the server has used so far.
    fn cpu_s(&self, ticks: f64) -> f64 {
        let fields = proc_stat_fields(&format!("/proc/{}/stat", self.child.id()));
        // utime and stime are fields 14 and 15.
        (field(&fields, 14) + field(&fields, 15)) / ticks
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_client(command: &mut Command, server: &Server, ticks: f64) -> Result<RunResult, String> {
    let children_cpu = || {
        let fields = proc_stat_fields("/proc/self/stat");
        // cutime and cstime (fields 16 and 17): CPU of the children we have waited for.
        (field(&fields, 16) + field(&fields, 17)) / ticks
    };
    let cpu0 = children_cpu();
    let server0 = server.cpu_s(ticks);
    let opens0 = tcp_active_opens();
    let started = Instant::now();
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not run {command:?}: {e}"))?;
    let process_wall_s = started.elapsed().as_secs_f64();
    let server_cpu_s = server.cpu_s(ticks) - server0;
    let process_cpu_s = children_cpu() - cpu0;
    let tcp_opened = tcp_active_opens() - opens0;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result_line = stdout.lines().rfind(|l| l.starts_with("side="));
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        let tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
        if result_line.is_none() {
            return Err(format!(
                "exited with {}:\n{tail}\nstdout: {stdout:?}",
                output.status
            ));
        }
        // The timed section finished and was reported; only the exit failed (seen once
        // with the Python SDK: SIGABRT at interpreter shutdown). Keep the result, say so.
        eprintln!(
            "  warning: {command:?} exited with {} after printing its result{}",
            output.status,
            if tail.is_empty() {
                String::new()
            } else {
                format!(":\n{tail}")
            }
        );
    }
    let line = result_line.ok_or_else(|| format!("no result line in its output: {stdout:?}"))?;
    let mut result = RunResult {
        process_wall_s,
        process_cpu_s,
        server_cpu_s,
        tcp_opened,
        ..RunResult::default()
    };
    for pair in line.split_whitespace() {
        let Some((key, value)) = pair.split_once('=') else {
            continue;
        };
        let number = || {
            value
                .parse::<f64>()
                .map_err(|_| format!("bad number in {pair:?}"))
        };
        match key {
            "ops" => result.ops = number()?,
            "wall_s" => result.wall_s = number()?,
            "cpu_s" => result.cpu_s = number()?,
            "side" | "scenario" => {}
            other => {
                result.extra.insert(other.to_owned(), number()?);
            }
        }
    }
    if result.ops <= 0.0 || result.wall_s <= 0.0 {
        return Err(format!("incomplete result line: {line:?}"));
    }
    Ok(result)
}

fn print_table(
    report: &mut Report,
    scenario: &Scenario,
    rust: &[RunResult],
    python: &[RunResult],
    (load_before, load_after): (&str, &str),
) {
    report.line("");
    report.line(&format!("### {}", scenario.name));
    report.line("");
    report.line(&format!(
        "{} (load average before: {load_before}, after: {load_after}; {} runs per side)",
        scenario.measures,
        rust.len()
    ));
    report.line("");
    report.line("| metric | Rust | Python | Rust/Python | better |");
    report.line("|---|---:|---:|---:|---|");
    for metric in &scenario.metrics {
        let values = |runs: &[RunResult]| -> Vec<f64> {
            runs.iter()
                .filter_map(|r| (metric.value)(r, scenario))
                .collect()
        };
        let (rv, pv) = (values(rust), values(python));
        let (r, p) = (median(rv.clone()), median(pv.clone()));
        let show = |v: Option<f64>, all: &[f64]| match v {
            None => "–".to_owned(),
            Some(v) if all.len() > 1 => {
                let min = all.iter().copied().fold(f64::INFINITY, f64::min);
                let max = all.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                format!(
                    "{} ({}–{})",
                    format_number(v),
                    format_number(min),
                    format_number(max)
                )
            }
            Some(v) => format_number(v),
        };
        let (ratio, better) = match (r, p) {
            (Some(r), Some(p)) if p > 0.0 && r > 0.0 => {
                let rust_better = if metric.higher_is_better {
                    r > p
                } else {
                    r < p
                };
                let factor = if metric.higher_is_better {
                    r / p
                } else {
                    p / r
                };
                let better = if rust_better {
                    format!("Rust ×{}", format_number(factor))
                } else {
                    format!("Python ×{}", format_number(1.0 / factor))
                };
                (format!("{:.3}", r / p), better)
            }
            _ => ("–".to_owned(), String::new()),
        };
        report.line(&format!(
            "| {} | {} | {} | {ratio} | {better} |",
            metric.label,
            show(r, &rv),
            show(p, &pv)
        ));
    }
}

/// `ActiveOpens` of `/proc/net/snmp`: TCP connections this machine has opened so far.
fn tcp_active_opens() -> f64 {
    let text = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut tcp = text.lines().filter(|l| l.starts_with("Tcp:"));
    let (Some(names), Some(values)) = (tcp.next(), tcp.next()) else {
        return 0.0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "ActiveOpens")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0.0)
}

fn format_number(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

/// The fields of a `/proc/<pid>/stat` line that follow the command name, which may hold
/// spaces (so field 3, the state, is at index 0).
fn proc_stat_fields(path: &str) -> Vec<f64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let after_comm = text.rsplit_once(") ").map_or("", |(_, rest)| rest);
    after_comm
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect()
}

/// Field `n` (1-based, as in proc(5)) of a `proc_stat_fields` result.
fn field(fields: &[f64], n: usize) -> f64 {
    fields.get(n - 3).copied().unwrap_or(0.0)
}

/// Clock ticks per second of `/proc` times (`getconf CLK_TCK`, 100 on Linux).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn machine_description() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map_or("unknown CPU", |l| l.trim_start_matches([' ', '\t', ':']));
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "Machine: {cpu}, {cores} cores, {mem_gib:.0} GiB RAM, Linux {}; load average at \
         the start: {}; official SDK tinker {}.",
        kernel.trim(),
        load_average(),
        crate::venv::SDK_VERSION
    )
}
