//! Rust side of `cargo xtask bench-sdk`: one benchmark scenario against a running
//! tinker-local, printed as one `key=value` line. `scripts/bench/sdk_bench.py` is the Python SDK
//! side and does the same work with the same parameters; keep the two in step.
//!
//! Usage: `sdk_bench <scenario> <server-url> [key=value ...]`, scenarios:
//! * `sample n=512 prompt_len=8`: `n` concurrent `sample` calls with `max_tokens=1`;
//! * `train steps=200 batch=4 seq_len=16`: `steps` back-to-back `forward_backward` +
//!   `optim_step` pairs, pipelined one step deep (step i is submitted before step i−1 is
//!   awaited);
//! * `forward requests=3 batch=256 seq_len=512`: `requests` sequential forward-only calls
//!   on a large batch (the data is built before the timer starts);
//! * `startup`: client construction to the first `create_lora_training_client` result;
//! * `fwdbwd requests=1 batch=1024 seq_len=2048 small=1`: `requests` sequential
//!   `forward_backward` calls (cross-entropy), each from the call to its decoded result
//!   (`small=1` uses `tinker-local/small`, whose context holds 2048 tokens);
//! * `burst n=2000 prompt_len=8`: like `sample`, and reports the process's resident memory:
//!   `rss_idle_mib` before the burst, `rss_peak_mib` during it (the peak is reset first
//!   through `/proc/self/clear_refs`) and `rss_after_mib` 200 ms after the last result;
//!   `trim=1` calls glibc's `malloc_trim(0)` right after the last result (how much of
//!   the freed memory the allocator gives back; another allocator is measured by
//!   preloading it, e.g. `LD_PRELOAD=libmimalloc.so.2`).
//!
//! Every scenario takes `h2c=1`: the client speaks HTTP/2 with prior knowledge
//! ([`tinker_client::ServiceClientBuilder::http2_prior_knowledge`]) instead of HTTP/1.1 (the
//! Python side ignores it and uses its default); `h1max=N`: at most `N` HTTP/1.1
//! connections (`TransportBuilder::http1_max_connections`); `legacy_pool=1`: the HTTP/1.1
//! pool as it was before issue 14 (20 idle connections, no bound), for A/B runs; `rt=N`:
//! the tokio runtime, `0` (default) `#[tokio::main]`'s (one worker per core, the scenario on
//! the main thread), `1` a current-thread runtime, `2` the default one with the scenario
//! spawned onto a worker (for measuring what cross-thread wake-ups cost).
//!
//! Every scenario also reports, from a counting global allocator, `allocs_per_op` and
//! `alloc_kib_per_op` (allocations and bytes allocated in the timed section, per op) and
//! `live_peak_kib_per_op` (the peak of live heap bytes above the start of the section, per
//! op: the state an op in flight holds; exact to within 64 KiB per thread, see
//! `Counting`).
//!
//! `wall_s` and `cpu_s` (user+sys of this whole process, `getrusage(RUSAGE_SELF)`) cover
//! the timed section only; set-up (session, clients, a warm-up call) is excluded.

// The counting global allocator below implements `GlobalAlloc`, which is unsafe to
// implement; it only forwards to `System` (as `tinker-types/tests/allocation_bounds.rs`).
#![allow(clippy::print_stdout, unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::resource::{UsageWho, getrusage};
use tinker_client::{ApiFuture, SamplingSource, ServiceClient, TrainingClient};
use tinker_types::{
    AdamParams, CrossEntropyInputs, Datum, LossFn, ModelInput, SampleResponse, SamplingParams,
};

type BoxResult<T> = Result<T, Box<dyn Error>>;

const MODEL: &str = "tinker-local/micro";
const API_KEY: &str = "tml-bench";
const SMALL_MODEL: &str = "tinker-local/small";
const LORA_RANK: u32 = 4;

/// The system allocator, counting what passes through it (for `allocs_per_op` & co.).
///
/// Counting must not cost the client much CPU itself: every allocation adding to shared
/// atomics made the worker threads contend for their cache lines (~6% of the client's CPU
/// in a sampling fan-out). So each thread counts allocations and bytes in its own shard
/// (summed when read), and keeps its change of live bytes to itself until it passes
/// [`LIVE_FLUSH`]: the live count and its peak are exact to within that much per thread.
struct Counting;

