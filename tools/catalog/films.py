"""Catalog records and where they come from: MovieLens-100k joined to OMDb film attributes, or
your own items JSONL and interactions CSV.

MovieLens-100k ships inside the ``recbole`` PyPI package (``dataset_example/ml-100k/``: 100,000
ratings by 943 users of 1,682 films, with title, year and genres). Its licence forbids
redistribution, so it is read from the installed package at run time and never copied into the
project. Runtime, director, cast, language and country come from the OMDb table of
``bokeh-sampledata`` (``_data/movies.db``, CC0), joined on the normalised title and a year within
one of MovieLens' (about 1,300 of the 1,682 films match; the rest keep MovieLens' own genres and
year). Only the files are read; neither package's Python code is imported.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import re
import sqlite3
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

INSTALL_HINT = "pip install --no-deps recbole==1.2.1 bokeh-sampledata==2026.1"
SET_ATTRIBUTES = ("genre", "language", "country", "director", "cast")
NUMBER_ATTRIBUTES = ("year", "runtime")
ATTRIBUTES = NUMBER_ATTRIBUTES + SET_ATTRIBUTES


class CatalogUnavailable(RuntimeError):
    """Raised when a catalog's files cannot be found or read."""


@dataclass(frozen=True)
class Item:
    """One film (or any item) of a catalog.

    Attributes:
        id: The catalog's own id (MovieLens' item id for ml-100k).
        title: Display title, article first ("The Usual Suspects").
        year: Release year, when known.
        runtime: Minutes, when known.
        genres, languages, countries, directors, cast: Attribute values, as the sources spell
            them (hard constraints compare them case-insensitively).
    """

    id: str
    title: str
    year: int | None = None
    runtime: int | None = None
    genres: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    directors: tuple[str, ...] = ()
    cast: tuple[str, ...] = ()

    def values(self, attribute: str) -> tuple[str, ...]:
        """The values of a set attribute (``genre``, ``language``, ``country``, ``director``,
        ``cast``)."""
        return {
            "genre": self.genres,
            "language": self.languages,
            "country": self.countries,
            "director": self.directors,
            "cast": self.cast,
        }[attribute]

    def text(self) -> str:
        """What the item's embedding is computed from: title, year, genres, people, places."""
        parts = [f"{self.title} ({self.year})" if self.year else self.title]
        if self.genres:
            parts.append(", ".join(self.genres))
        if self.directors:
            parts.append("Directed by " + ", ".join(self.directors[:2]))
        if self.cast:
            parts.append("With " + ", ".join(self.cast[:6]))
        if self.runtime:
            parts.append(f"{self.runtime} minutes")
        places = [*self.languages[:2], *self.countries[:2]]
        if places:
            parts.append(", ".join(places))
        return ". ".join(parts) + "."

    def line(self) -> str:
        """One line of a feed: title, year, runtime, genres."""
        year = f" ({self.year})" if self.year else ""
        runtime = f", {self.runtime} min" if self.runtime else ""
        genres = f", {'/'.join(self.genres[:3])}" if self.genres else ""
        return f"{self.title}{year}{runtime}{genres}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "year": self.year,
            "runtime": self.runtime,
            "genres": list(self.genres),
            "languages": list(self.languages),
            "countries": list(self.countries),
            "directors": list(self.directors),
            "cast": list(self.cast),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Item:
        """An item from a JSON object; ``id`` and ``title`` are required, the rest optional."""
        if "id" not in data or "title" not in data:
            raise ValueError("an item needs an id and a title")

        def strings(key: str) -> tuple[str, ...]:
            value = data.get(key) or ()
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",")]
            return tuple(str(v) for v in value if str(v).strip())

        def number(key: str) -> int | None:
            value = data.get(key)
            return None if value in (None, "") else int(float(value))

        return cls(
            id=str(data["id"]),
            title=str(data["title"]),
            year=number("year"),
            runtime=number("runtime"),
            genres=strings("genres"),
            languages=strings("languages"),
            countries=strings("countries"),
            directors=strings("directors"),
            cast=strings("cast"),
        )


@dataclass(frozen=True)
class Rating:
    """One user's rating of one item (MovieLens: 1–5 stars; a rating above 3 is a positive)."""

    user: str
    item: str
    rating: float
    timestamp: int = 0


@dataclass
class CatalogData:
    """Items and interactions, as loaded from their source.

    Attributes:
        name: The catalog's name (``ml-100k``, or your file's stem); it names the built index.
        items: Every item, in source order.
        ratings: Every interaction.
        matched: How many items got attributes from the OMDb join (0 for your own catalog).
    """

    name: str
    items: list[Item]
    ratings: list[Rating]
    matched: int = 0
    sources: dict[str, str] = field(default_factory=dict)


