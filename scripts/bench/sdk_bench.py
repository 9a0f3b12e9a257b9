"""Python SDK side of `cargo xtask bench-sdk`: one benchmark scenario, one `key=value` line out.

Usage: <SDK venv python> scripts/bench/sdk_bench.py <scenario> <server-url> [key=value ...]

Uses only the public API of the installed official SDK (`tinker` 0.38.0) and the standard
library; `crates/tinker-client/examples/sdk_bench.rs` is the Rust side and does the same
work with the same parameters (keep the two in step). Scenarios:

* `sample n=512 prompt_len=8`: `n` concurrent `sample` calls with `max_tokens=1`
  (all submitted, then all results collected);
* `train steps=200 batch=4 seq_len=16`: `steps` back-to-back `forward_backward` +
  `optim_step` pairs, pipelined one step deep (step i is submitted before step i-1's
  results are awaited);
* `forward requests=3 batch=256 seq_len=512`: `requests` sequential forward-only calls on
  a large batch (the data is built before the timer starts);
* `startup`: `ServiceClient(...)` to the first `create_lora_training_client` result
  (`import_s` reports the time of `import tinker` separately);
* `fwdbwd requests=1 batch=1024 seq_len=2048 small=1`: `requests` sequential
  `forward_backward` calls (cross-entropy), each from the call to its result (`small=1`
  uses `tinker-local/small`, whose context holds 2048 tokens);
* `burst n=2000 prompt_len=8`: like `sample`, and reports resident memory: `rss_idle_mib`
  before the burst, `rss_peak_mib` during it (peak reset through `/proc/self/clear_refs`)
  and `rss_after_mib` 200 ms after the last result.

`h2c=1` is for the Rust side (HTTP/2 with prior knowledge) and ignored here: the SDK
keeps its default transport.

`wall_s` and `cpu_s` (user+sys of this whole process, all threads, via
`getrusage(RUSAGE_SELF)`) cover the timed section only; set-up (session, clients, a
warm-up call) is excluded.
"""

from __future__ import annotations

import resource
import sys
import time
import warnings

MODEL = "tinker-local/micro"
SMALL_MODEL = "tinker-local/small"
API_KEY = "tml-bench"
LORA_RANK = 4
EXTRA: dict[str, float] = {}  # extra measurements reported on the result line


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Timer:
    """Wall and CPU time of a `with` block."""

    def __enter__(self) -> "Timer":
        self.cpu0 = cpu_now()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t0
        self.cpu = cpu_now() - self.cpu0


def tokens(length: int, salt: int) -> list[int]:
    """Deterministic ids in the micro vocabulary, avoiding the specials 0..3 (as in Rust)."""
    return [(i * 7 + salt * 13) % 1000 + 3 for i in range(length)]


def datum(types, length: int, salt: int):
    """A next-token datum over `length + 1` tokens."""
    toks = tokens(length + 1, salt)
    return types.Datum(
        model_input=types.ModelInput.from_ints(toks[:length]),
        loss_fn_inputs={"target_tokens": toks[1:], "weights": [1.0] * length},
    )


def connect(tinker, url: str):
    return tinker.ServiceClient(base_url=url, api_key=API_KEY)


def run_sample(url: str, p: dict[str, int]) -> tuple[int, Timer]:
    import tinker
    from tinker import types

    n = p.get("n", 512)
    prompt = types.ModelInput.from_ints(tokens(p.get("prompt_len", 8), 1))
    service = connect(tinker, url)
    sampler = service.create_sampling_client(base_model=MODEL).result()

    def request(i: int):
        params = types.SamplingParams(max_tokens=1, seed=i)
        return sampler.sample(prompt, num_samples=1, sampling_params=params)

    request(0).result()  # warm-up: session and connection set up
    with Timer() as t:
        futures = [request(i) for i in range(n)]
        for f in futures:
            if len(f.result().sequences) != 1:
                raise RuntimeError("expected one sequence per sample")
    return n, t


def run_train(url: str, p: dict[str, int]) -> tuple[int, Timer]:
    import tinker
    from tinker import types

    steps = p.get("steps", 200)
    data = [datum(types, p.get("seq_len", 16), i) for i in range(p.get("batch", 4))]
    service = connect(tinker, url)
    tc = service.create_lora_training_client(base_model=MODEL, rank=LORA_RANK).result()
    adam = types.AdamParams(learning_rate=1e-3)

    def step():
        return tc.forward_backward(data, "cross_entropy"), tc.optim_step(adam)

    for f in step():  # warm-up
        f.result()
    with Timer() as t:
        previous = None
        for _ in range(steps):
            current = step()
            if previous is not None:
                for f in previous:
                    f.result()
            previous = current
        if previous is not None:
            for f in previous:
                f.result()
    return steps, t