/// Shards of the allocation counters (threads past this many share them).
const SHARDS: usize = 64;
/// Bytes of live-heap change a thread keeps before adding them to [`LIVE`].
const LIVE_FLUSH: i64 = 64 * 1024;

/// One thread's allocation counters, on its own cache line.
#[repr(align(128))]
struct Shard {
    allocs: AtomicU64,
    bytes: AtomicU64,
}

static SHARD_COUNTERS: [Shard; SHARDS] = [const {
    Shard {
        allocs: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
    }
}; SHARDS];
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);
static LIVE: AtomicI64 = AtomicI64::new(0);
static LIVE_PEAK: AtomicI64 = AtomicI64::new(0);

thread_local! {
    /// This thread's shard (`usize::MAX`: not chosen yet).
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
    /// Live bytes allocated (or, negative, freed) by this thread, not yet in [`LIVE`].
    static LIVE_DELTA: Cell<i64> = const { Cell::new(0) };
}

impl Counting {
    fn shard() -> &'static Shard {
        let index = SHARD
            .try_with(|s| {
                if s.get() == usize::MAX {
                    s.set(NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS);
                }
                s.get()
            })
            .unwrap_or(0);
        &SHARD_COUNTERS[index]
    }

    fn live(delta: i64) {
        let flushed = LIVE_DELTA.try_with(|d| {
            let now = d.get() + delta;
            if now.abs() < LIVE_FLUSH {
                d.set(now);
                None
            } else {
                d.set(0);
                Some(now)
            }
        });
        // A thread being torn down adds its change at once.
        if let Some(change) = flushed.unwrap_or(Some(delta)) {
            let live = LIVE.fetch_add(change, Ordering::Relaxed) + change;
            LIVE_PEAK.fetch_max(live, Ordering::Relaxed);
        }
    }

    fn grew(size: usize) {
        let shard = Self::shard();
        shard.allocs.fetch_add(1, Ordering::Relaxed);
        shard.bytes.fetch_add(size as u64, Ordering::Relaxed);
        Self::live(i64::try_from(size).unwrap_or(i64::MAX));
    }

    fn shrank(size: usize) {
        Self::live(-i64::try_from(size).unwrap_or(i64::MAX));
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counters only
// observe sizes (thread-locals with constant initialisers and no destructors, which never
// allocate).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::grew(layout.size());
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        Self::shrank(layout.size());
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::shrank(layout.size());
        Self::grew(new_size);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocation counters at one moment.
#[derive(Clone, Copy)]
struct AllocSnapshot {
    allocs: u64,
    bytes: u64,
    live: i64,
}

impl AllocSnapshot {
    /// Now; also restarts the live-bytes peak from the current live bytes.
    fn take() -> Self {
        let live = LIVE.load(Ordering::Relaxed);
        LIVE_PEAK.store(live, Ordering::Relaxed);
        let sum = |f: fn(&Shard) -> &AtomicU64| {
            SHARD_COUNTERS
                .iter()
                .map(|s| f(s).load(Ordering::Relaxed))
                .sum()
        };
        Self {
            allocs: sum(|s| &s.allocs),
            bytes: sum(|s| &s.bytes),
            live,
        }
    }
}

fn main() -> BoxResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [scenario, url, rest @ ..] = args.as_slice() else {
        return Err("usage: sdk_bench <sample|train|forward|startup> <url> [key=value ...]".into());
    };
    let params = Params::parse(rest)?;
    match params.get("rt", 0) {
        // `#[tokio::main]`'s runtime: one worker per core, the scenario on the main thread.
        0 => tokio::runtime::Runtime::new()?.block_on(run(scenario, url, &params)),
        // One thread runs everything: no cross-thread wake-ups (for comparison).
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(run(scenario, url, &params)),
        // The default runtime with the scenario on a worker (spawned), not the main thread.
        2 => {
            let rt = tokio::runtime::Runtime::new()?;
            let (scenario, url, params) = (scenario.clone(), url.clone(), params.clone());
            rt.block_on(async move {
                tokio::spawn(async move {
                    run(&scenario, &url, &params)
                        .await
                        .map_err(|e| e.to_string())
                })
                .await?
                .map_err(Into::into)
            })
        }
        other => Err(format!("unknown rt={other} (0, 1 or 2)").into()),
    }
}

