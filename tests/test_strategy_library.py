"""The strategy library: rows, versions, idempotent adds, scenarios, the audit gate, retrieval."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from sqlmodel import select

from agents.store import Store
from strategies import (
    STATUSES,
    TRAINING,
    USABLE,
    Strategy,
    StrategyLibrary,
    StrategyNotFound,
    library_names,
)
from tools.retrieval import MiniLMEmbedding

TEACHER = "teacher:builtin:qwen2.5-coder-0.5b"


class HashEmbedding(EmbeddingFunction[Documents]):
    """Bag-of-words vectors from hashed lowercase words: fast, offline, and shared words match."""

    def __init__(self, dim: int = 128) -> None:
        self.dim = dim

    def __call__(self, input: Documents) -> Embeddings:
        vectors = []
        for text in input:
            vector = np.zeros(self.dim, dtype=np.float32)
            for word in re.findall(r"[a-z]+", text.lower()):
                vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
            vector[0] += 1e-3  # never the zero vector (cosine is undefined there)
            vectors.append(vector / np.linalg.norm(vector))
        return vectors

    @staticmethod
    def name() -> str:
        return "test-hashed-words"

    def get_config(self) -> dict[str, int]:
        return {"dim": self.dim}

    @staticmethod
    def build_from_config(config: dict[str, int]) -> HashEmbedding:
        return HashEmbedding(config.get("dim", 128))


def open_library(tmp_path: Path, name: str = "retail", url: str | None = None) -> StrategyLibrary:
    """A library in a fresh store (SQLite under ``tmp_path`` unless ``url``) and a Chroma
    directory under ``tmp_path``."""
    store = Store(url or f"sqlite:///{tmp_path / 'agents.db'}")
    return StrategyLibrary.open(store, tmp_path / "chroma", name, embedding=HashEmbedding())


@pytest.fixture
def library(tmp_path: Path, db_url: str) -> StrategyLibrary:
    """On SQLite, and on PostgreSQL too when the tests have one."""
    return open_library(tmp_path, url=db_url)


def test_add_revise_and_status_changes_keep_a_complete_history(library: StrategyLibrary) -> None:
    s = library.add(
        "Customer asks for a refund on a damaged item.",
        "Apologise, ask for a photo of the damage, then offer a refund or a replacement.",
        author=TEACHER,
        run_id="run-1",
        teacher="builtin:qwen2.5-coder-0.5b",
        round=2,
        score_before=0.25,
        teacher_score=0.9,
        domain="retail",
    )
    assert (s.id, s.status, s.version, s.library) == (1, "proposed", 1, "retail")
    library.revise(s.id, "Apologise and ask for a photo first.", author=TEACHER, reason="shorter")
    library.set_status(s.id, "approved", author="reviewer:alice", reason="good")
    library.revise(s.id, "Apologise, photo, refund.", author="reviewer:bob", status="edited")

    current = library.get(s.id)
    assert (current.status, current.version, current.text) == (
        "edited",
        4,
        "Apologise, photo, refund.",
    )
    assert current.teacher_score == 0.9 and current.round == 2  # provenance is kept
    history = library.versions(s.id)
    assert [(v.version, v.status, v.author) for v in history] == [
        (1, "proposed", TEACHER),
        (2, "proposed", TEACHER),
        (3, "approved", "reviewer:alice"),
        (4, "edited", "reviewer:bob"),
    ]
    assert history[0].text.startswith("Apologise, ask for a photo")
    assert [v.reason for v in history] == [None, "shorter", "good", None]
    assert library.count() == 1 and library.count(USABLE) == 1 and library.count(["proposed"]) == 0


def test_revise_without_a_change_writes_no_version_but_links_new_scenarios(
    library: StrategyLibrary,
) -> None:
    s = library.add("Situation.", "Text.", author=TEACHER, scenario_ids=[3])
    same = library.revise(s.id, "Text.", author=TEACHER)
    assert same.version == 1 and len(library.versions(s.id)) == 1
    linked = library.revise(s.id, "Text.", author=TEACHER, scenario_ids=[3, 5])
    assert linked.version == 1 and linked.scenario_ids == [3, 5]
    assert library.get(s.id).scenario_ids == [3, 5]
    unchanged = library.set_status(s.id, "proposed", author="reviewer:x")
    assert unchanged.version == 1 and len(library.versions(s.id)) == 1


def test_add_with_a_stored_origin_returns_the_stored_row_unchanged(
    library: StrategyLibrary, tmp_path: Path
) -> None:
    first = library.add("Refund request.", "Offer a refund.", author=TEACHER, origin="run1/r0/s3")
    again = library.add("Something else.", "Other text.", author=TEACHER, origin="run1/r0/s3")
    assert again.id == first.id and again.text == "Offer a refund."
    assert library.count() == 1 and len(library.versions(first.id)) == 1
    # The same origin in another library is another strategy.
    other = StrategyLibrary.open(library.store, tmp_path / "chroma", "airline", HashEmbedding())
    assert other.add("x", "y", author=TEACHER, origin="run1/r0/s3").id != first.id
    assert library_names(library.store) == ["airline", "retail"]


def test_readding_by_origin_repairs_a_missing_index_entry(library: StrategyLibrary) -> None:
    s = library.add(
        "Refund request.", "Offer a refund.", author=TEACHER, origin="o", status="approved"
    )
    library.collection.delete(ids=[str(s.id)])  # as if the process died before indexing
    assert library.retrieve("refund") == []
    library.add("Refund request.", "Offer a refund.", author=TEACHER, origin="o")
    assert [h.strategy.id for h in library.retrieve("refund")] == [s.id]


def test_unknown_statuses_and_ids_fail_with_clear_messages(library: StrategyLibrary) -> None:
    s = library.add("Situation.", "Text.", author=TEACHER)
    with pytest.raises(ValueError, match="allowed: proposed, approved, rejected, edited"):
        library.set_status(s.id, "accepted", author="reviewer:x")
    with pytest.raises(ValueError, match="allowed"):
        library.retrieve("x", statuses=["approved", "bogus"])
    with pytest.raises(ValueError, match="allowed"):
        library.add("a", "b", author=TEACHER, status="done")
    with pytest.raises(ValueError, match="cannot be empty"):
        library.add("a", "   ", author=TEACHER)
    with pytest.raises(StrategyNotFound, match="no strategy 99 in library 'retail'"):
        library.get(99)
    assert issubclass(StrategyNotFound, LookupError)
    assert library.get(s.id).version == 1  # nothing was written by the failures


def test_strategies_of_another_library_are_not_visible(
    library: StrategyLibrary, tmp_path: Path
) -> None:
    other = StrategyLibrary.open(library.store, tmp_path / "chroma", "airline", HashEmbedding())
    theirs = other.add("Flight delay.", "Offer rebooking.", author=TEACHER, status="approved")
    with pytest.raises(StrategyNotFound):
        library.get(theirs.id)
    assert library.strategies() == [] and library.retrieve("flight delay rebooking") == []
    assert [h.strategy.id for h in other.retrieve("flight delay rebooking")] == [theirs.id]


def test_scenarios_are_stored_with_messages_and_meta_idempotently(
    library: StrategyLibrary,
) -> None:
    messages = [
        {"role": "system", "content": "You are a retail assistant."},
        {"role": "user", "content": "My order arrived broken."},
    ]
    meta = {"student_reply": "ok", "teacher_reply": "Sorry! Send a photo.", "judge": 0.2}
    first = library.add_scenario(
        messages, source="failure", run_id="run-1", round=0, task_id="t7", meta=meta, origin="s1"
    )
    again = library.add_scenario([], source="failure", origin="s1")
    second = library.add_scenario(messages[:1], source="heldout", run_id="run-2")
    assert again.id == first.id
    stored = library.scenario(first.id)
    assert stored.messages == messages and stored.meta == meta and stored.task_id == "t7"
    assert [s.id for s in library.scenarios()] == [first.id, second.id]
    assert [s.id for s in library.scenarios(ids=[second.id, first.id])] == [first.id, second.id]
    assert [s.id for s in library.scenarios(run_id="run-2")] == [second.id]
    with pytest.raises(ValueError, match="failure, teacher, heldout"):
        library.add_scenario(messages, source="chat")
    with pytest.raises(StrategyNotFound):
        library.scenario(1234)


def test_record_scores_sets_score_after_without_a_new_version(library: StrategyLibrary) -> None:
    a = library.add("A.", "Do a.", author=TEACHER)
    b = library.add("B.", "Do b.", author=TEACHER)
    library.record_scores([a.id, b.id], score_after=0.75)
    assert library.get(a.id).score_after == 0.75 and library.get(b.id).score_after == 0.75
    assert library.get(a.id).version == 1
    with pytest.raises(StrategyNotFound):
        library.record_scores([a.id, 404], score_after=1.0)
    assert library.get(a.id).score_after == 0.75  # the failed call changed nothing


# ---------------------------------------------------------------------------- the audit gate


def _refund_pair(library: StrategyLibrary) -> tuple[Strategy, Strategy]:
    good = library.add(
        "Refund for a damaged item.", "Ask for a photo, then refund.", author=TEACHER
    )
    bad = library.add(
        "Refund for a damaged item.", "Refund without asking anything.", author=TEACHER
    )
    return good, bad


def test_retrieval_serves_only_reviewed_strategies_by_default(library: StrategyLibrary) -> None:
    good, bad = _refund_pair(library)
    assert library.retrieve("damaged item refund") == []  # both only proposed
    assert {h.strategy.id for h in library.retrieve("damaged item refund", statuses=TRAINING)} == {
        good.id,
        bad.id,
    }
    library.set_status(good.id, "approved", author="reviewer:x")
    library.set_status(bad.id, "rejected", author="reviewer:x")
    assert [h.strategy.id for h in library.retrieve("damaged item refund", k=5)] == [good.id]
    assert [h.strategy.id for h in library.retrieve("refund", statuses=TRAINING)] == [good.id]
    everything = library.retrieve("refund", k=5, statuses=STATUSES)
    assert {h.strategy.id for h in everything} == {good.id, bad.id}


def test_a_stale_index_never_serves_a_strategy_rejected_in_sql(library: StrategyLibrary) -> None:
    good, bad = _refund_pair(library)
    for s in (good, bad):
        library.set_status(s.id, "approved", author="reviewer:x")
    # Reject ``bad`` in SQL only: the Chroma metadata still says "approved".
    with library.store.session(write=True) as session:
        row = session.exec(select(Strategy).where(Strategy.id == bad.id)).one()
        row.status = "rejected"
        session.add(row)
    assert library.collection.get(ids=[str(bad.id)])["metadatas"][0]["status"] == "approved"
    for _ in range(2):
        hits = library.retrieve("refund damaged item", k=2)
        assert [h.strategy.id for h in hits] == [good.id]
        assert all(h.strategy.status in USABLE for h in hits)
    # The stale entry was brought in line with SQL.
    assert library.collection.get(ids=[str(bad.id)])["metadatas"][0]["status"] == "rejected"


def test_retrieval_returns_what_there_is(library: StrategyLibrary) -> None:
    assert library.retrieve("anything", k=3) == []
    s = library.add(
        "Address change.", "Confirm the new address.", author=TEACHER, status="approved"
    )
    library.add("Other.", "Still proposed.", author=TEACHER)
    hits = library.retrieve("change my address", k=5)
    assert [h.strategy.id for h in hits] == [s.id]
    assert 0.0 <= hits[0].distance < 1.0
    vector = library.embed(["change my address"])[0]
    assert [h.strategy.id for h in library.retrieve_by_embedding(vector, k=5)] == [s.id]


def test_edits_are_reindexed_and_survive_reopening(
    library: StrategyLibrary, tmp_path: Path
) -> None:
    s = library.add("Refund.", "Refund politely.", author=TEACHER, status="approved")
    library.revise(s.id, "Help the customer change the shipping address.", author="reviewer:x")
    stored = library.collection.get(ids=[str(s.id)], include=["documents", "metadatas"])
    assert stored["documents"] == ["Refund.\nHelp the customer change the shipping address."]
    assert stored["metadatas"][0] == {"status": "approved", "version": 2}
    again = StrategyLibrary.open(library.store, tmp_path / "chroma", "retail")
    assert isinstance(again.embedding, HashEmbedding)  # rebuilt from the collection's config
    assert [h.strategy.id for h in again.retrieve("shipping address")] == [s.id]
    assert again.reindex() == 1


# ---------------------------------------------------------------------------- relevance (MiniLM)

STRATEGIES = {
    "refund": (
        "Customer received a damaged or broken item and wants their money back.",
        "Apologise, ask for a photo of the damage, and offer a full refund to the original "
        "payment method.",
    ),
    "cancel": (
        "Customer wants to cancel an order that has not shipped yet.",
        "Confirm the order number, cancel it before it ships, and confirm no charge remains.",
    ),
    "address": (
        "Customer wants to change the shipping address of an order.",
        "Verify the order, update the delivery address if it has not shipped, repeat it back.",
    ),
    "exchange": (
        "Customer wants to exchange an item for a different size or colour.",
        "Check stock of the requested size, create an exchange and send a prepaid return label.",
    ),
    "auth": (
        "Customer asks about an account but has not been authenticated yet.",
        "Before sharing details, verify identity with the email on file and the zip code.",
    ),
    "tracking": (
        "Customer asks where a package is because the delivery is late.",
        "Look up the tracking number, give the carrier status and the new delivery estimate.",
    ),
    "password": (
        "Customer is locked out of the account and cannot log in.",
        "Send a password reset link to the registered email and explain the lockout timer.",
    ),
    "payment": (
        "Customer wants to update the credit card or payment method on file.",
        "Direct them to the secure payment page; never take card numbers in chat.",
    ),
    "price": (
        "Customer saw a lower price for an item after buying it.",
        "Offer a price adjustment for the difference if within 14 days of purchase.",
    ),
    "missing": (
        "A delivered order is missing one of the items.",
        "Check the packing list, apologise, and ship the missing item at no cost.",
    ),
    "giftcard": (
        "Customer asks about the balance of a gift card.",
        "Ask for the card number's last four digits and read out the remaining balance.",
    ),
    "subscription": (
        "Customer wants to stop a monthly subscription.",
        "Cancel the auto-renewal, state the last billing date and offer a pause instead.",
    ),
}

QUERIES = {
    "The blender arrived cracked and I want my money back.": "refund",
    "Please stop my order, I placed it by mistake an hour ago and it hasn't shipped.": "cancel",
    "I moved last week, please change the shipping address on my order.": "address",
    "These shoes are too small, can I swap them for a size 10?": "exchange",
    "I can't log in, it says my account is locked after too many attempts.": "password",
    "Where is my parcel? It was supposed to arrive three days ago.": "tracking",
    "My credit card expired, how do I update the payment method on file?": "payment",
    "My box came today but the charger was not inside.": "missing",
}


def test_minilm_retrieval_finds_the_relevant_strategy(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'agents.db'}")
    library = StrategyLibrary.open(store, tmp_path / "chroma", "retail", MiniLMEmbedding())
    ids = {
        label: library.add(situation, text, author=TEACHER, status="approved").id
        for label, (situation, text) in STRATEGIES.items()
    }
    top1 = 0
    for query, label in QUERIES.items():
        hits = library.retrieve(query, k=3)
        ranked = [h.strategy.id for h in hits]
        assert ids[label] in ranked, (query, ranked)
        top1 += ranked[0] == ids[label]
    assert top1 >= 7, f"relevant strategy first for only {top1} of {len(QUERIES)} queries"