# -- MovieLens + OMDb ---------------------------------------------------------------------------

_PLACEHOLDERS = {"unknown", "unkonwn"}
_ARTICLES = ("the", "a", "an", "les", "la", "le", "il", "das", "der", "die", "el", "l'")


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise CatalogUnavailable(f"the package {package} is not installed ({INSTALL_HINT})")
    return Path(next(iter(spec.submodule_search_locations)))


def movielens_dir() -> Path:
    """``dataset_example/ml-100k`` of the installed ``recbole`` package."""
    path = _package_dir("recbole") / "dataset_example" / "ml-100k"
    if not (path / "ml-100k.item").is_file():
        raise CatalogUnavailable(f"{path} has no ml-100k.item ({INSTALL_HINT})")
    return path


def omdb_path() -> Path:
    """``_data/movies.db`` of the installed ``bokeh-sampledata`` package."""
    path = _package_dir("bokeh_sampledata") / "_data" / "movies.db"
    if not path.is_file():
        raise CatalogUnavailable(f"{path} is missing ({INSTALL_HINT})")
    return path


def display_title(title: str) -> str:
    """MovieLens' "Usual Suspects, The" as "The Usual Suspects"; other titles unchanged."""
    match = re.match(r"^(.*), (The|A|An|Les|La|Le|Il|Das|Der|Die|El|L')(\s*\(.*\))?$", title)
    if not match:
        return title
    head, article, tail = match.groups()
    glue = "" if article.endswith("'") else " "
    return f"{article}{glue}{head}{tail or ''}"


def title_keys(title: str) -> set[str]:
    """Normalised forms a title may be matched by: lower case, accents and punctuation dropped,
    a leading or trailing article removed, and an alternative title in brackets on its own
    ("Seven (Se7en)" → {"seven", "se7en"})."""
    names = [title]
    bracket = re.match(r"^(.*?)\s*\((.+)\)\s*$", title)
    if bracket:
        names = [bracket.group(1), bracket.group(2)]
    keys = set()
    for name in names:
        plain = unicodedata.normalize("NFKD", display_title(name.strip()))
        plain = "".join(c for c in plain if not unicodedata.combining(c)).lower()
        plain = plain.replace("&", " and ")
        words = re.sub(r"[^a-z0-9']+", " ", plain).split()
        while words and words[0] in _ARTICLES:
            words = words[1:]
        key = " ".join(w.replace("'", "") for w in words)
        if key:
            keys.add(key)
    return keys


