"""RecBot's model-free parts: the parser's schema and memory rule, simulated users' goals, and
the ranking metrics and baselines (real catalog stores and MiniLM; no LLM)."""

from __future__ import annotations

import math

import pytest
from catalog_world import FILMS, RATINGS

from agents.schemes.recbot.metrics import (
    FeedScore,
    collaborative_feed,
    popularity_feed,
    retrieval_feed,
)
from agents.schemes.recbot.preferences import (
    ParseFailure,
    Preferences,
    Side,
    constraint_f1,
    parse_preferences,
    reconcile,
)
from agents.schemes.recbot.users import Cue, Goal, make_goals
from tools.catalog import Catalog, CatalogData, HardConstraint, Rating


def hc(attribute: str, operator: str, value: object) -> HardConstraint:
    return HardConstraint.model_validate(
        {"attribute": attribute, "operator": operator, "value": value}
    )


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    # the test films, with a longer history for user 1 so goals can be planned
    extra = [Rating("1", i, 4.0, 100 + n) for n, i in enumerate(["3", "5", "7", "8", "9", "2"])]
    data = CatalogData("films", list(FILMS), [*RATINGS, *extra])
    return Catalog.build(data, tmp_path_factory.mktemp("catalog"), factors=4)


# -- preferences --------------------------------------------------------------------------------


def test_a_reply_parses_bare_or_fenced_and_errors_say_where() -> None:
    reply = (
        'Here you go:\n```json\n{"positive": {"hard": [{"attribute": "year", "operator": ">=", '
        '"value": 1990}], "soft": ["tense"]}, "negative": {"soft": ["horror"]}}\n```'
    )
    prefs = parse_preferences(reply)
    assert prefs.positive.hard == [hc("year", ">=", 1990)]
    assert prefs.negative.soft == ["horror"]
    assert parse_preferences('{"positive": {}}').is_empty()
    with pytest.raises(ParseFailure, match="no JSON object"):
        parse_preferences("I think you want a comedy.")
    with pytest.raises(ParseFailure, match="invalid JSON"):
        parse_preferences('{"positive": {"soft": ["x",]}')
    with pytest.raises(ParseFailure, match="positive.hard.0: .*year takes a number"):
        parse_preferences('{"positive": {"hard": [{"attribute": "year", "value": "soon"}]}}')
    with pytest.raises(ParseFailure, match="mood"):
        parse_preferences('{"mood": "dark"}')


def test_negative_hard_constraints_filter_as_their_negation() -> None:
    prefs = Preferences(
        positive=Side(hard=[hc("genre", "==", "Crime")]),
        negative=Side(hard=[hc("genre", "==", "Horror"), hc("year", "<", 1980)]),
    )
    assert [str(c) for c in prefs.filters()] == [
        "genre == Crime",
        "genre != Horror",
        "year >= 1980",
    ]
    assert prefs.summary().startswith("+ genre == Crime | - genre == Horror; year < 1980")


def test_the_latest_cue_wins_a_contradiction() -> None:
    before = Preferences(positive=Side(hard=[hc("genre", "==", "Horror")], soft=["scary"]))
    # "no longer horror": the parse kept the old wish and added the new refusal
    parsed = Preferences(
        positive=Side(hard=[hc("genre", "==", "horror"), hc("year", ">=", 1990)], soft=["scary"]),
        negative=Side(hard=[hc("genre", "==", "Horror")], soft=["scary"]),
    )
    merged = reconcile(before, parsed)
    assert merged.positive.hard == [hc("year", ">=", 1990)]
    assert merged.negative.hard == [hc("genre", "==", "Horror")]
    assert merged.positive.soft == [] and merged.negative.soft == ["scary"]
    # a new year range replaces an old one it cannot overlap; compatible cues merge
    before = Preferences(positive=Side(hard=[hc("year", ">=", 1990)]))
    parsed = Preferences(
        positive=Side(hard=[hc("year", ">=", 1990), hc("year", "<", 1980), hc("runtime", "<", 120)])
    )
    assert reconcile(before, parsed).positive.hard == [
        hc("year", "<", 1980),
        hc("runtime", "<", 120),
    ]
    keep = Preferences(positive=Side(hard=[hc("year", ">=", 1990), hc("year", "<", 2000)]))
    assert reconcile(Preferences(), keep) == keep


def test_constraint_f1_compares_normalised_constraints() -> None:
    truth = [hc("genre", "==", "Crime"), hc("year", ">=", 1990)]
    assert constraint_f1([hc("genre", "==", "crime"), hc("year", ">=", 1990.0)], truth) == 1.0
    assert constraint_f1([hc("genre", "==", "Crime")], truth) == pytest.approx(2 / 3)
    assert constraint_f1([hc("genre", "==", "Drama")], truth) == 0.0
    assert constraint_f1([], []) == 1.0


# -- goals --------------------------------------------------------------------------------------


def test_goals_hide_a_liked_target_and_cues_it_meets(catalog: Catalog) -> None:
    (goal,) = make_goals(catalog, catalog.data.ratings, ["1"], "single", min_history=3)
    assert goal.target == "2"  # user 1's latest positive
    assert "2" not in goal.history and set(goal.history) <= set(catalog.ids)
    hard, soft = goal.truth(0)
    target = catalog.by_id[goal.target]
    assert len(hard) >= 2 and all(c.holds(target) for c in hard)
    assert any(s.startswith("something like ") for s in soft)
    assert len(goal.turns) == 1
    assert Goal.from_dict(goal.to_dict()) == goal


