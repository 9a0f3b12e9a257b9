"""The wire scenario, driven by the official Python SDK (the reference side of the wire test).

Usage: <venv python> scripts/wire/scenario.py URL

`cargo xtask test` (its wire step, `tinker-wire`) runs this against a recording proxy in
front of a fresh tinker-local, runs the same scenario in Rust (the `scenario` module of
crates/tinker-testkit/src/bin/tinker-wire) against another, and compares the two
recordings request by request. The steps must stay in the same order, with the same
arguments, as the Rust scenario; every call waits for its result before the next, so the
order of requests is fixed.
"""

from __future__ import annotations

import sys

MODEL = "tinker-local/micro"
KEY = "tml-wire-test"
# Token ids of the micro model's vocabulary (no tokenizer: its hub download is not the wire
# under test).
TOKENS = [5, 17, 42, 99, 7, 3, 250, 11]


def datum(types, tokens):
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * (len(tokens) - 1)},
    )


def main() -> int:
    url = sys.argv[1]
    import warnings

    import tinker
    from tinker import types

    # The scenario uses the SDK as 0.38 documents it: a deprecated call path fails it.
    warnings.simplefilter("error", FutureWarning)

    # Session-less, as 0.38 recommends; tinker-rs's is `ServiceClient::create_rest_client`.
    rest = tinker.RestClient(base_url=url, api_key=KEY)
    rest.get_server_capabilities().result()
    service = tinker.ServiceClient(base_url=url, api_key=KEY)
    training = service.create_lora_training_client(
        base_model=MODEL, rank=8, seed=7, train_unembed=False, user_metadata={"purpose": "wire"}
    ).result()
    run_id = training.get_info().model_id
    data = [datum(types, TOKENS), datum(types, TOKENS[2:])]
    training.forward_backward(data, "cross_entropy").result()
    training.optim_step(types.AdamParams(learning_rate=1e-2)).result()
    training.forward(data, "cross_entropy").result()
    saved = training.save_state("wire-state").result()
    service.create_training_client_from_state_with_optimizer(saved.path).result()
    sampler_path = training.save_weights_for_sampler("wire-sampler").result().path
    sampler = service.create_sampling_client(model_path=sampler_path).result()
    prompt = types.ModelInput.from_ints(TOKENS[:4])
    params = types.SamplingParams(max_tokens=4, temperature=1.0, seed=1)
    sampler.sample(prompt, num_samples=2, sampling_params=params).result()
    sampler.compute_logprobs(prompt).result()

    rest.list_training_runs().result()
    rest.get_training_run(run_id).result()
    rest.list_checkpoints(run_id).result()
    rest.list_user_checkpoints().result()
    rest.get_weights_info_by_tinker_path(saved.path).result()
    rest.publish_checkpoint_from_tinker_path(saved.path).result()
    rest.unpublish_checkpoint_from_tinker_path(saved.path).result()
    rest.set_checkpoint_ttl_from_tinker_path(saved.path, 7200).result()
    rest.delete_checkpoint_from_tinker_path(sampler_path).result()
    sessions = rest.list_sessions().result()
    rest.get_session(sessions.sessions[0]).result()
    service.close("success", detail="wire scenario complete").result()
    return 0


if __name__ == "__main__":
    sys.exit(main())
