"""An agent exported from a strategy-teaching run: the audited strategies only, retrieved per
question as in the run, picked up again after an audit, and served per request."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest
from test_serve import Echo, _client, serving

from agents.cli import main
from agents.episodes.dialogue import GUIDANCE_HEADER
from agents.export import ExportedAgent, card_for_run, load_agent
from agents.schemes.strategy_teaching import StrategyTeachingJob
from agents.store import Store, Workspace
from strategies import StrategyLibrary

REFUNDS = ("A customer asks for a refund", "Check the order status before any refund.")
ADDRESS = ("A customer wants to change the address", "Confirm the new address back in full.")
GREETING = ("A customer says hello", "Greet them and ask for their user id.")


class StrategyEcho(Echo):
    """Replies with the strategies its system prompt holds (the lines after the header)."""

    def _generate(self, requests, *, progress):  # type: ignore[no-untyped-def]
        results = super()._generate(requests, progress=progress)
        for request, result in zip(requests, results, strict=True):
            system = str(request.messages[0]["content"])
            below = system.split(GUIDANCE_HEADER, 1)[1] if GUIDANCE_HEADER in system else ""
            lines = [ln[2:] for ln in below.splitlines() if ln.startswith("- ")]
            for completion in result.completions:
                completion.text = " | ".join(lines) or "no strategies"
        return results


@pytest.fixture
def world(tmp_path: Path, tiny_model_dir: Path) -> tuple[Workspace, Store, str, list[int]]:
    workspace = Workspace.resolve(tmp_path / "ws").ensure()
    store = Store.open(workspace)
    config = StrategyTeachingJob.model_validate(
        {"student": str(tiny_model_dir), "refine": {"top_k": 1}}
    )
    run = store.create_run("strategy-teaching", config.model_dump(mode="json"))
    library = StrategyLibrary.open(store, workspace.chroma_dir, config.library_name)
    ids = []
    for (situation, text), status in zip(
        (REFUNDS, ADDRESS, GREETING), ("approved", "edited", "proposed"), strict=True
    ):
        ids.append(library.add(situation, text, author="teacher", status=status).id)
    return workspace, store, run.id, ids


def test_the_card_holds_the_audited_strategies_and_the_runs_retrieval(world) -> None:  # type: ignore[no-untyped-def]
    workspace, store, run_id, ids = world
    card, adapter = card_for_run(store, run_id)
    assert adapter is None and card.scheme == "strategy-teaching"
    assert [s["id"] for s in card.strategies] == ids[:2]  # the proposed one is not audited
    assert card.strategies[1]["status"] == "edited" and card.strategies[0]["version"] == 1
    assert card.retrieval["top_k"] == 1 and card.retrieval["turns"] == 3
    assert "retail" in card.system_prompt.lower()


def test_export_then_ask_retrieves_per_question_and_an_audit_changes_it(world) -> None:  # type: ignore[no-untyped-def]
    workspace, store, run_id, ids = world
    out = workspace.root / "agent"
    args = ["export", run_id, "--out", str(out), "--workspace", str(workspace.root)]
    assert main(args) == 0
    agent = load_agent(out)
    assert len(agent.card.strategies) == 2
    echo = ExportedAgent(engine=StrategyEcho(), card=agent.card, path=out)
    assert echo.ask("I want my money back for the order") == REFUNDS[1]
    assert echo.ask("Please ship it to my new address") == ADDRESS[1]
    # the reviewer rejects the refund strategy; the next export no longer carries it
    library = StrategyLibrary.open(store, workspace.chroma_dir, "retail")
    library.set_status(ids[0], "rejected", author="reviewer:test")
    assert main([*args, "--overwrite"]) == 0
    again = ExportedAgent(engine=StrategyEcho(), card=load_agent(out).card, path=out)
    assert [s["id"] for s in again.card.strategies] == [ids[1]]
    assert again.ask("I want my money back for the order") == ADDRESS[1]


def test_served_replies_follow_the_audit(world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    workspace, store, run_id, ids = world
    question = [{"role": "user", "content": "I want my money back for the order"}]
    card, _ = card_for_run(store, run_id)
    with serving(ExportedAgent(engine=StrategyEcho(), card=card, path=tmp_path)) as url:
        reply = _client(url).chat.completions.create(model=card.name, messages=question)
        assert reply.choices[0].message.content == REFUNDS[1]
        assert reply.model_extra["strategies"] == [ids[0]]
        assert httpx.get(f"{url}/v1/agent_card").json()["strategies"][0]["id"] == ids[0]
    StrategyLibrary.open(store, workspace.chroma_dir, "retail").set_status(
        ids[0], "rejected", author="reviewer:test"
    )
    card, _ = card_for_run(store, run_id)
    with serving(ExportedAgent(engine=StrategyEcho(), card=card, path=tmp_path)) as url:
        reply = _client(url).chat.completions.create(model=card.name, messages=question)
        assert reply.choices[0].message.content == ADDRESS[1]
        with pytest.raises(openai.BadRequestError):
            _client(url).chat.completions.create(model=card.name, messages=question, n=9)