def run_forward(url: str, p: dict[str, int]) -> tuple[int, Timer]:
    import tinker
    from tinker import types

    requests = p.get("requests", 3)
    batch = p.get("batch", 256)
    data = [datum(types, p.get("seq_len", 512), i) for i in range(batch)]
    service = connect(tinker, url)
    tc = service.create_lora_training_client(base_model=MODEL, rank=LORA_RANK).result()
    tc.forward(data[:1], "cross_entropy").result()  # warm-up
    with Timer() as t:
        for _ in range(requests):
            out = tc.forward(data, "cross_entropy").result()
            if len(out.loss_fn_outputs) != batch:
                raise RuntimeError("expected one output per datum")
    return requests, t


def run_startup(url: str, p: dict[str, int]) -> tuple[int, Timer]:
    t0 = time.perf_counter()
    import tinker

    EXTRA["import_s"] = time.perf_counter() - t0  # reported, not part of the timed section
    with Timer() as t:
        service = connect(tinker, url)
        service.create_lora_training_client(base_model=MODEL, rank=LORA_RANK).result()
    return 1, t


def run_fwdbwd(url: str, p: dict[str, int]) -> tuple[int, Timer]:
    import tinker
    from tinker import types

    requests = p.get("requests", 1)
    batch = p.get("batch", 1024)
    model = SMALL_MODEL if p.get("small", 1) == 1 else MODEL
    data = [datum(types, p.get("seq_len", 2048), i) for i in range(batch)]
    service = connect(tinker, url)
    tc = service.create_lora_training_client(base_model=model, rank=LORA_RANK).result()
    tc.forward_backward(data[:1], "cross_entropy").result()  # warm-up
    with Timer() as t:
        for _ in range(requests):
            out = tc.forward_backward(data, "cross_entropy").result()
            if len(out.loss_fn_outputs) != batch:
                raise RuntimeError("expected one output per datum")
    return requests, t


def status_mib(field: str) -> float:
    """A kB field of /proc/self/status (VmRSS, VmHWM) in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return float(line.split()[1]) / 1024.0
    return 0.0


def run_burst(url: str, p: dict[str, int]) -> tuple[int, Timer]:
    import tinker
    from tinker import types

    n = p.get("n", 2000)
    prompt = types.ModelInput.from_ints(tokens(p.get("prompt_len", 8), 1))
    service = connect(tinker, url)
    sampler = service.create_sampling_client(base_model=MODEL).result()

    def request(i: int):
        params = types.SamplingParams(max_tokens=1, seed=i)
        return sampler.sample(prompt, num_samples=1, sampling_params=params)

    request(0).result()  # warm-up
    EXTRA["rss_idle_mib"] = status_mib("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak resident set size to the current one
        reset = True
    except OSError:
        reset = False
    with Timer() as t:
        futures = [request(i) for i in range(n)]
        for f in futures:
            if len(f.result().sequences) != 1:
                raise RuntimeError("expected one sequence per sample")
    if reset:
        EXTRA["rss_peak_mib"] = status_mib("VmHWM")
    del futures
    time.sleep(0.2)
    EXTRA["rss_after_mib"] = status_mib("VmRSS")
    return n, t


SCENARIOS = {
    "fwdbwd": run_fwdbwd,
    "burst": run_burst,
    "sample": run_sample,
    "train": run_train,
    "forward": run_forward,
    "startup": run_startup,
}


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in SCENARIOS:
        print(__doc__, file=sys.stderr)
        return 2
    scenario, url = argv[0], argv[1]
    params: dict[str, int] = {}
    for arg in argv[2:]:
        key, _, value = arg.partition("=")
        params[key] = int(value)
    # Use the SDK the way 0.38 documents it: a deprecated call path fails the run.
    warnings.simplefilter("error", FutureWarning)
    ops, t = SCENARIOS[scenario](url, params)
    line = f"side=python scenario={scenario} ops={ops} wall_s={t.wall:.6f} cpu_s={t.cpu:.6f}"
    for key, value in EXTRA.items():
        line += f" {key}={value:.6f}"
    print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