async fn run(scenario: &str, url: &str, params: &Params) -> BoxResult<()> {
    H2C.get_or_init(|| params.get("h2c", 0) != 0);
    H1_MAX.get_or_init(|| params.get("h1max", 0));
    LEGACY_POOL.get_or_init(|| params.get("legacy_pool", 0) != 0);
    let result = match scenario {
        "sample" => sample(url, params).await?,
        "train" => train(url, params).await?,
        "forward" => forward(url, params).await?,
        "startup" => startup(url).await?,
        "fwdbwd" => fwdbwd(url, params).await?,
        "burst" => burst(url, params).await?,
        other => return Err(format!("unknown scenario {other:?}").into()),
    };
    println!("{}", result.line(scenario));
    Ok(())
}

/// `key=value` arguments, with defaults for missing keys.
#[derive(Clone)]
struct Params(BTreeMap<String, usize>);

impl Params {
    fn parse(args: &[String]) -> BoxResult<Self> {
        let mut map = BTreeMap::new();
        for arg in args {
            let (key, value) = arg
                .split_once('=')
                .ok_or_else(|| format!("expected key=value, got {arg:?}"))?;
            map.insert(key.to_owned(), value.parse()?);
        }
        Ok(Self(map))
    }

    fn get(&self, key: &str, default: usize) -> usize {
        self.0.get(key).copied().unwrap_or(default)
    }
}