def test_multi_round_goals_reveal_a_cue_a_turn(catalog: Catalog) -> None:
    (goal,) = make_goals(catalog, catalog.data.ratings, ["1"], "multi", min_history=3)
    assert len(goal.turns) >= 2 and len(goal.turns[0]) == 2
    assert all(len(cues) == 1 for cues in goal.turns[1:])
    first, _ = goal.truth(0)
    last, _ = goal.truth(len(goal.turns) - 1)
    assert len(first) < len(last)


def test_a_drifting_goal_first_asks_for_a_decoy_year_then_replaces_it(catalog: Catalog) -> None:
    (goal,) = make_goals(catalog, catalog.data.ratings, ["1"], "drift", min_history=3)
    target = catalog.by_id[goal.target]
    kinds = [cue.kind for cues in goal.turns for cue in cues]
    assert "replace" in kinds
    at = next(n for n, cues in enumerate(goal.turns) if any(c.kind == "replace" for c in cues))
    before, _ = goal.truth(at - 1)
    after, _ = goal.truth(at)
    year_before = [c for c in before if c.attribute == "year"]
    assert year_before and not year_before[0].holds(target)  # the decoy
    assert all(c.holds(target) for c in after)
    change = next(c for cues in goal.turns for c in cues if c.kind == "replace")
    assert "changed your mind" in change.describe()


def test_goals_on_movielens_are_planned_for_most_users(tmp_path_factory) -> None:
    # no catalog build needed for the counting: goals need the vectors, so a small slice
    pytest.importorskip("recbole")
    from tools.catalog import load_movielens

    data = load_movielens()
    users = sorted({r.user for r in data.ratings}, key=int)[:20]
    ratings = [r for r in data.ratings if r.user in set(users)]
    items = {r.item for r in ratings}
    small = CatalogData("ml-slice", [i for i in data.items if i.id in items], ratings)
    catalog = Catalog.build(small, tmp_path_factory.mktemp("ml"), factors=8)
    goals = make_goals(catalog, ratings, users, "multi")
    assert len(goals) >= 15
    for goal in goals:
        hard, _ = goal.truth(len(goal.turns) - 1)
        assert all(c.holds(catalog.by_id[goal.target]) for c in hard)
        assert catalog.filter(hard).count(goal.target) == 1  # the SQL filter keeps it too


# -- metrics and baselines ----------------------------------------------------------------------


def test_feed_scores(catalog: Catalog) -> None:
    crime = [hc("genre", "==", "Crime")]
    score = FeedScore.of(["3", "2", "1"], "2", crime, catalog, k=3)
    assert score.recall == 1.0 and score.ndcg == pytest.approx(1 / math.log2(3))
    assert score.csr == pytest.approx(2 / 3)
    miss = FeedScore.of(["3", "2", "1"], "2", crime, catalog, k=1)
    assert miss.recall == 0.0 and miss.ndcg == 0.0 and miss.csr == 0.0


def test_baselines_rank_the_catalog_without_the_history(catalog: Catalog) -> None:
    assert popularity_feed(catalog, ["4"], 2)[0] in {"1", "2", "3", "9"}
    assert "4" not in popularity_feed(catalog, ["4"], 9)
    assert collaborative_feed(catalog, ["3"], 1) == ["9"]
    assert retrieval_feed(catalog, [], ["space adventure with starships"], 1) == ["4"]
    assert retrieval_feed(catalog, ["4"], [""], 3) == popularity_feed(catalog, ["4"], 3)


def test_a_command_carries_a_cue_only_when_it_says_its_value() -> None:
    year = Cue("hard", constraint=hc("year", ">=", 1990))
    assert year.said_in("Something from 1990 or later") and year.said_in("a 90s film")
    assert not year.said_in("something recent, please")
    genre = Cue("hard", constraint=hc("genre", "==", "Sci-Fi"))
    assert genre.said_in("some science fiction") and not genre.said_in("a comedy")
    assert Cue("hard", constraint=hc("genre", "==", "Comedy")).said_in("comedies I'd enjoy")
    director = Cue("hard", constraint=hc("director", "==", "Stanley Tong"))
    assert director.said_in("directed by Tong") and not director.said_in("by Stanley")
    assert Cue("soft", text="something like Heat").said_in("anything")


def test_a_command_that_adds_a_genre_or_a_number_says_more_than_its_cues() -> None:
    from agents.schemes.recbot.users import says_more

    cues = [Cue("hard", constraint=hc("year", ">=", 1990)), Cue("soft", text="like Apollo 13")]
    genres = ["Comedy", "Drama", "Sci-Fi"]
    assert not says_more("Something from the 90s, like Apollo 13", cues, genres)
    assert says_more("A comedy from 1990 or later", cues, genres)  # the comedy is its own
    assert says_more("Something from 1990, under 120 minutes", cues, genres)
    assert not says_more("Something from 1990 or later", cues, genres)


def test_cues_describe_themselves_for_the_simulator() -> None:
    assert Cue("hard", constraint=hc("year", ">=", 1990)).describe() == (
        "you want films from 1990 or later"
    )
    assert Cue("hard", constraint=hc("runtime", "<", 120)).describe() == (
        "you want films shorter than 120 minutes"
    )
    assert (
        Cue("hard", constraint=hc("genre", "!=", "Horror")).describe() == "you want no genre Horror"
    )
    assert (
        Cue("soft", text="something like Heat").describe() == "you would like: something like Heat"
    )