def _split(value: str | None) -> tuple[str, ...]:
    if not value or value == "N/A":
        return ()
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _omdb_index(path: Path) -> dict[str, list[dict[str, Any]]]:
    """OMDb rows by title key."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute(
            'SELECT Title, Year, Runtime, Genre, Director, "Cast", Language, Country, imdbVotes '
            "FROM omdb"
        ).fetchall()
    index: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        record = dict(row)
        for key in title_keys(str(record["Title"] or "")):
            index.setdefault(key, []).append(record)
    return index


def _best_row(item: Item, index: dict[str, list[dict[str, Any]]]) -> dict[str, Any] | None:
    """The OMDb row for ``item``: a title key in common and a year within one; the exact year
    first, then the most voted."""
    if item.year is None:
        return None
    found = {
        id(row): row
        for key in title_keys(item.title)
        for row in index.get(key, [])
        if row["Year"] is not None and abs(int(row["Year"]) - item.year) <= 1
    }
    if not found:
        return None
    return min(
        found.values(), key=lambda r: (abs(int(r["Year"]) - item.year), -(r["imdbVotes"] or 0))
    )


def _genre(name: str) -> str:
    return {"Children's": "Children", "Film-Noir": "Film-Noir"}.get(name, name)


def _merge(item: Item, row: dict[str, Any]) -> Item:
    genres = list(item.genres)
    for genre in _split(row["Genre"]):
        if genre.lower() not in {g.lower() for g in genres}:
            genres.append(genre)
    runtime = row["Runtime"]
    return replace(
        item,
        runtime=int(runtime) if runtime else None,
        genres=tuple(genres),
        languages=_split(row["Language"]),
        countries=_split(row["Country"]),
        directors=_split(row["Director"]),
        cast=_split(row["Cast"]),
    )


def load_movielens(directory: Path | None = None, omdb: Path | None = None) -> CatalogData:
    """MovieLens-100k's films and ratings, with OMDb attributes where the join finds them.

    Args:
        directory: The ml-100k folder (default: the installed ``recbole`` package's).
        omdb: The OMDb SQLite file (default: the installed ``bokeh-sampledata`` package's);
            when it is missing, items keep MovieLens' title, year and genres only.

    Raises:
        CatalogUnavailable: The MovieLens files are not installed or unreadable.
    """
    directory = directory or movielens_dir()
    items: list[Item] = []
    try:
        with open(directory / "ml-100k.item", encoding="latin-1") as handle:
            reader = csv.reader(handle, delimiter="\t")
            next(reader)
            for row in reader:
                item_id, title, year, genres = (row + ["", "", "", ""])[:4]
                if title.strip().lower() in _PLACEHOLDERS:
                    continue  # one record stands for "unknown film": no title, no year
                items.append(
                    Item(
                        id=item_id,
                        title=display_title(title.strip()),
                        year=int(year) if year.strip().isdigit() else None,
                        genres=tuple(_genre(g) for g in genres.split() if g != "unknown"),
                    )
                )
        ratings = []
        with open(directory / "ml-100k.inter", encoding="latin-1") as handle:
            reader = csv.reader(handle, delimiter="\t")
            next(reader)
            known = {item.id for item in items}
            for user, item, rating, stamp in reader:
                if item in known:
                    ratings.append(Rating(user, item, float(rating), int(float(stamp))))
    except (OSError, ValueError) as exc:
        raise CatalogUnavailable(f"cannot read MovieLens-100k in {directory}: {exc}") from exc
    matched = 0
    sources = {"ratings": str(directory)}
    try:
        omdb = omdb or omdb_path()
    except CatalogUnavailable:
        omdb = None
    if omdb is not None:
        index = _omdb_index(omdb)
        enriched = []
        for item in items:
            row = _best_row(item, index)
            matched += row is not None
            enriched.append(_merge(item, row) if row else item)
        items = enriched
        sources["attributes"] = str(omdb)
    return CatalogData("ml-100k", items, ratings, matched, sources)


# -- your own catalog ---------------------------------------------------------------------------


def load_catalog_files(items: str | Path, interactions: str | Path) -> CatalogData:
    """A catalog of your own: items JSONL and interactions CSV.

    Each item line is a JSON object with ``id`` and ``title`` and optionally ``year``,
    ``runtime``, ``genres``, ``languages``, ``countries``, ``directors``, ``cast`` (lists, or
    comma-separated strings). The CSV has a header with ``user``, ``item``, ``rating`` and
    optionally ``timestamp``.

    Raises:
        CatalogUnavailable: A file is missing or a line is malformed (with its line number).
    """
    items, interactions = Path(items), Path(interactions)
    loaded: list[Item] = []
    try:
        for number, line in enumerate(items.read_text().splitlines(), 1):
            if line.strip():
                try:
                    loaded.append(Item.from_dict(json.loads(line)))
                except (ValueError, TypeError) as exc:
                    raise CatalogUnavailable(f"{items}:{number}: {exc}") from exc
        ratings = []
        with open(interactions, newline="") as handle:
            reader = csv.DictReader(handle)
            missing = {"user", "item", "rating"} - set(reader.fieldnames or ())
            if missing:
                raise CatalogUnavailable(f"{interactions} lacks the columns {sorted(missing)}")
            for number, row in enumerate(reader, 2):
                try:
                    ratings.append(
                        Rating(
                            row["user"],
                            row["item"],
                            float(row["rating"]),
                            int(float(row.get("timestamp") or 0)),
                        )
                    )
                except ValueError as exc:
                    raise CatalogUnavailable(f"{interactions}:{number}: {exc}") from exc
    except OSError as exc:
        raise CatalogUnavailable(f"cannot read the catalog: {exc}") from exc
    known = {item.id for item in loaded}
    unknown = sorted({r.item for r in ratings} - known)
    if unknown:
        raise CatalogUnavailable(
            f"{interactions} rates {len(unknown)} items not in {items} (first: {unknown[0]})"
        )
    return CatalogData(items.stem, loaded, ratings, 0, {"items": str(items)})


def positives(ratings: Iterable[Rating], threshold: float = 3.0) -> list[Rating]:
    """The ratings above ``threshold`` (MovieLens: 4 and 5 stars)."""
    return [r for r in ratings if r.rating > threshold]


def by_user(ratings: Sequence[Rating]) -> dict[str, list[Rating]]:
    """Ratings grouped by user, each user's in time order."""
    grouped: dict[str, list[Rating]] = {}
    for rating in ratings:
        grouped.setdefault(rating.user, []).append(rating)
    for history in grouped.values():
        history.sort(key=lambda r: (r.timestamp, r.item))
    return grouped
