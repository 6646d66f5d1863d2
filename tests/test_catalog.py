"""The recommendation catalog: MovieLens + OMDb loading, the SQL filter, semantic and
collaborative scores, and the planner's four tools (real SQLite, Chroma and MiniLM; no LLM)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from catalog_world import FILMS, RATINGS

from tools import ToolContext, call_tool
from tools.catalog import (
    PLANNER_TOOLS,
    Catalog,
    CatalogData,
    CatalogUnavailable,
    Feed,
    HardConstraint,
    aggregate_feed,
    filter_items,
    load_catalog_files,
    load_movielens,
    match_items,
)
from tools.catalog.films import display_title, title_keys


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    data = CatalogData("films", list(FILMS), list(RATINGS))
    return Catalog.build(data, tmp_path_factory.mktemp("catalog"), factors=4)


def _call(name: str, arguments: dict, context: ToolContext) -> str:
    """One tool call as a model makes it; the observation text."""
    call = {"id": "c1", "type": "function", "function": {"name": name, "arguments": arguments}}
    return str(call_tool(call, PLANNER_TOOLS, context)["content"])


def _ids(catalog: Catalog, constraints: list[dict]) -> list[str]:
    return catalog.filter([HardConstraint.model_validate(c) for c in constraints])


# -- titles and sources -------------------------------------------------------------------------


def test_titles_are_shown_article_first_and_matched_loosely() -> None:
    assert display_title("Usual Suspects, The") == "The Usual Suspects"
    assert display_title("Postino, Il (1994)") == "Il Postino (1994)"
    assert display_title("Heat") == "Heat"
    assert title_keys("Seven (Se7en)") == {"seven", "se7en"}
    assert title_keys("Usual Suspects, The") == title_keys("The Usual Suspects")
    assert title_keys("Amélie") == title_keys("Amelie")


def test_movielens_is_read_from_the_installed_packages_and_joined_to_omdb() -> None:
    data = load_movielens()
    assert data.name == "ml-100k"
    assert len(data.items) == 1681  # 1,682 less the one "unknown" placeholder
    assert 99_990 <= len(data.ratings) <= 100_000
    assert len({r.user for r in data.ratings}) == 943
    assert 1_300 <= data.matched <= 1_450, data.matched
    by_title = {(i.title, i.year): i for i in data.items}
    heat = by_title[("Heat", 1995)]
    assert heat.runtime == 170 and heat.directors == ("Michael Mann",)
    assert "Robert De Niro" in heat.cast and "English" in heat.languages
    assert "Crime" in heat.genres and "Thriller" in heat.genres
    suspects = by_title[("The Usual Suspects", 1995)]
    assert suspects.directors == ("Bryan Singer",)
    # an unmatched film keeps MovieLens' own year and genres
    unmatched = [i for i in data.items if not i.directors]
    assert unmatched and all(i.year and i.genres for i in unmatched[:50])


def test_your_own_catalog_files_load_and_bad_ones_say_where(tmp_path: Path) -> None:
    items = tmp_path / "shop.jsonl"
    items.write_text(
        json.dumps({"id": "a", "title": "Kettle", "genres": "kitchen, steel", "year": 2020})
        + "\n\n"
        + json.dumps({"id": "b", "title": "Lamp"})
        + "\n"
    )
    interactions = tmp_path / "shop.csv"
    interactions.write_text("user,item,rating\nu1,a,5\nu2,b,4\n")
    data = load_catalog_files(items, interactions)
    assert data.name == "shop" and [i.id for i in data.items] == ["a", "b"]
    assert data.items[0].genres == ("kitchen", "steel") and data.items[0].year == 2020
    assert [r.rating for r in data.ratings] == [5.0, 4.0]

    interactions.write_text("user,item,rating\nu1,zzz,5\n")
    with pytest.raises(CatalogUnavailable, match="1 items not in"):
        load_catalog_files(items, interactions)
    interactions.write_text("user,item\nu1,a\n")
    with pytest.raises(CatalogUnavailable, match="lacks the columns"):
        load_catalog_files(items, interactions)
    items.write_text('{"id": "a"}\n')
    with pytest.raises(CatalogUnavailable, match="shop.jsonl:1: an item needs an id and a title"):
        load_catalog_files(items, interactions)


# -- hard constraints ---------------------------------------------------------------------------


def test_constraints_reject_what_cannot_be_checked() -> None:
    with pytest.raises(ValueError, match="year takes a number"):
        HardConstraint(attribute="year", operator=">", value="nineties")
    with pytest.raises(ValueError, match="genre takes == or !="):
        HardConstraint(attribute="genre", operator="<", value="Drama")
    with pytest.raises(ValueError):
        HardConstraint.model_validate({"attribute": "mood", "value": "dark"})
    with pytest.raises(ValueError, match="empty"):
        HardConstraint(attribute="genre", value="  ")


CASES = [
    [{"attribute": "year", "operator": ">=", "value": 1990}],
    [
        {"attribute": "year", "operator": "<", "value": 1990},
        {"attribute": "genre", "operator": "!=", "value": "horror"},
    ],
    [{"attribute": "runtime", "operator": "<=", "value": 120}],
    [{"attribute": "cast", "value": "De Niro"}],
    [{"attribute": "director", "operator": "!=", "value": "kubrick"}],
    [{"attribute": "language", "value": "French"}, {"attribute": "country", "value": "france"}],
    [
        {"attribute": "genre", "value": "Animation"},
        {"attribute": "runtime", "operator": ">", "value": 85},
    ],
    [{"attribute": "genre", "value": "Western"}],
    [],
]


@pytest.mark.parametrize("constraints", CASES)
def test_the_sql_filter_agrees_with_the_rule_on_every_item(
    catalog: Catalog, constraints: list[dict]
) -> None:
    parsed = [HardConstraint.model_validate(c) for c in constraints]
    expected = [i.id for i in FILMS if all(c.holds(i) for c in parsed)]
    assert catalog.filter(parsed) == expected


def test_the_filter_examples_read_as_a_user_means_them(catalog: Catalog) -> None:
    assert _ids(catalog, [{"attribute": "cast", "value": "de niro"}]) == ["1", "2"]
    # unknown year or runtime never meets a numeric constraint
    assert "10" not in _ids(catalog, [{"attribute": "year", "operator": "!=", "value": 1995}])
    assert _ids(catalog, [{"attribute": "genre", "operator": "!=", "value": "Drama"}]) == [
        "1",
        "3",
        "4",
        "5",
        "7",
        "9",
    ]
    assert catalog.values("country")[0] == "United States"


# -- scores ---------------------------------------------------------------------------------


def test_semantic_similarity_finds_the_film_a_description_fits(catalog: Catalog) -> None:
    scores = catalog.similarity("a space adventure with starships")
    assert catalog.ids[int(scores.argmax())] == "4"
    scores = catalog.similarity("animated family film for children")
    assert catalog.ids[int(scores.argmax())] in {"3", "9"}


def test_collaborative_scores_follow_the_users_taste(catalog: Catalog) -> None:
    crime = catalog.collaborative.scores(["1"])  # a user who liked Heat
    assert crime[catalog.position["2"]] > crime[catalog.position["3"]]
    animation = catalog.collaborative.scores(["3"])  # ... who liked Toy Story
    assert animation[catalog.position["9"]] > animation[catalog.position["2"]]
    assert 0.0 <= crime.min() and crime.max() == pytest.approx(1.0)
    nobody = catalog.collaborative.scores([])  # no history: popularity
    assert catalog.ids[int(nobody.argmax())] == "4"


def test_the_catalog_is_written_once_and_again_when_it_changes(
    catalog: Catalog, tmp_path: Path
) -> None:
    data = CatalogData("films", list(FILMS[:3]), list(RATINGS[:3]))
    first = Catalog.build(data, tmp_path, factors=2)
    again = Catalog.build(data, tmp_path, factors=2)
    assert again.filter([]) == first.filter([]) == ["1", "2", "3"]
    changed = CatalogData("films", [*FILMS[:2], FILMS[3]], list(RATINGS[:3]))
    assert Catalog.build(changed, tmp_path, factors=2).filter([]) == ["1", "2", "4"]


# -- the planner's tools ------------------------------------------------------------------------


def test_a_tool_chain_filters_matches_and_ranks_without_the_users_history(
    catalog: Catalog,
) -> None:
    feed = Feed(catalog, history=["1"])
    with ToolContext([feed]) as context:
        said = filter_items(
            [{"attribute": "year", "operator": ">=", "value": 1980}], context=context
        )
        assert said.startswith("6 films meet year >= 1980")  # Heat is the user's own
        match_items("animated musical for kids", alpha=1.0, context=context)
        shown = aggregate_feed(3, context=context)
    assert shown.splitlines()[1] == "1. Aladdin (1992), 90 min, Animation/Children/Musical"
    assert feed.shown[0] == "9" and "1" not in feed.shown and len(feed.shown) == 3
    assert all(catalog.by_id[i].year >= 1980 for i in feed.shown)


def test_the_attenuator_pushes_down_what_the_user_does_not_want(catalog: Catalog) -> None:
    plain = Feed(catalog)
    with ToolContext([plain]) as context:
        match_items("scary film", alpha=1.0, context=context)
        aggregate_feed(9, context=context)
    damped = Feed(catalog)
    with ToolContext([damped]) as context:
        _call("match_items", {"preference": "scary film", "alpha": 1.0}, context)
        _call("attenuate_items", {"preference": "horror", "beta": 2.0}, context)
        _call("aggregate_feed", {"k": 9}, context)
    assert plain.shown.index("6") < damped.shown.index("6")
    assert plain.shown.index("5") < damped.shown.index("5")


def test_without_preferences_the_feed_is_the_collaborative_ranking(catalog: Catalog) -> None:
    feed = Feed(catalog, history=["3"])
    with ToolContext([feed]) as context:
        aggregate_feed(2, context=context)
    assert feed.shown[0] == "9"  # what the animation fans liked


def test_mistakes_come_back_as_observations(catalog: Catalog) -> None:
    feed = Feed(catalog)
    with ToolContext([feed]) as context:
        bad = _call(
            "filter_items",
            {"constraints": [{"attribute": "year", "operator": ">", "value": "soon"}]},
            context,
        )
        assert bad.startswith("Error") and "constraint 1" in bad and "year takes a number" in bad
        none = _call(
            "filter_items",
            {"constraints": [{"attribute": "genre", "value": "Western"}]},
            context,
        )
        assert none == "No film meets genre == Western."
        assert "empty" in _call("aggregate_feed", {"k": 5}, context)
        assert "between 1 and 50" in _call("aggregate_feed", {"k": 0}, context)
        assert "alpha must be" in _call("match_items", {"preference": "x", "alpha": 2}, context)
    without = _call("aggregate_feed", {"k": 5}, ToolContext())
    assert "no Feed is available" in without
