"""A recommendation catalog and the tools a planner agent recommends with (RecBot).

``films`` loads items and interactions (MovieLens-100k with OMDb attributes, or your own files),
``index.Catalog`` builds them into SQL tables and a Chroma collection, ``collab`` fits the
collaborative model, and ``planner`` holds the four tools: Filter, Matcher, Attenuator and
Aggregator.
"""

from __future__ import annotations

from tools.catalog.collab import Collaborative
from tools.catalog.films import (
    ATTRIBUTES,
    CatalogData,
    CatalogUnavailable,
    Item,
    Rating,
    load_catalog_files,
    load_movielens,
)
from tools.catalog.index import Catalog, HardConstraint
from tools.catalog.planner import (
    PLANNER_TOOLS,
    Feed,
    aggregate_feed,
    attenuate_items,
    filter_items,
    match_items,
)

__all__ = [
    "ATTRIBUTES",
    "PLANNER_TOOLS",
    "Catalog",
    "CatalogData",
    "CatalogUnavailable",
    "Collaborative",
    "Feed",
    "HardConstraint",
    "Item",
    "Rating",
    "aggregate_feed",
    "attenuate_items",
    "filter_items",
    "load_catalog_files",
    "load_movielens",
    "match_items",
]
