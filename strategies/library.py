"""The strategy library: SQL rows as the source of truth, a Chroma collection to retrieve them.

A *strategy* is a short piece of guidance a teacher model wrote so a small student behaves like
the teacher in one kind of customer-service situation. The library keeps each strategy with its
full version history and provenance (which scenarios it came from, which teacher wrote it in
which run and round, the judge's scores), and indexes ``situation + text`` in a cosine Chroma
collection so a conversation can fetch the strategies that fit it.

The audit gate: inference only ever sees ``approved`` or ``edited`` strategies (:data:`USABLE`).
Retrieval filters by status inside Chroma *and* checks the status again in SQL before returning
anything, so a strategy a reviewer rejected is never served even if the index lags behind.

Resuming after a crash: a scheme stage writes the library *outside* its own stage transaction
(:meth:`agents.store.Store.commit_stage`), so a stage that dies before its commit leaves its
library writes behind and runs again from the start. The one rule that makes that safe: every
write a stage makes here is keyed by where it came from — run, round, stage and the scenario or
iteration inside it — through ``origin``, and a key already stored gives back the stored row
instead of a new one (:meth:`StrategyLibrary.add`, :meth:`~StrategyLibrary.add_many`,
:meth:`~StrategyLibrary.add_scenario`). Re-adding by origin also indexes a row the crash left out
of Chroma. Writes that change an existing row (:meth:`~StrategyLibrary.revise`,
:meth:`~StrategyLibrary.set_status`, :meth:`~StrategyLibrary.record_scores`) are no-ops or plain
overwrites when repeated with the same values, so they need no key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import chromadb
import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction
from chromadb.config import Settings
from sqlmodel import Session, SQLModel, col, func, select
from tqdm.auto import tqdm

from agents.store import Store, StoreError, utcnow
from strategies.records import (
    SCENARIO_SOURCES,
    STATUSES,
    TABLES,
    AuditEvent,
    Scenario,
    Strategy,
    StrategyVersion,
)
from tools.retrieval import MiniLMEmbedding

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection

logger = logging.getLogger(__name__)

#: What inference may use: strategies a reviewer approved or rewrote.
USABLE = frozenset({"approved", "edited"})
#: What an explicit training run may use: usable ones plus those still awaiting review.
TRAINING = USABLE | {"proposed"}

# Texts embedded per batch, and rows per Chroma write (well under Chroma's batch limit).
_EMBED_BATCH = 256
_INDEX_BATCH = 1000
_CHROMA_NAME_BAD = re.compile(r"[^A-Za-z0-9._-]+")


class StrategyNotFound(StoreError):
    """A strategy (or scenario) id that is not in this library."""


@dataclass(frozen=True)
class StrategyHit:
    """One retrieved strategy.

    Attributes:
        strategy: The strategy's current row.
        distance: Cosine distance between the query and the strategy (0 is identical).
    """

    strategy: Strategy
    distance: float


@dataclass(frozen=True)
class StrategyDraft:
    """A strategy to add, for :meth:`StrategyLibrary.add_many` (fields as in ``add``)."""

    situation: str
    text: str
    scenario_ids: Sequence[int] = ()
    run_id: str | None = None
    teacher: str | None = None
    round: int | None = None
    score_before: float | None = None
    teacher_score: float | None = None
    domain: str | None = None
    status: str = "proposed"
    origin: str | None = None


def check_statuses(statuses: Iterable[str] | str) -> frozenset[str]:
    """``statuses`` as a set, after checking each is a known status (a lone string is one status).

    Raises:
        ValueError: For an unknown status, naming the allowed ones.
    """
    wanted = frozenset([statuses] if isinstance(statuses, str) else statuses)
    unknown = sorted(wanted - set(STATUSES))
    if unknown:
        raise ValueError(
            f"Unknown strategy status {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(STATUSES)}."
        )
    return wanted


def collection_name(library: str) -> str:
    """The Chroma collection of a library: ``strategies-<name>``, made valid for Chroma.

    Chroma names allow letters, digits, ``.``, ``_`` and ``-`` and must start and end with a
    letter or digit; a name that had to be changed gets a short hash so two libraries never
    share a collection.
    """
    raw = f"strategies-{library}"
    clean = re.sub(r"\.{2,}", ".", _CHROMA_NAME_BAD.sub("-", raw)).rstrip("._-")[:200]
    if clean != raw:
        clean = f"{clean}-{hashlib.sha256(raw.encode()).hexdigest()[:8]}"
    return clean


def ensure_tables(store: Store) -> None:
    """Create the strategy tables in ``store`` if they are missing."""
    with store.session(write=True) as session:
        SQLModel.metadata.create_all(session.connection(), tables=TABLES)


def library_names(store: Store) -> list[str]:
    """Names of the libraries in ``store`` that hold strategies or audit events, sorted."""
    ensure_tables(store)
    with store.session() as session:
        names = set(session.exec(select(Strategy.library).distinct()).all())
        names |= set(session.exec(select(AuditEvent.library).distinct()).all())
    return sorted(names)


def _required_text(value: str, what: str) -> str:
    value = (value or "").strip()
    if not value:
        raise ValueError(f"A strategy's {what} cannot be empty.")
    return value


def _merged_ids(old: Sequence[int], new: Iterable[int]) -> list[int]:
    return list(dict.fromkeys([*old, *(int(i) for i in new)]))


def _plain_json(value: Any) -> Any:
    """``value`` reduced to what a JSON column stores (datetimes and the like become strings)."""
    return json.loads(json.dumps(value, default=str, ensure_ascii=False))


def _chunks(values: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


class StrategyLibrary:
    """A named, auditable collection of strategies in a :class:`~agents.store.Store`.

    Use :meth:`open`; several libraries can share a store and a Chroma directory.

    Attributes:
        name: The library's name (every row carries it).
        store: The store holding the rows.
        collection: The Chroma collection indexing the strategies.
        embedding: The embedding function for queries and new strategies.
    """

    def __init__(
        self,
        store: Store,
        collection: Collection,
        name: str,
        embedding: EmbeddingFunction[Documents],
    ) -> None:
        self.store = store
        self.collection = collection
        self.name = name
        self.embedding = embedding

    @classmethod
    def open(
        cls,
        store: Store,
        chroma_dir: Path,
        name: str = "default",
        embedding: EmbeddingFunction[Documents] | None = None,
    ) -> StrategyLibrary:
        """Open (creating tables and the collection if needed) the library ``name``.

        Args:
            store: The store for the SQL rows.
            chroma_dir: Chroma persistence directory, e.g. ``Workspace.chroma_dir``.
            name: The library's name.
            embedding: Embedding function; defaults to the one the collection was created with,
                or the packaged MiniLM for a new collection.
        """
        name = (name or "").strip()
        if not name:
            raise ValueError("A strategy library needs a non-empty name.")
        ensure_tables(store)
        Path(chroma_dir).mkdir(parents=True, exist_ok=True)
        client = chromadb.PersistentClient(
            path=str(chroma_dir), settings=Settings(anonymized_telemetry=False)
        )
        cname = collection_name(name)
        if cname in {c.name for c in client.list_collections()}:
            collection = client.get_collection(cname, embedding_function=None)
            # As in tools.retrieval.Corpus: the function rebuilt from the stored config lives in
            # ``configuration``; the collection attribute would be Chroma's downloading default.
            stored = collection.configuration.get("embedding_function")
            embedding = embedding or stored or MiniLMEmbedding()
        else:
            embedding = embedding or MiniLMEmbedding()
            collection = client.create_collection(
                cname,
                embedding_function=embedding,
                configuration={"hnsw": {"space": "cosine"}},
                metadata={"library": name},
            )
        return cls(store, collection, name, embedding)

    def __repr__(self) -> str:
        return f"StrategyLibrary({self.name!r}, {self.store!r})"

    # Rows

    def _require(self, session: Session, strategy_id: int) -> Strategy:
        row = session.get(Strategy, strategy_id)
        if row is None or row.library != self.name:
            raise StrategyNotFound(
                f"There is no strategy {strategy_id} in library {self.name!r}; "
                "list them with /list in `agents audit`."
            )
        return row

    def get(self, strategy_id: int) -> Strategy:
        """The strategy with this id.

        Raises:
            StrategyNotFound: If it does not exist or belongs to another library.
        """
        with self.store.session() as session:
            return self._require(session, strategy_id)

    def versions(self, strategy_id: int) -> list[StrategyVersion]:
        """Every version of a strategy, oldest first."""
        query = (
            select(StrategyVersion)
            .where(StrategyVersion.strategy_id == strategy_id)
            .order_by(col(StrategyVersion.version))
        )
        with self.store.session() as session:
            self._require(session, strategy_id)
            return list(session.exec(query).all())

    def _strategy_query(self, statuses: Iterable[str] | None) -> Any:
        query = select(Strategy).where(Strategy.library == self.name)
        if statuses is not None:
            query = query.where(col(Strategy.status).in_(sorted(check_statuses(statuses))))
        return query

    def strategies(self, statuses: Iterable[str] | None = None) -> list[Strategy]:
        """The library's strategies in id order, optionally only those with ``statuses``."""
        with self.store.session() as session:
            query = self._strategy_query(statuses).order_by(col(Strategy.id))
            return list(session.exec(query).all())

    def count(self, statuses: Iterable[str] | None = None) -> int:
        """How many strategies the library holds, optionally only those with ``statuses``."""
        query = self._strategy_query(statuses).with_only_columns(func.count())
        with self.store.session() as session:
            return int(session.exec(query).one())

    def add(
        self,
        situation: str,
        text: str,
        *,
        author: str,
        scenario_ids: Sequence[int] = (),
        run_id: str | None = None,
        teacher: str | None = None,
        round: int | None = None,
        score_before: float | None = None,
        teacher_score: float | None = None,
        domain: str | None = None,
        status: str = "proposed",
        origin: str | None = None,
    ) -> Strategy:
        """Add a strategy (version 1) and index it.

        Args:
            situation: When the strategy applies, in one sentence.
            text: The guidance itself.
            author: Who wrote it, e.g. ``teacher:builtin:qwen2.5-coder-0.5b``.
            scenario_ids: The scenarios it was written for.
            run_id: The run that produced it.
            teacher: The teacher's model spec.
            round: The round of the run.
            score_before: The judge's score of the student before the strategy existed.
            teacher_score: The judge's score of the teacher's reply.
            domain: The domain, e.g. ``retail``.
            status: The initial status (``proposed`` unless imported already reviewed).
            origin: Idempotency key: when a strategy with this origin exists in the library, it
                is returned unchanged and nothing is added.
        """
        draft = StrategyDraft(
            situation=situation,
            text=text,
            scenario_ids=scenario_ids,
            run_id=run_id,
            teacher=teacher,
            round=round,
            score_before=score_before,
            teacher_score=teacher_score,
            domain=domain,
            status=status,
            origin=origin,
        )
        return self.add_many([draft], author=author)[0]

    def add_many(
        self, drafts: Sequence[StrategyDraft], *, author: str, progress: bool = False
    ) -> list[Strategy]:
        """Add several strategies in one transaction, embedding them in batches.

        Drafts whose ``origin`` is already stored (or repeats an earlier draft's) give the
        existing strategy, unchanged.

        Args:
            drafts: The strategies to add.
            author: Who wrote them.
            progress: Show a progress bar while embedding.

        Returns:
            One strategy per draft, in order.
        """
        for draft in drafts:
            check_statuses([draft.status])
        rows: list[Strategy] = []
        created: list[Strategy] = []
        with self.store.session(write=True) as session:
            origins = [d.origin for d in drafts if d.origin is not None]
            by_origin: dict[str, Strategy] = {}
            for chunk in _chunks(origins, 500):
                query = select(Strategy).where(
                    Strategy.library == self.name, col(Strategy.origin).in_(chunk)
                )
                by_origin.update((s.origin, s) for s in session.exec(query).all())  # type: ignore[misc]
            for draft in drafts:
                if draft.origin is not None and draft.origin in by_origin:
                    rows.append(by_origin[draft.origin])
                    continue
                row = Strategy(
                    library=self.name,
                    situation=_required_text(draft.situation, "situation"),
                    text=_required_text(draft.text, "text"),
                    status=draft.status,
                    domain=draft.domain,
                    scenario_ids=_merged_ids([], draft.scenario_ids),
                    run_id=draft.run_id,
                    teacher=draft.teacher,
                    round=draft.round,
                    score_before=draft.score_before,
                    teacher_score=draft.teacher_score,
                    origin=draft.origin,
                )
                session.add(row)
                rows.append(row)
                created.append(row)
                if draft.origin is not None:
                    by_origin[draft.origin] = row
            session.flush()  # assigns ids for the version rows
            session.add_all(
                StrategyVersion(
                    strategy_id=row.id,  # type: ignore[arg-type]
                    version=1,
                    situation=row.situation,
                    text=row.text,
                    status=row.status,
                    author=author,
                    created_at=row.created_at,
                )
                for row in created
            )
        # A stage that crashed after the SQL commit but before indexing left rows the index
        # lacks; re-adding them by origin repairs that.
        fresh = {id(row) for row in created}
        reused = list({row.id: row for row in rows if id(row) not in fresh}.values())
        for batch in _chunks(reused, _INDEX_BATCH):
            present = set(self.collection.get(ids=[str(r.id) for r in batch], include=[])["ids"])
            created += [r for r in batch if str(r.id) not in present]
        self._index(created, progress=progress)
        if created:
            logger.info("library %s: added %d strategies", self.name, len(created))
        return rows

    def revise(
        self,
        strategy_id: int,
        text: str,
        *,
        author: str,
        situation: str | None = None,
        reason: str | None = None,
        status: str | None = None,
        scenario_ids: Sequence[int] = (),
    ) -> Strategy:
        """Write a new version of a strategy.

        When text, situation and status are all unchanged no version is written and the row is
        returned as it is (apart from new ``scenario_ids``, which are always linked).

        Args:
            strategy_id: The strategy to revise.
            text: The new guidance.
            author: Who revised it.
            situation: A new situation sentence; the current one by default.
            reason: Why it was revised.
            status: The new status; the current one by default.
            scenario_ids: More source scenarios to link (duplicates are ignored).
        """
        text = _required_text(text, "text")
        with self.store.session(write=True) as session:
            row = self._require(session, strategy_id)
            new_situation = (
                _required_text(situation, "situation") if situation is not None else row.situation
            )
            new_status = row.status if status is None else status
            check_statuses([new_status])
            linked = _merged_ids(row.scenario_ids, scenario_ids)
            content_changed = (text, new_situation) != (row.text, row.situation)
            changed = content_changed or new_status != row.status
            if not changed and linked == row.scenario_ids:
                return row
            row.scenario_ids = linked
            row.updated_at = utcnow()
            if changed:
                row.version += 1
                row.text, row.situation, row.status = text, new_situation, new_status
                session.add(self._version_row(row, author, reason))
            session.add(row)
        if content_changed:
            self._index([row])
        elif changed:
            self._index_metadata([row])
        return row

    def set_status(
        self, strategy_id: int, status: str, *, author: str, reason: str | None = None
    ) -> Strategy:
        """Move a strategy to ``status`` as a new version (unchanged status: nothing is written).

        Args:
            strategy_id: The strategy.
            status: One of :data:`~strategies.records.STATUSES`.
            author: Who decided, e.g. ``reviewer:alice``.
            reason: Why.
        """
        check_statuses([status])
        with self.store.session(write=True) as session:
            row = self._require(session, strategy_id)
            if row.status == status:
                return row
            row.status = status
            row.version += 1
            row.updated_at = utcnow()
            session.add(row)
            session.add(self._version_row(row, author, reason))
        self._index_metadata([row])
        return row

    @staticmethod
    def _version_row(row: Strategy, author: str, reason: str | None) -> StrategyVersion:
        return StrategyVersion(
            strategy_id=row.id,  # type: ignore[arg-type]
            version=row.version,
            situation=row.situation,
            text=row.text,
            status=row.status,
            author=author,
            reason=reason,
            created_at=row.updated_at,
        )

    def record_scores(self, strategy_ids: Sequence[int], *, score_after: float) -> None:
        """Record the student's judge score once these strategies were in use (no new version)."""
        with self.store.session(write=True) as session:
            for strategy_id in dict.fromkeys(strategy_ids):
                row = self._require(session, strategy_id)
                row.score_after = float(score_after)
                row.updated_at = utcnow()
                session.add(row)

    # Index

    @staticmethod
    def _document(row: Strategy) -> str:
        return f"{row.situation}\n{row.text}"

    @staticmethod
    def _metadata(row: Strategy) -> dict[str, Any]:
        return {"status": row.status, "version": row.version}

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed texts with the library's embedding function."""
        if not texts:
            return []
        return [[float(x) for x in vector] for vector in self.embedding(list(texts))]

    def _index(self, rows: Sequence[Strategy], progress: bool = False) -> None:
        """Embed and upsert rows into the collection."""
        with tqdm(
            total=len(rows), desc=f"indexing {self.name}", unit="strategy", disable=not progress
        ) as bar:
            for batch in _chunks(list(rows), _EMBED_BATCH):
                documents = [self._document(r) for r in batch]
                self.collection.upsert(
                    ids=[str(r.id) for r in batch],
                    documents=documents,
                    metadatas=[self._metadata(r) for r in batch],
                    embeddings=np.asarray(self.embedding(documents), dtype=np.float32),
                )
                bar.update(len(batch))

    def _index_metadata(self, rows: Sequence[Strategy]) -> None:
        """Update status/version in the collection without embedding again."""
        for batch in _chunks(list(rows), _INDEX_BATCH):
            present = set(self.collection.get(ids=[str(r.id) for r in batch], include=[])["ids"])
            missing = [r for r in batch if str(r.id) not in present]
            kept = [r for r in batch if str(r.id) in present]
            if kept:
                self.collection.update(
                    ids=[str(r.id) for r in kept], metadatas=[self._metadata(r) for r in kept]
                )
            if missing:
                self._index(missing)

    def reindex(self) -> int:
        """Rebuild the collection entries of every strategy from SQL; returns how many."""
        rows = self.strategies()
        self._index(rows)
        known = {str(r.id) for r in rows}
        extra = [i for i in self.collection.get(include=[])["ids"] if i not in known]
        if extra:
            self.collection.delete(ids=extra)
        return len(rows)

    # Retrieval

    def retrieve(
        self, query: str, k: int = 3, *, statuses: Iterable[str] = USABLE
    ) -> list[StrategyHit]:
        """The strategies nearest to ``query`` among those with ``statuses``, best first.

        Args:
            query: A conversation or question, in natural language.
            k: How many strategies at most.
            statuses: Which statuses may be returned; :data:`USABLE` (inference) by default.
        """
        wanted = check_statuses(statuses)
        if self.collection.count() == 0 or not wanted:
            return []
        return self.retrieve_by_embedding(self.embed([query])[0], k, statuses=wanted)

    def retrieve_by_embedding(
        self, vector: Sequence[float], k: int = 3, *, statuses: Iterable[str] = USABLE
    ) -> list[StrategyHit]:
        """Like :meth:`retrieve` for a query that is already embedded."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}.")
        wanted = check_statuses(statuses)
        if not wanted:
            return []
        query_vector = np.asarray(vector, dtype=np.float32)
        # The HNSW index is searched without a status filter and the SQL status decides: a
        # metadata filter makes Chroma scan every entry (22 ms against 1 ms at 10,000
        # strategies, bench/strategy_retrieval.py), and the SQL row is the truth anyway.
        total = self.collection.count()
        asked = min(total, max(4 * k, k + 8))
        while True:
            result = self.collection.query(
                query_embeddings=[query_vector],
                n_results=asked,
                include=["distances", "metadatas"],
            )
            ids = [int(i) for i in result["ids"][0]]
            distances = result["distances"][0]  # type: ignore[index]
            labels = [(m or {}).get("status") for m in result["metadatas"][0]]  # type: ignore[index]
            rows = self._rows_by_id(ids)
            hits = [
                StrategyHit(rows[i], float(d))
                for i, d in zip(ids, distances, strict=True)
                if i in rows and rows[i].status in wanted
            ]
            stale = [
                i
                for i, label in zip(ids, labels, strict=True)
                if i not in rows or rows[i].status != label
            ]
            if stale:
                # The SQL status wins; bring the index in line with it.
                logger.warning("library %s: index was stale for strategies %s", self.name, stale)
                self._repair(stale, rows)
            if len(hits) >= k or asked >= total:
                return hits[:k]
            asked = min(total, asked * 4)  # other statuses took the places: look further

    def _rows_by_id(self, ids: Sequence[int]) -> dict[int, Strategy]:
        found: dict[int, Strategy] = {}
        with self.store.session() as session:
            for chunk in _chunks(list(ids), 500):
                query = select(Strategy).where(
                    Strategy.library == self.name, col(Strategy.id).in_(chunk)
                )
                found.update((s.id, s) for s in session.exec(query).all())  # type: ignore[misc]
        return found

    def _repair(self, stale: Sequence[int], rows: dict[int, Strategy]) -> None:
        gone = [str(i) for i in stale if i not in rows]
        if gone:
            self.collection.delete(ids=gone)
        self._index_metadata([rows[i] for i in stale if i in rows])

    # Scenarios

    def add_scenario(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        source: str,
        run_id: str | None = None,
        round: int | None = None,
        domain: str | None = None,
        task_id: str | None = None,
        meta: dict[str, Any] | None = None,
        origin: str | None = None,
    ) -> Scenario:
        """Store a scenario (a conversation ending with the customer's message).

        Args:
            messages: The conversation so far, OpenAI chat format.
            source: ``failure``, ``teacher`` or ``heldout``.
            run_id: The run it belongs to.
            round: The round of the run.
            domain: The domain, e.g. ``retail``.
            task_id: The task it was drawn from.
            meta: Why it was flagged, judge scores, the models' replies...
            origin: Idempotency key: an existing scenario with this origin is returned unchanged.
        """
        if source not in SCENARIO_SOURCES:
            raise ValueError(
                f"Unknown scenario source {source!r}; allowed: {', '.join(SCENARIO_SOURCES)}."
            )
        with self.store.session(write=True) as session:
            if origin is not None:
                query = select(Scenario).where(
                    Scenario.library == self.name, Scenario.origin == origin
                )
                existing = session.exec(query).first()
                if existing is not None:
                    return existing
            scenario = Scenario(
                library=self.name,
                run_id=run_id,
                round=round,
                domain=domain,
                task_id=task_id,
                source=source,
                messages=_plain_json(list(messages)),
                meta=_plain_json(dict(meta or {})),
                origin=origin,
            )
            session.add(scenario)
        return scenario

    def scenario(self, scenario_id: int) -> Scenario:
        """The scenario with this id.

        Raises:
            StrategyNotFound: If it does not exist or belongs to another library.
        """
        with self.store.session() as session:
            scenario = session.get(Scenario, scenario_id)
        if scenario is None or scenario.library != self.name:
            raise StrategyNotFound(f"There is no scenario {scenario_id} in library {self.name!r}.")
        return scenario

    def scenarios(
        self, ids: Sequence[int] | None = None, run_id: str | None = None
    ) -> list[Scenario]:
        """Scenarios in id order: those with ``ids`` and/or of ``run_id``, or all of them."""
        query = select(Scenario).where(Scenario.library == self.name)
        if run_id is not None:
            query = query.where(Scenario.run_id == run_id)
        with self.store.session() as session:
            if ids is None:
                return list(session.exec(query.order_by(col(Scenario.id))).all())
            found: list[Scenario] = []
            for chunk in _chunks(list(dict.fromkeys(ids)), 500):
                found += session.exec(query.where(col(Scenario.id).in_(chunk))).all()
        return sorted(found, key=lambda s: s.id or 0)

    # Audit log

    def log(
        self, action: str, *, actor: str, strategy_id: int | None = None, **detail: Any
    ) -> AuditEvent:
        """Append an event to the library's audit log (rows are never changed afterwards).

        Args:
            action: What happened: ``session_start``, ``search``, ``approve``, ``edit``...
            actor: Who did it, e.g. ``reviewer:alice``.
            strategy_id: The strategy concerned, if any.
            **detail: Anything worth keeping (stored as JSON; other values as strings).
        """
        event = AuditEvent(
            library=self.name,
            strategy_id=strategy_id,
            action=action,
            actor=actor,
            detail=_plain_json(detail),
        )
        with self.store.session(write=True) as session:
            session.add(event)
        return event

    def events(
        self,
        since: datetime | None = None,
        actions: Iterable[str] | None = None,
        *,
        strategy_id: int | None = None,
    ) -> list[AuditEvent]:
        """Audit events in the order they happened, optionally at or after ``since``, of some
        ``actions`` only, or about one strategy only."""
        query = select(AuditEvent).where(AuditEvent.library == self.name)
        if strategy_id is not None:
            query = query.where(AuditEvent.strategy_id == strategy_id)
        if since is not None:
            query = query.where(AuditEvent.at >= since)
        if actions is not None:
            query = query.where(col(AuditEvent.action).in_(sorted(set(actions))))
        with self.store.session() as session:
            return list(session.exec(query.order_by(col(AuditEvent.id))).all())

    def versions_since(self, since: datetime | None = None) -> list[StrategyVersion]:
        """Versions of this library's strategies written after ``since`` (all if None), oldest
        first."""
        query = (
            select(StrategyVersion)
            .join(Strategy, col(Strategy.id) == col(StrategyVersion.strategy_id))
            .where(Strategy.library == self.name)
        )
        if since is not None:
            query = query.where(StrategyVersion.created_at > since)
        with self.store.session() as session:
            return list(session.exec(query.order_by(col(StrategyVersion.id))).all())