/// What one timed section measured.
struct Measured {
    ops: usize,
    wall: Duration,
    cpu: Duration,
    /// Extra `key=value` pairs for the result line.
    extra: Vec<(&'static str, f64)>,
}

impl Measured {
    /// The result line the driver parses: `side=rust scenario=.. ops=.. wall_s=.. cpu_s=..`.
    fn line(&self, scenario: &str) -> String {
        let mut line = format!(
            "side=rust scenario={scenario} ops={} wall_s={:.6} cpu_s={:.6}",
            self.ops,
            self.wall.as_secs_f64(),
            self.cpu.as_secs_f64()
        );
        for (key, value) in &self.extra {
            line.push_str(&format!(" {key}={value:.6}"));
        }
        line
    }
}

/// User+sys CPU time of this process (all threads) so far.
fn cpu_now() -> BoxResult<Duration> {
    let usage = getrusage(UsageWho::RUSAGE_SELF)?;
    let micros = |t: nix::sys::time::TimeVal| {
        u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000 + u64::try_from(t.tv_usec()).unwrap_or(0)
    };
    Ok(Duration::from_micros(
        micros(usage.user_time()) + micros(usage.system_time()),
    ))
}

/// Times `section`, returning its wall and CPU time.
async fn timed<T>(
    ops: usize,
    section: impl Future<Output = BoxResult<T>>,
) -> BoxResult<(T, Measured)> {
    let cpu0 = cpu_now()?;
    let alloc0 = AllocSnapshot::take();
    #[allow(clippy::disallowed_methods)] // measures real elapsed time, not the SDK clock
    let t0 = Instant::now();
    let out = section.await?;
    let wall = t0.elapsed();
    let cpu = cpu_now()?.saturating_sub(cpu0);
    // Read before the snapshot: taking one restarts the peak.
    let peak = LIVE_PEAK.load(Ordering::Relaxed);
    let alloc1 = AllocSnapshot::take();
    let peak = peak.max(alloc1.live);
    let per_op = |v: u64| v as f64 / ops.max(1) as f64;
    let extra = vec![
        ("allocs_per_op", per_op(alloc1.allocs - alloc0.allocs)),
        (
            "alloc_kib_per_op",
            per_op(alloc1.bytes - alloc0.bytes) / 1024.0,
        ),
        (
            "live_peak_kib_per_op",
            per_op(u64::try_from(peak - alloc0.live).unwrap_or(0)) / 1024.0,
        ),
    ];
    Ok((
        out,
        Measured {
            ops,
            wall,
            cpu,
            extra,
        },
    ))
}

/// Whether to speak HTTP/2 with prior knowledge (`h2c=1`; tinker-local serves h2c).
static H2C: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
/// `h1max=N`: the HTTP/1.1 connection bound (0: the default).
static H1_MAX: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
/// `legacy_pool=1`: the pool before issue 14's fix (20 idle connections, no bound), for
/// A/B runs.
static LEGACY_POOL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

async fn connect(url: &str) -> BoxResult<ServiceClient> {
    let mut builder = ServiceClient::builder().base_url(url).api_key(API_KEY);
    if H2C.get().copied().unwrap_or(false) {
        builder = builder.http2_prior_knowledge();
    }
    if let Some(&max) = H1_MAX.get().filter(|&&m| m > 0) {
        builder = builder.transport(|t| t.http1_max_connections(max));
    }
    if LEGACY_POOL.get().copied().unwrap_or(false) {
        builder = builder.transport(|t| {
            t.http1_max_connections(1 << 40)
                .pool(20, Duration::from_secs(90))
        });
    }
    Ok(builder.build().await?)
}

/// Deterministic token ids in the micro vocabulary, avoiding the specials 0..3
/// (the Python side uses the same formula).
fn tokens(len: usize, salt: usize) -> Vec<u32> {
    (0..len)
        .map(|i| u32::try_from((i * 7 + salt * 13) % 1000 + 3).unwrap_or(3))
        .collect()
}

/// A next-token datum over `len + 1` tokens.
fn datum(len: usize, salt: usize) -> BoxResult<Datum> {
    let toks = tokens(len + 1, salt);
    let targets: Vec<i64> = toks[1..].iter().map(|&t| i64::from(t)).collect();
    let weights = vec![1.0_f32; targets.len()];
    let inputs = CrossEntropyInputs::new(targets, weights)?.into_inputs()?;
    Ok(Datum::new(ModelInput::from_tokens(&toks[..len]), inputs))
}

async fn training_client(service: &ServiceClient) -> BoxResult<TrainingClient> {
    model_training_client(service, MODEL).await
}

async fn model_training_client(service: &ServiceClient, model: &str) -> BoxResult<TrainingClient> {
    Ok(service
        .create_lora_training_client(model, LORA_RANK)
        .await?)
}

async fn sample(url: &str, params: &Params) -> BoxResult<Measured> {
    let n = params.get("n", 512);
    let prompt = ModelInput::from_tokens(&tokens(params.get("prompt_len", 8), 1));
    let service = connect(url).await?;
    let sampler = service
        .create_sampling_client(SamplingSource::BaseModel(MODEL.into()))
        .await?;
    let request = |i: usize| {
        let mut p = SamplingParams::with_max_tokens(1);
        p.seed = Some(i as u64);
        sampler.sample(prompt.clone(), 1, p)
    };
    request(0).await?; // warm-up: session and connection set up
    let (_, measured) = timed(n, async {
        let futures: Vec<ApiFuture<SampleResponse>> = (0..n).map(request).collect();
        for f in futures {
            let resp = f.await?;
            if resp.sequences.len() != 1 {
                return Err("expected one sequence per sample".into());
            }
        }
        Ok(())
    })
    .await?;
    Ok(measured)
}

async fn train(url: &str, params: &Params) -> BoxResult<Measured> {
    let steps = params.get("steps", 200);
    // One batch reused by every step, as the Python side passes one list: an `Arc` clone
    // per call, not a copy of the datums.
    let data: Arc<[Datum]> = (0..params.get("batch", 4))
        .map(|i| datum(params.get("seq_len", 16), i))
        .collect::<BoxResult<_>>()?;
    let service = connect(url).await?;
    let tc = training_client(&service).await?;
    let adam = AdamParams::with_learning_rate(1e-3);
    let step = || {
        (
            tc.forward_backward(data.clone(), LossFn::CrossEntropy),
            tc.optim_step(adam),
        )
    };
    let (fb, op) = step(); // warm-up
    fb.await?;
    op.await?;
    let (_, measured) = timed(steps, async {
        let mut previous = None;
        for _ in 0..steps {
            let current = step();
            if let Some((fb, op)) = previous.replace(current) {
                fb.await?;
                op.await?;
            }
        }
        if let Some((fb, op)) = previous {
            fb.await?;
            op.await?;
        }
        Ok(())
    })
    .await?;
    Ok(measured)
}

async fn forward(url: &str, params: &Params) -> BoxResult<Measured> {
    let requests = params.get("requests", 3);
    let batch = params.get("batch", 256);
    let data: Vec<Datum> = (0..batch)
        .map(|i| datum(params.get("seq_len", 512), i))
        .collect::<BoxResult<_>>()?;
    let service = connect(url).await?;
    let tc = training_client(&service).await?;
    tc.forward(data[..1].to_vec(), LossFn::CrossEntropy).await?; // warm-up
    // One owned copy per request, made before the timer (Python passes the same list).
    let copies = vec![data; requests];
    let (_, measured) = timed(requests, async {
        for data in copies {
            let out = tc.forward(data, LossFn::CrossEntropy).await?;
            if out.loss_fn_outputs.len() != batch {
                return Err("expected one output per datum".into());
            }
        }
        Ok(())
    })
    .await?;
    Ok(measured)
}

async fn startup(url: &str) -> BoxResult<Measured> {
    let (_, measured) = timed(1, async {
        let service = connect(url).await?;
        training_client(&service).await
    })
    .await?;
    Ok(measured)
}

async fn fwdbwd(url: &str, params: &Params) -> BoxResult<Measured> {
    let requests = params.get("requests", 1);
    let batch = params.get("batch", 1024);
    let model = if params.get("small", 1) == 1 {
        SMALL_MODEL
    } else {
        MODEL
    };
    let data: Vec<Datum> = (0..batch)
        .map(|i| datum(params.get("seq_len", 2048), i))
        .collect::<BoxResult<_>>()?;
    let service = connect(url).await?;
    let tc = model_training_client(&service, model).await?;
    tc.forward_backward(data[..1].to_vec(), LossFn::CrossEntropy)
        .await?; // warm-up
    let copies = vec![data; requests];
    let (_, measured) = timed(requests, async {
        for data in copies {
            let out = tc.forward_backward(data, LossFn::CrossEntropy).await?;
            if out.loss_fn_outputs.len() != batch {
                return Err("expected one output per datum".into());
            }
        }
        Ok(())
    })
    .await?;
    Ok(measured)
}

/// A `kB` field of `/proc/self/status` (`VmRSS`, `VmHWM`), in MiB.
fn status_mib(field: &str) -> f64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Returns the allocator's free memory to the system (`trim=1`): glibc keeps freed
/// blocks in its arenas, so after a burst the resident set stays near its peak.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() {
    unsafe extern "C" {
        /// glibc: releases free memory at the top of the heap and, since 2.8, whole free
        /// pages inside every arena (`madvise(MADV_DONTNEED)`).
        fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }
    // SAFETY: glibc's `malloc_trim` takes no pointers and may be called at any time.
    unsafe {
        malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}

async fn burst(url: &str, params: &Params) -> BoxResult<Measured> {
    let n = params.get("n", 2000);
    let prompt = ModelInput::from_tokens(&tokens(params.get("prompt_len", 8), 1));
    let service = connect(url).await?;
    let sampler = service
        .create_sampling_client(SamplingSource::BaseModel(MODEL.into()))
        .await?;
    let request = |i: usize| {
        let mut p = SamplingParams::with_max_tokens(1);
        p.seed = Some(i as u64);
        sampler.sample(prompt.clone(), 1, p)
    };
    request(0).await?; // warm-up
    let rss_idle = status_mib("VmRSS");
    // "5" resets the peak resident set size (VmHWM) to the current one.
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let (_, mut measured) = timed(n, async {
        let futures: Vec<ApiFuture<SampleResponse>> = (0..n).map(request).collect();
        for f in futures {
            if f.await?.sequences.len() != 1 {
                return Err("expected one sequence per sample".into());
            }
        }
        Ok(())
    })
    .await?;
    let rss_peak = status_mib("VmHWM");
    if params.get("trim", 0) != 0 {
        release_free_memory();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_after = status_mib("VmRSS");
    if reset {
        measured.extra.push(("rss_peak_mib", rss_peak));
    }
    measured.extra.push(("rss_idle_mib", rss_idle));
    measured.extra.push(("rss_after_mib", rss_after));
    Ok(measured)
}
