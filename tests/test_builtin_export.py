"""On the real built-in SmolLM2: LoRA SFT through the job, export, reload, generate."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from agents.export import card_for_run, export_agent, load_agent
from agents.models import resolve_local_model
from agents.schemes.sft import SFTJob, SFTRun
from agents.store import Store, Workspace

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

pytestmark = pytest.mark.builtin


def test_trained_smollm2_exports_reloads_and_answers(tmp_path: Path) -> None:
    workspace = Workspace.resolve(tmp_path / "ws").ensure()
    store = Store.open(workspace)
    config = SFTJob.model_validate(
        {
            "base": "builtin:smollm2-135m",
            "data": str(EXAMPLES / "sft_tiny.jsonl"),
            "system_prompt": "Solve the problem step by step. Put the final answer in \\boxed{}.",
            "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
            "training": {"max_steps": 1, "batch_size": 2, "max_length": 256, "learning_rate": 1e-3},
        }
    )
    sft = SFTRun.create(config, workspace, store, progress=False)
    run = sft.run()
    sft.close()
    assert run.status == "finished"

    card, adapter = card_for_run(store, run.id)
    out = export_agent(tmp_path / "agent", card, adapter=adapter)

    # merged weights differ from the base exactly where LoRA was applied
    base = load_file(Path(resolve_local_model("builtin:smollm2-135m")) / "model.safetensors")
    merged = load_file(out / "model.safetensors")
    q_name = next(k for k in merged if k.endswith("layers.0.self_attn.q_proj.weight"))
    k_name = q_name.replace("q_proj", "k_proj")
    assert not torch.equal(merged[q_name], base[q_name])
    assert torch.equal(merged[k_name], base[k_name])

    agent = load_agent(out)
    assert agent.card.base_model == "builtin:smollm2-135m"
    answer = agent.ask("What is 3 + 4?", max_tokens=24)
    assert answer.strip()
