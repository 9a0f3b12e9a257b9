"""Conformance run: drive tinker-local with an unchanged official Python SDK.

Usage: <venv python> scripts/conformance/run.py PATH/TO/tinker-local

The pinned SDK is 0.38; `cargo xtask test` also runs this script with older SDKs (the
compatibility matrix). A step that needs something a version lacks is skipped and listed
with its reason (see SDK_GAPS); every other step must pass with every version.

Starts `tinker-local serve` on a free port with a temporary data directory (extra server
flags, e.g. `--jwt` or `--faults ...`, can be given in TINKER_LOCAL_ARGS), then runs a
training + sampling + checkpoint + REST scenario through the SDK. Every step checks
something a wrong server would fail. Exits 0 on success, 1 on the first failed check.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

BASE_MODEL = "tinker-local/micro"
API_KEY = "tml-conformance"
TEXTS = [
    "the quick brown fox jumps over the lazy dog.",
    "tinker trains tiny models on the cpu.",
    "a local server speaks the tinker protocol.",
    "loss goes down when the model learns.",
]

steps_done: list[str] = []
steps_skipped: list[tuple[str, str]] = []


def sdk_version() -> tuple[int, ...]:
    from importlib.metadata import version

    return tuple(int(p) for p in version("tinker").split(".")[:3] if p.isdigit())


# What older SDKs lack, as (step, first version that has it, reason). Steps not listed run
# with every version of the matrix.
SDK_GAPS = [
    ("checkpoint archive download", None, "the archive route left the client in 0.38 (external weights replace it)"),
    ("session finish: heartbeats get 410 afterwards", (0, 38), "ServiceClient.close() is new in 0.38"),
]


def supported(name: str) -> bool:
    """Whether the running SDK has what step `name` needs; records the skip if not."""
    v = sdk_version()
    for step_name, since, reason in SDK_GAPS:
        if step_name != name:
            continue
        lacking = (since is not None and v < since) or (since is None and v >= (0, 38))
        if lacking:
            steps_skipped.append((name, reason))
            print(f"[conformance] skipped: {name} ({reason})", flush=True)
            return False
    return True


def done(x):
    """The value of an SDK call: 0.38 returns futures where older SDKs returned clients."""
    return x.result() if hasattr(x, "result") else x


def check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


STARTED = time.monotonic()


def step(name: str) -> None:
    steps_done.append(name)
    print(f"[conformance {time.monotonic() - STARTED:6.1f}s] {name}", flush=True)


def start_server(binary: str, data_dir: str, args: list[str] | None = None) -> tuple[subprocess.Popen[str], str]:
    extra = os.environ.get("TINKER_LOCAL_ARGS", "").split() + (args or [])
    proc = subprocess.Popen(
        [binary, "serve", "--addr", "127.0.0.1:0", "--data-dir", data_dir, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    prefix = "listening on "
    if not line.startswith(prefix):
        proc.kill()
        raise RuntimeError(f"unexpected first line from tinker-local: {line!r}")
    return proc, line[len(prefix):]


def post_json(url: str, path: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(
        f"{url}/api/v1/{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-API-Key": API_KEY},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def per_token(metrics: dict, weight: float) -> float:
    return metrics["loss:sum"] / weight


def run(url: str) -> dict:
    import warnings

    import numpy as np
    import tinker
    from tinker import types

    # Use the SDK the way 0.38 documents it: a deprecated call path fails the run.
    if sdk_version() >= (0, 38):
        warnings.simplefilter("error", FutureWarning)

    summary: dict = {}
    service = tinker.ServiceClient(base_url=url, api_key=API_KEY)

    step("create a LoRA training client on the micro model")
    training = done(service.create_lora_training_client(base_model=BASE_MODEL, rank=8, seed=0))
    info = training.get_info()
    run_id = info.model_id
    check(run_id.endswith(":train:0"), f"model id {run_id!r} is not <session>:train:0")
    check(info.lora_rank == 8 and info.is_lora, f"get_info reports {info}")

    step("get_tokenizer() from the tokenizer_id the server reports (fetched hub-style)")
    check(info.model_data.tokenizer_id == BASE_MODEL, f"tokenizer_id {info.model_data.tokenizer_id!r} is not portable")
    tokenizer = training.get_tokenizer()
    ids = tokenizer.encode(TEXTS[0])
    check(len(ids) > 3, "the tokenizer produced too few tokens")
    check(tokenizer.decode(ids).strip() == TEXTS[0], "tokenizer round trip failed")
    check(max(ids) < 1024, "token ids exceed the micro model's vocabulary")

    data = []
    total_weight = 0.0
    for text in TEXTS:
        toks = tokenizer.encode(text)
        data.append(
            types.Datum(
                model_input=types.ModelInput.from_ints(toks[:-1]),
                loss_fn_inputs={
                    "target_tokens": toks[1:],
                    "weights": [1.0] * (len(toks) - 1),
                },
            )
        )
        total_weight += len(toks) - 1

    step("20 cross_entropy steps: the loss falls")
    adam = types.AdamParams(learning_rate=2e-2)
    curve = []
    for _ in range(20):
        fb = training.forward_backward(data, "cross_entropy").result()
        training.optim_step(adam).result()
        check(len(fb.loss_fn_outputs) == len(data), "one loss_fn_output per datum expected")
        curve.append(per_token(fb.metrics, total_weight))
    summary["loss_curve"] = [round(x, 4) for x in curve]
    check(all(math.isfinite(x) for x in curve), f"non-finite loss: {curve}")
    check(curve[-1] < 0.6 * curve[0], f"loss did not fall enough: {curve[0]:.3f} -> {curve[-1]:.3f}")
    check(curve[-1] < curve[10] < curve[0], f"loss is not decreasing: {curve}")

    step("forward-only logprobs match the reported loss and change nothing")
    fwd1 = training.forward(data, "cross_entropy").result()
    fwd2 = training.forward(data, "cross_entropy").result()
    lp1 = [np.asarray(o["logprobs"].tolist(), dtype=np.float64) for o in fwd1.loss_fn_outputs]
    lp2 = [np.asarray(o["logprobs"].tolist(), dtype=np.float64) for o in fwd2.loss_fn_outputs]
    for d, a, b in zip(data, lp1, lp2):
        check(len(a) == len(d.loss_fn_inputs["target_tokens"].tolist()), "logprobs length mismatch")
        check(np.allclose(a, b, atol=1e-5), "forward() changed the weights")
        check(np.all(a <= 1e-6), "logprobs must be <= 0")
    check(
        abs(-sum(float(a.sum()) for a in lp1) - fwd1.metrics["loss:sum"]) < 1e-3 * max(1.0, fwd1.metrics["loss:sum"]),
        "loss:sum != -sum(weights * logprobs)",
    )
    forward_loss = fwd1.metrics["loss:sum"] / total_weight

    step("pipelined forward_backward + optim_step (submitted before any result)")
    futures = []
    for _ in range(3):
        futures.append(training.forward_backward(data, "cross_entropy"))
        futures.append(training.optim_step(adam))
    results = [f.result() for f in futures]
    pipelined = [per_token(r.metrics, total_weight) for r in results[0::2]]
    check(abs(pipelined[0] - forward_loss) < 1e-4, "the first pipelined fwd/bwd did not see the forward-only weights")
    check(pipelined[2] < pipelined[1] < pipelined[0], f"pipelined steps did not apply in order: {pipelined}")
    summary["pipelined"] = [round(x, 4) for x in pipelined]

    step("save_state, then create_training_client_from_state_with_optimizer")
    saved = training.save_state("conformance-state").result()
    check(saved.path == f"tinker://{run_id}/weights/conformance-state", f"save_state path {saved.path}")
    restored = done(service.create_training_client_from_state_with_optimizer(saved.path))
    weights_only = done(service.create_training_client_from_state(saved.path))
    check(restored.get_info().model_id.endswith(":train:1"), "restored model id should be <session>:train:1")
    check(weights_only.get_info().model_id.endswith(":train:2"), "weights-only model id should be <session>:train:2")
    a = training.forward(data, "cross_entropy").result().metrics["loss:sum"]
    b = restored.forward(data, "cross_entropy").result().metrics["loss:sum"]
    check(abs(a - b) < 1e-3, f"restored weights differ: {a} vs {b}")
    # One more identical step on the original and on the restored client: identical only if
    # the Adam moments were restored too; the weights-only client must diverge.
    for client in (training, restored, weights_only):
        client.forward_backward(data, "cross_entropy").result()
        client.optim_step(adam).result()
    after = [c.forward(data, "cross_entropy").result().metrics["loss:sum"] for c in (training, restored, weights_only)]
    check(abs(after[0] - after[1]) < 1e-3, f"optimizer state was not restored: {after[0]} vs {after[1]}")
    check(abs(after[0] - after[2]) > 1e-4, "weights-only restore should not carry Adam moments")

    step("save_weights_and_get_sampling_client + sample (n=4, logprobs, seed)")
    sampler = done(training.save_weights_and_get_sampling_client())
    prompt_ids = tokenizer.encode(TEXTS[1])
    prompt = types.ModelInput.from_ints(prompt_ids[:4])
    params = types.SamplingParams(max_tokens=12, temperature=1.0, seed=1234)
    out = sampler.sample(prompt, num_samples=4, sampling_params=params).result()
    check(len(out.sequences) == 4, f"{len(out.sequences)} sequences for num_samples=4")
    for seq in out.sequences:
        check(0 < len(seq.tokens) <= 12, f"bad sequence length {len(seq.tokens)}")
        check(seq.logprobs is not None and len(seq.logprobs) == len(seq.tokens), "missing per-token logprobs")
        check(all(lp <= 1e-6 for lp in seq.logprobs), "sampled logprobs must be <= 0")
        check(seq.stop_reason in ("stop", "length"), f"bad stop reason {seq.stop_reason}")
    again = sampler.sample(prompt, num_samples=4, sampling_params=params).result()
    check([s.tokens for s in out.sequences] == [s.tokens for s in again.sequences], "same seed gave different samples")
    # The trained model has memorised its data; seeds show on the untrained base model.
    base = done(service.create_sampling_client(base_model=BASE_MODEL))
    base_a = base.sample(prompt, num_samples=4, sampling_params=params).result()
    base_b = base.sample(prompt, num_samples=4, sampling_params=params).result()
    base_c = base.sample(prompt, num_samples=4, sampling_params=types.SamplingParams(max_tokens=12, temperature=1.0, seed=99)).result()
    check([s.tokens for s in base_a.sequences] == [s.tokens for s in base_b.sequences], "same seed gave different samples (base)")
    check([s.tokens for s in base_a.sequences] != [s.tokens for s in base_c.sequences], "different seeds gave identical samples")
    check(len({tuple(s.tokens) for s in base_a.sequences}) > 1, "the 4 samples of one request are identical")

    step("greedy sampling continues the training text; stop tokens and stop strings")
    greedy = sampler.sample(prompt, num_samples=1, sampling_params=types.SamplingParams(max_tokens=6, temperature=0.0)).result()
    g = greedy.sequences[0].tokens
    check(g[:2] == prompt_ids[4:6], f"greedy continuation {g} does not follow the trained text {prompt_ids[4:10]}")
    stopped = sampler.sample(prompt, num_samples=1, sampling_params=types.SamplingParams(max_tokens=6, temperature=0.0, stop=[g[1]])).result()
    s = stopped.sequences[0]
    check(s.stop_reason == "stop" and len(s.tokens) <= 2, f"stop token ignored: {s.tokens} ({s.stop_reason})")
    stop_text = tokenizer.decode(g[2:3])
    if stop_text.strip():
        by_string = sampler.sample(prompt, num_samples=1, sampling_params=types.SamplingParams(max_tokens=6, temperature=0.0, stop=[stop_text])).result()
        s = by_string.sequences[0]
        check(s.stop_reason == "stop" and len(s.tokens) <= 3, f"stop string {stop_text!r} ignored: {s.tokens} ({s.stop_reason})")
    unlimited = sampler.sample(prompt, num_samples=1, sampling_params=types.SamplingParams(max_tokens=5, temperature=0.0, stop=[])).result()
    check(unlimited.sequences[0].stop_reason == "length" and len(unlimited.sequences[0].tokens) == 5, "stop=[] must run to max_tokens")

    step("compute_logprobs agrees with forward() of the training client")
    full = types.ModelInput.from_ints(prompt_ids)
    lps = sampler.compute_logprobs(full).result()
    check(len(lps) == len(prompt_ids) and lps[0] is None, "compute_logprobs shape")
    datum = types.Datum(model_input=types.ModelInput.from_ints(prompt_ids[:-1]), loss_fn_inputs={"target_tokens": prompt_ids[1:], "weights": [1.0] * (len(prompt_ids) - 1)})
    fwd = training.forward([datum], "cross_entropy").result().loss_fn_outputs[0]["logprobs"].tolist()
    check(np.allclose(np.asarray(lps[1:], dtype=np.float64), np.asarray(fwd, dtype=np.float64), atol=2e-3), "sampler and trainer logprobs disagree")
    base_lps = base.compute_logprobs(full).result()
    trained_sum, base_sum = sum(lps[1:]), sum(base_lps[1:])
    check(trained_sum > base_sum + 1.0, f"training did not raise the data's likelihood ({base_sum:.2f} -> {trained_sum:.2f})")
    summary["logprob_sum_base_vs_trained"] = [round(base_sum, 3), round(trained_sum, 3)]

    step("sampling client from a saved sampler checkpoint path")
    sampler_path = training.save_weights_for_sampler("conformance-sampler").result().path
    check(sampler_path == f"tinker://{run_id}/sampler_weights/conformance-sampler", f"sampler path {sampler_path}")
    from_path = done(service.create_sampling_client(model_path=sampler_path))
    check(from_path.get_base_model() == BASE_MODEL, "the sampler's base model is wrong")
    lps_now = done(training.save_weights_and_get_sampling_client()).compute_logprobs(full).result()
    lps_path = from_path.compute_logprobs(full).result()
    check(np.allclose(np.asarray(lps_path[1:]), np.asarray(lps_now[1:]), atol=1e-4), "checkpoint sampler differs from the live weights")

    step("REST listing")
    if hasattr(tinker, "RestClient"):
        rest = tinker.RestClient(base_url=url, api_key=API_KEY)  # session-less, as 0.38 recommends
    else:
        rest = service.create_rest_client()
    runs = rest.list_training_runs().result()
    run_ids = [r.training_run_id for r in runs.training_runs]
    check(run_id in run_ids, f"{run_id} not listed in {run_ids}")
    check(runs.cursor.total_count >= 3, "runs from create-via-load should be listed")
    ckpts = rest.list_checkpoints(run_id).result().checkpoints
    ids_types = {(c.checkpoint_id, c.checkpoint_type) for c in ckpts}
    check(("weights/conformance-state", "training") in ids_types, f"training checkpoint missing: {ids_types}")
    check(("sampler_weights/conformance-sampler", "sampler") in ids_types, f"sampler checkpoint missing: {ids_types}")
    run_info = rest.get_training_run(run_id).result()
    check(run_info.base_model == BASE_MODEL and run_info.lora_rank == 8, f"training run info {run_info}")
    check(run_info.last_checkpoint is not None and run_info.last_checkpoint.checkpoint_id == "weights/conformance-state", "last_checkpoint")
    winfo = rest.get_weights_info_by_tinker_path(saved.path).result()
    check(winfo.base_model == BASE_MODEL and winfo.lora_rank == 8, f"weights_info {winfo}")
    user_ckpts = rest.list_user_checkpoints().result().checkpoints
    check(any(c.tinker_path == saved.path for c in user_ckpts), "user checkpoint listing misses the saved state")

    step("checkpoint publish / unpublish / TTL / delete")

    def find(path: str):
        for c in rest.list_checkpoints(run_id).result().checkpoints:
            if c.tinker_path == path:
                return c
        return None

    rest.publish_checkpoint_from_tinker_path(saved.path).result()
    check(find(saved.path).public is True, "publish did not stick")
    # (Publishing twice answers 409, which the SDK retries for minutes: tested in Rust.)
    rest.unpublish_checkpoint_from_tinker_path(saved.path).result()
    check(find(saved.path).public is False, "unpublish did not stick")
    rest.set_checkpoint_ttl_from_tinker_path(saved.path, 7200).result()
    expires = find(saved.path).expires_at
    check(expires is not None, "TTL not set")
    delta = expires - datetime.now(timezone.utc)
    check(timedelta(seconds=7000) < delta < timedelta(seconds=7300), f"TTL expiry off: {delta}")
    try:
        rest.set_checkpoint_ttl_from_tinker_path(saved.path, 5).result()
        check(False, "a 5 s TTL must be refused")
    except tinker.BadRequestError:
        pass
    rest.set_checkpoint_ttl_from_tinker_path(saved.path, None).result()
    check(find(saved.path).expires_at is None, "TTL not removed")
    rest.delete_checkpoint_from_tinker_path(sampler_path).result()
    check(find(sampler_path) is None, "deleted checkpoint still listed")
    try:
        done(service.create_sampling_client(model_path=sampler_path)).compute_logprobs(full).result()
        check(False, "sampling from a deleted checkpoint must fail")
    except tinker.NotFoundError:
        pass

    if supported("checkpoint archive download"):
        step("checkpoint archive download")
        archive_step(rest, run_id)

    if not supported("session finish: heartbeats get 410 afterwards"):
        return summary
    step("session finish: heartbeats get 410 afterwards")
    session_id = run_id.rsplit(":train:", 1)[0]
    status, _ = post_json(url, "session_heartbeat", {"session_id": session_id, "type": "session_heartbeat"})
    check(status == 200, f"heartbeat before finish returned {status}")
    service.close("success", detail="conformance run complete").result()
    status, body = post_json(url, "session_heartbeat", {"session_id": session_id, "type": "session_heartbeat"})
    check(status == 410, f"heartbeat after finish returned {status} {body}")
    return summary


def archive_step(rest, run_id: str) -> None:
    """SDK ≤ 0.25: the archive URL (302 to a signed URL), and a tar of the checkpoint there."""
    import io
    import tarfile

    answer = rest.get_checkpoint_archive_url(run_id, "weights/conformance-state").result()
    check(answer.url.startswith("http") and "sig=" in answer.url, f"archive url {answer.url}")
    with urllib.request.urlopen(answer.url, timeout=30) as resp:  # signed: no API key
        check(resp.status == 200, f"archive download returned {resp.status}")
        data = resp.read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        check(len(members) > 0, "the archive is empty")
        for m in members:
            check(m.isfile() and not m.name.startswith("/") and ".." not in m.name, f"unsafe member {m.name}")
            check(len(tar.extractfile(m).read()) == m.size, f"short member {m.name}")


# Two segments, like a hub repo id: the hub routes serve `org/name` tokenizers.
HF_MODEL = "local/tiny-qwen3"


def write_hf_model(binary: str, data_dir: str) -> str:
    """Writes a tiny Qwen3 Hugging Face folder (random weights) with `tinker-local tiny-model`."""
    folder = os.path.join(data_dir, "tiny-qwen3")
    subprocess.run([binary, "tiny-model", "--arch", "qwen3", "--out", folder], check=True)
    return folder


def run_hf_model(url: str) -> dict:
    """The tiny Qwen3 folder the server serves with `--model`: the SDK loads its tokenizer
    (through the server's hub routes, like the built-in models), trains a LoRA, saves, and
    samples. One server serves both, because the SDK reads HF_ENDPOINT once."""
    import tinker
    from tinker import types

    step("serve a tiny Qwen3 Hugging Face folder with --model")
    service = tinker.ServiceClient(base_url=url, api_key=API_KEY)
    req = urllib.request.Request(f"{url}/api/v1/get_server_capabilities", headers={"X-API-Key": API_KEY})
    with urllib.request.urlopen(req, timeout=30) as resp:
        names = [m.get("model_name") for m in json.loads(resp.read())["supported_models"]]
    check(HF_MODEL in names, f"get_server_capabilities does not list {HF_MODEL}: {names}")

    step("Qwen3 folder: tokenizer, 10 LoRA steps, the loss falls")
    training = done(service.create_lora_training_client(base_model=HF_MODEL, rank=4, seed=0))
    tokenizer = training.get_tokenizer()
    data, weight = [], 0.0
    for text in TEXTS:
        toks = tokenizer.encode(text)
        data.append(
            types.Datum(
                model_input=types.ModelInput.from_ints(toks[:-1]),
                loss_fn_inputs={"target_tokens": toks[1:], "weights": [1.0] * (len(toks) - 1)},
            )
        )
        weight += len(toks) - 1
    curve = []
    for _ in range(10):
        fb = training.forward_backward(data, "cross_entropy").result()
        training.optim_step(types.AdamParams(learning_rate=2e-2)).result()
        curve.append(per_token(fb.metrics, weight))
    check(curve[-1] < 0.7 * curve[0], f"Qwen3 folder: loss did not fall: {curve}")

    step("Qwen3 folder: save_state, save weights for the sampler, sample")
    saved = training.save_state("hf-state").result()
    check(saved.path.endswith("/weights/hf-state"), f"save_state path {saved.path}")
    sampler = done(training.save_weights_and_get_sampling_client())
    prompt = types.ModelInput.from_ints(tokenizer.encode(TEXTS[1])[:4])
    params = types.SamplingParams(max_tokens=8, temperature=1.0, seed=7)
    out = sampler.sample(prompt, num_samples=2, sampling_params=params).result()
    check(len(out.sequences) == 2, "two sequences expected")
    for seq in out.sequences:
        check(0 < len(seq.tokens) <= 8, f"bad sequence length {len(seq.tokens)}")
        check(seq.logprobs is not None and len(seq.logprobs) == len(seq.tokens), "missing logprobs")
    return {"hf_loss_curve": [round(x, 4) for x in curve]}


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    binary = sys.argv[1]
    os.environ["TINKER_TELEMETRY"] = "0"
    os.environ.pop("TINKER_BASE_URL", None)
    data_dir = tempfile.mkdtemp(prefix="tinker-local-conformance-")
    started = time.monotonic()
    proc = None
    try:
        folder = write_hf_model(binary, data_dir)
        proc, url = start_server(binary, os.path.join(data_dir, "data"), ["--model", f"{HF_MODEL}={folder}"])
        # The tokenizer comes from tinker-local itself, which answers the hub's file routes
        # (set before the SDK imports huggingface_hub); an empty hub cache, no other network.
        os.environ["HF_ENDPOINT"] = url
        os.environ["HF_HOME"] = os.path.join(data_dir, "hf")
        os.environ.pop("HF_HUB_OFFLINE", None)
        os.environ.pop("TRANSFORMERS_OFFLINE", None)
        os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
        summary = run(url)
        summary.update(run_hf_model(url))
    except Exception:
        traceback.print_exc()
        failed = steps_done[-1] if steps_done else "start-up"
        print(f"conformance: FAILED at step '{failed}' ({len(steps_done)} steps reached)")
        return 1
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(data_dir, ignore_errors=True)
    elapsed = time.monotonic() - started
    print(f"conformance: OK with tinker {'.'.join(map(str, sdk_version()))}, {len(steps_done)} steps in {elapsed:.1f}s")
    for name, reason in steps_skipped:
        print(f"  skipped: {name} ({reason})")
    print("  loss curve (per token): " + " ".join(f"{x:.3f}" for x in summary["loss_curve"]))
    print("  pipelined steps: " + " ".join(f"{x:.3f}" for x in summary["pipelined"]))
    base_sum, trained_sum = summary["logprob_sum_base_vs_trained"]
    print(f"  prompt logprob sum, base -> trained: {base_sum:.2f} -> {trained_sum:.2f}")
    print("  tiny Qwen3 folder loss curve: " + " ".join(f"{x:.3f}" for x in summary["hf_loss_curve"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
