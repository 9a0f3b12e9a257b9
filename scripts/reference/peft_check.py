"""Loads tinker-local's LoRA adapters with Hugging Face `transformers` + `peft` and checks
that PEFT computes the logprobs tinker-local computed with the same adapter.

Input: the folder `write_peft_check` (tinker-local's tests) writes, with one subfolder per
architecture holding `base/` (model folder), `adapter/` (adapter_config.json and
adapter_model.safetensors) and `expected.json` (tokens, targets, logprobs).

Usage: python peft_check.py DIR   (needs torch, transformers and peft; see README.md)
Exits 1 on any mismatch, missing or unexpected adapter key, or an adapter that changes
nothing.
"""

import json
import sys
import warnings
from pathlib import Path

import torch
from peft import PeftModel
from safetensors import safe_open
from transformers import AutoModelForCausalLM

TOLERANCE = 1e-3


def target_logprobs(model, tokens, targets):
    with torch.no_grad():
        logits = model(input_ids=torch.tensor(tokens)).logits.float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return logprobs.gather(-1, torch.tensor(targets).unsqueeze(-1)).squeeze(-1)


def check(arch_dir: Path) -> bool:
    expected = json.loads((arch_dir / "expected.json").read_text())
    tokens, targets = expected["tokens"], expected["targets"]
    want = torch.tensor(expected["logprobs"])
    base = AutoModelForCausalLM.from_pretrained(arch_dir / "base", dtype=torch.float32)
    base.eval()
    without = target_logprobs(base, tokens, targets)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = PeftModel.from_pretrained(base, arch_dir / "adapter")
    model.eval()
    problems = [str(w.message) for w in caught if "adapter keys" in str(w.message)]
    with safe_open(arch_dir / "adapter" / "adapter_model.safetensors", "pt") as f:
        saved = set(f.keys())
    loaded = {k for k in model.state_dict() if "lora_" in k}
    got = target_logprobs(model, tokens, targets)
    diff = (got - want).abs().max().item()
    moved = (without - want).abs().max().item()
    ok = diff <= TOLERANCE and moved > 10 * TOLERANCE and not problems
    print(
        f"{arch_dir.name}: {len(saved)} adapter tensors saved, {len(loaded)} LoRA tensors in "
        f"the PEFT model; max |peft - tinker-local| = {diff:.2e} (the adapter moves logprobs "
        f"by up to {moved:.2e}); {'OK' if ok else 'MISMATCH'}"
    )
    for p in problems:
        print(f"  {p}")
    return ok


def main() -> int:
    root = Path(sys.argv[1])
    results = [check(d) for d in sorted(root.iterdir()) if (d / "expected.json").is_file()]
    if not results:
        print(f"no architecture folders in {root}")
        return 1
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
