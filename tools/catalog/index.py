"""A built catalog: its items in SQL tables (exact filters), their texts in a Chroma collection
(semantic matching with the packaged MiniLM), and collaborative scores fitted on interactions.

``Catalog.build`` writes both stores once and reopens them afterwards in seconds: the SQL tables
live in ``catalog.sqlite`` (SQLModel, or any SQLAlchemy URL) and the item embeddings in the Chroma
collection ``catalog-<name>``. Hard constraints become one SQL query; soft preferences are cosine
similarities between the embedded preference text and the stored item vectors.
"""

from __future__ import annotations

import hashlib
import json
import logging
import operator
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator, model_validator
from sqlalchemy import func
from sqlalchemy.orm import registry
from sqlmodel import Field, Session, SQLModel, col, create_engine, delete, select

from tools.catalog.collab import Collaborative
from tools.catalog.films import NUMBER_ATTRIBUTES, SET_ATTRIBUTES, CatalogData, Item, Rating

logger = logging.getLogger(__name__)

Attribute = Literal["year", "runtime", "genre", "language", "country", "director", "cast"]
Operator = Literal["==", "!=", "<", "<=", ">", ">="]
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_PEOPLE = ("director", "cast")  # matched by part of the name: "De Niro" finds "Robert De Niro"


class HardConstraint(BaseModel):
    """A checkable condition on one attribute: ``year >= 1990``, ``genre != Horror``.

    Numbers (``year``, ``runtime`` in minutes) take any comparison; the other attributes take
    ``==`` (the item has this value) and ``!=`` (it has not), case-insensitively, and for
    ``director`` and ``cast`` a part of the name is enough.
    """

    model_config = ConfigDict(extra="forbid")

    attribute: Attribute
    operator: Operator = "=="
    value: str | int | float

    @field_validator("value")
    @classmethod
    def _not_blank(cls, value: str | int | float) -> str | int | float:
        if isinstance(value, str) and not value.strip():
            raise ValueError("the value is empty")
        return value

    @model_validator(mode="after")
    def _fits_attribute(self) -> HardConstraint:
        if self.attribute in NUMBER_ATTRIBUTES:
            try:
                float(self.value)
            except ValueError:
                raise ValueError(f"{self.attribute} takes a number, not {self.value!r}") from None
        elif self.operator not in ("==", "!="):
            raise ValueError(f"{self.attribute} takes == or !=, not {self.operator}")
        return self

    def holds(self, item: Item) -> bool:
        """Whether ``item`` meets the constraint (the same rule as the SQL filter)."""
        if self.attribute in NUMBER_ATTRIBUTES:
            have = getattr(item, self.attribute)
            return have is not None and bool(_COMPARE[self.operator](have, float(self.value)))
        wanted = str(self.value).strip().lower()
        values = [v.lower() for v in item.values(self.attribute)]
        found = any(wanted in v if self.attribute in _PEOPLE else wanted == v for v in values)
        return found if self.operator == "==" else not found

    def __str__(self) -> str:
        return f"{self.attribute} {self.operator} {self.value}"


class _Tables(SQLModel, registry=registry()):
    """The catalog's own tables, apart from the run store's metadata and migrations."""


class CatalogItem(_Tables, table=True):
    __tablename__ = "catalog_item"

    catalog: str = Field(primary_key=True)
    id: str = Field(primary_key=True)
    title: str
    year: int | None = Field(default=None, index=True)
    runtime: int | None = Field(default=None, index=True)


class CatalogInfo(_Tables, table=True):
    __tablename__ = "catalog_info"

    catalog: str = Field(primary_key=True)
    digest: str  # of the items written: a changed catalog is written again


class CatalogValue(_Tables, table=True):
    __tablename__ = "catalog_value"

    row: int | None = Field(default=None, primary_key=True)
    catalog: str = Field(index=True)
    item_id: str = Field(index=True)
    attribute: str = Field(index=True)
    value: str
    folded: str = Field(index=True)  # lower case, for case-insensitive matching


class Catalog:
    """A catalog opened for recommending.

    Attributes:
        name: The catalog's name.
        items: Every item, in the order of every score vector.
        ratings: The interactions the collaborative model may learn from.
        vectors: Unit-length item embeddings, one row per item.
    """

    def __init__(
        self,
        data: CatalogData,
        *,
        engine: Any,
        corpus: Any,
        vectors: np.ndarray,
        collaborative: Collaborative,
    ) -> None:
        self.name = data.name
        self.data = data
        self.items = list(data.items)
        self.ids = [item.id for item in self.items]
        self.by_id = {item.id: item for item in self.items}
        self.position = {item.id: n for n, item in enumerate(self.items)}
        #: every genre of the catalog, sorted
        self.genres = sorted({g for item in self.items for g in item.genres})
        self.engine = engine
        self.corpus = corpus
        self.vectors = vectors
        self.collaborative = collaborative

    # -- building ------------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        data: CatalogData,
        directory: str | Path,
        *,
        chroma_dir: str | Path | None = None,
        sql_url: str | None = None,
        train_ratings: Sequence[Rating] | None = None,
        factors: int = 32,
        seed: int = 0,
    ) -> Catalog:
        """Write the catalog's tables and embeddings (once) and open it.

        Args:
            data: Items and interactions (:func:`tools.catalog.films.load_movielens` or
                :func:`tools.catalog.films.load_catalog_files`).
            directory: Where ``catalog.sqlite`` lives (a workspace's ``catalog/``).
            chroma_dir: Chroma persistence directory (default ``directory/chroma``).
            sql_url: Any SQLAlchemy URL instead of ``catalog.sqlite``.
            train_ratings: What the collaborative model learns from (default: every rating;
                a recommender evaluated on held-out users passes the training users' only).
            factors: ALS latent dimensions.
            seed: ALS seed.
        """
        from tools.retrieval import Corpus

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        engine = create_engine(sql_url or f"sqlite:///{directory / 'catalog.sqlite'}")
        _Tables.metadata.create_all(engine)
        _write_tables(engine, data)
        corpus = Corpus.open(chroma_dir or directory / "chroma", f"catalog-{data.name}")
        corpus.add_documents([{"id": i.id, "title": i.title, "text": i.text()} for i in data.items])
        stored = corpus.collection.get(ids=[i.id for i in data.items], include=["embeddings"])
        by_id = dict(zip(stored["ids"], stored["embeddings"], strict=True))
        vectors = np.asarray([by_id[i.id] for i in data.items], dtype=np.float64)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        collaborative = Collaborative(
            [i.id for i in data.items],
            data.ratings if train_ratings is None else train_ratings,
            factors=factors,
            seed=seed,
        )
        return cls(data, engine=engine, corpus=corpus, vectors=vectors, collaborative=collaborative)

    # -- querying ------------------------------------------------------------------------------

    def filter(self, constraints: Sequence[HardConstraint]) -> list[str]:
        """Ids of the items meeting every constraint, in catalog order (one SQL query)."""
        query = select(CatalogItem.id).where(CatalogItem.catalog == self.name)
        for constraint in constraints:
            if constraint.attribute in NUMBER_ATTRIBUTES:
                column = col(getattr(CatalogItem, constraint.attribute))
                compare = _COMPARE[constraint.operator]
                query = query.where(column.is_not(None), compare(column, float(constraint.value)))
                continue
            wanted = str(constraint.value).strip().lower()
            folded = col(CatalogValue.folded)
            match = folded.contains(wanted) if constraint.attribute in _PEOPLE else folded == wanted
            having = select(CatalogValue.item_id).where(
                CatalogValue.catalog == self.name,
                CatalogValue.attribute == constraint.attribute,
                match,
            )
            item_id = col(CatalogItem.id)
            query = query.where(
                item_id.in_(having) if constraint.operator == "==" else item_id.not_in(having)
            )
        with Session(self.engine) as session:
            found = set(session.exec(query).all())
        return [i for i in self.ids if i in found]

    def similarity(self, text: str) -> np.ndarray:
        """Cosine similarity of ``text`` to every item, in [-1, 1]."""
        vector = np.asarray(self.corpus.embedding.embed_query([text])[0], dtype=np.float64)
        vector /= max(float(np.linalg.norm(vector)), 1e-12)
        return self.vectors @ vector

    def find(self, title: str) -> Item | None:
        """The item whose title matches ``title`` (case-insensitive, article-insensitive)."""
        from tools.catalog.films import title_keys

        keys = title_keys(title)
        for item in self.items:
            if keys & title_keys(item.title):
                return item
        return None

    def values(self, attribute: str) -> list[str]:
        """The distinct values of a set attribute, most frequent first."""
        if attribute not in SET_ATTRIBUTES:
            raise ValueError(f"{attribute} is not one of {', '.join(SET_ATTRIBUTES)}")
        query = (
            select(CatalogValue.value, func.count())
            .where(CatalogValue.catalog == self.name, CatalogValue.attribute == attribute)
            .group_by(CatalogValue.value)
            .order_by(func.count().desc(), CatalogValue.value)
        )
        with Session(self.engine) as session:
            return [value for value, _ in session.exec(query).all()]


def _write_tables(engine: Any, data: CatalogData) -> None:
    """Insert the catalog's rows unless the same items are already there."""
    digest = hashlib.sha256(
        json.dumps([item.to_dict() for item in data.items], sort_keys=True).encode()
    ).hexdigest()
    with Session(engine) as session:
        info = session.get(CatalogInfo, data.name)
        if info is not None and info.digest == digest:
            return
        session.exec(delete(CatalogValue).where(col(CatalogValue.catalog) == data.name))
        session.exec(delete(CatalogItem).where(col(CatalogItem.catalog) == data.name))
        for item in data.items:
            session.add(
                CatalogItem(
                    catalog=data.name,
                    id=item.id,
                    title=item.title,
                    year=item.year,
                    runtime=item.runtime,
                )
            )
            for attribute in SET_ATTRIBUTES:
                for value in item.values(attribute):
                    session.add(
                        CatalogValue(
                            catalog=data.name,
                            item_id=item.id,
                            attribute=attribute,
                            value=value,
                            folded=value.lower(),
                        )
                    )
        session.merge(CatalogInfo(catalog=data.name, digest=digest))
        session.commit()
    logger.info("catalog %s: %d items written", data.name, len(data.items))
