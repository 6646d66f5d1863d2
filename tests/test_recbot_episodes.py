"""RecBot episodes on scripted engines: the speak → recommend → judge graph, the parser's
retries and memory, the planner's tool chain, the baselines and the scores (real catalog)."""

from __future__ import annotations

import json

import pytest
from catalog_world import FILMS, RATINGS
from recbot_world import PlainSimulator, ScriptedRecBot

from agents.schemes.recbot.episode import Baseline, RecBot, RecSettings, run_episodes, transcript
from agents.schemes.recbot.users import Cue, Goal, make_goals
from tools.catalog import Catalog, CatalogData, HardConstraint, Rating


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    extra = [Rating("1", i, 4.0, 100 + n) for n, i in enumerate(["3", "5", "7", "8", "9", "2"])]
    extra += [Rating("9", i, 5.0, 200 + n) for n, i in enumerate(["4", "5", "6", "8", "1", "7"])]
    data = CatalogData("films", list(FILMS), [*RATINGS, *extra])
    return Catalog.build(data, tmp_path_factory.mktemp("catalog"), factors=4)


def test_a_perfect_parser_and_planner_reach_the_target(catalog: Catalog) -> None:
    goals = make_goals(catalog, catalog.data.ratings, ["1", "9"], "multi", min_history=3)
    assert [g.target for g in goals] == ["2", "7"]
    engine, simulator = ScriptedRecBot(), PlainSimulator()
    episodes = run_episodes(goals, RecBot(engine), catalog=catalog, simulator=simulator)
    for episode in episodes:
        summary = episode.summary()
        assert episode.status == "satisfied", transcript(episode, catalog)
        assert summary["valid_parses"] == summary["parses"] == summary["rounds"]
        assert all(f1 == 1.0 for f1 in summary["f1"])
        assert summary["recall"] == 1.0 and summary["csr"] == 1.0
        assert summary["planner_incomplete"] == 0 and summary["voiced_by_cues"] == 0
        turn = episode.turns[-1]
        # the stored conversations are the student's training data
        assert [m["role"] for m in turn.parser_messages] == ["system", "user", "assistant"]
        names = [c["function"]["name"] for c in turn.planner_messages[2]["tool_calls"]]
        assert names[0] == "filter_items" and names[-1] == "aggregate_feed"
        assert not set(turn.feed) & set(episode.goal.history)


def _goal(target: str, scenario: str, turns: list[list[Cue]]) -> Goal:
    return Goal(user="x", target=target, history=["1"], scenario=scenario, turns=turns)


def _hard(attribute: str, operator: str, value: object) -> Cue:
    return Cue(
        "hard",
        constraint=HardConstraint.model_validate(
            {"attribute": attribute, "operator": operator, "value": value}
        ),
    )


def test_the_parser_keeps_its_memory_across_turns(catalog: Catalog) -> None:
    # a crime fan (history: Heat) first asks for the 1990s on, then for romance
    goal = _goal("7", "multi", [[_hard("year", ">=", 1990)], [_hard("genre", "==", "Romance")]])
    engine = ScriptedRecBot()
    (episode,) = run_episodes(
        [goal],
        RecBot(engine),
        catalog=catalog,
        simulator=PlainSimulator(),
        settings=RecSettings(k=1),
    )
    assert [t.feed for t in episode.turns] == [["2"], ["7"]], transcript(episode, catalog)
    assert episode.status == "satisfied" and [t.score["recall"] for t in episode.turns] == [0, 1]
    second = [r for r in engine.seen if "Parser" in str(r.messages[0]["content"])][-1]
    prompt = str(second.messages[1]["content"])
    assert "1. Casino (1995)" in prompt  # the feed it was shown
    assert '"attribute":"year"' in prompt  # the memory of turn 1
    assert episode.preferences.filters() == [c.constraint for t in goal.turns for c in t]


def test_a_drifting_user_is_followed_by_the_latest_cue(catalog: Catalog) -> None:
    decoy, wanted = _hard("year", ">=", 2000), _hard("year", ">=", 1990)
    change = Cue("replace", constraint=wanted.constraint, replaces=decoy.constraint)
    goal = _goal("2", "drift", [[_hard("genre", "==", "Crime"), decoy], [change]])
    (episode,) = run_episodes(
        [goal],
        RecBot(ScriptedRecBot()),
        catalog=catalog,
        simulator=PlainSimulator(),
        settings=RecSettings(k=1),
    )
    first, second = episode.turns
    assert first.feed == [] and first.score == {"recall": 0.0, "ndcg": 0.0, "csr": 0.0}
    assert "changed your mind" in second.command
    assert second.feed == ["2"] and episode.status == "satisfied"
    assert [t.parse["f1"] for t in episode.turns] == [1.0, 1.0]
    assert [str(c) for c in episode.preferences.filters()] == ["genre == Crime", "year >= 1990"]


def test_malformed_parses_are_asked_again_then_recorded(catalog: Catalog) -> None:
    goals = make_goals(catalog, catalog.data.ratings, ["1"], "single", min_history=3)
    settings = RecSettings(parse_retries=1)
    (retried,) = run_episodes(
        goals,
        RecBot(ScriptedRecBot(bad_parses=1)),
        catalog=catalog,
        simulator=PlainSimulator(),
        settings=settings,
    )
    assert retried.turns[0].parse["valid"] and retried.turns[0].parse["retries"] == 1
    (failed,) = run_episodes(
        goals,
        RecBot(ScriptedRecBot(bad_parses=2)),
        catalog=catalog,
        simulator=PlainSimulator(),
        settings=settings,
    )
    parse = failed.turns[0].parse
    assert parse["valid"] is False and "no JSON object" in parse["error"]
    assert parse["f1"] == 0.0 and failed.preferences.is_empty()
    assert failed.turns[0].parser_messages == []  # nothing to learn from


def test_a_planner_that_never_aggregates_is_counted_and_ranked_anyway(catalog: Catalog) -> None:
    goals = make_goals(catalog, catalog.data.ratings, ["1"], "single", min_history=3)
    (episode,) = run_episodes(
        goals,
        RecBot(ScriptedRecBot(skip_aggregate=True)),
        catalog=catalog,
        simulator=PlainSimulator(),
    )
    assert episode.summary()["planner_incomplete"] == 1
    assert len(episode.turns[0].feed) == 10 or episode.turns[0].feed  # the tools' own ranking
    assert episode.turns[0].planner_complete is False


def test_a_simulator_speaking_as_the_app_is_asked_again_then_replaced_by_its_cues(
    catalog: Catalog,
) -> None:
    goals = make_goals(catalog, catalog.data.ratings, ["1"], "single", min_history=3)
    (once,) = run_episodes(
        goals, Baseline("popularity"), catalog=catalog, simulator=PlainSimulator(as_app=1)
    )
    assert once.turns[0].voiced == "model" and once.turns[0].command.startswith("I want")
    (always,) = run_episodes(
        goals, Baseline("popularity"), catalog=catalog, simulator=PlainSimulator(as_app=3)
    )
    assert always.turns[0].voiced == "cues" and always.summary()["voiced_by_cues"] == 1
    assert always.turns[0].command.startswith("I want ")


@pytest.mark.parametrize("kind", ["popularity", "collaborative", "retrieval"])
def test_baselines_run_the_same_episodes(catalog: Catalog, kind: str) -> None:
    goals = make_goals(catalog, catalog.data.ratings, ["1", "9"], "multi", min_history=3)
    episodes = run_episodes(goals, Baseline(kind), catalog=catalog, simulator=PlainSimulator())
    assert [e.goal for e in episodes] == goals
    for episode in episodes:
        assert episode.status in {"satisfied", "exhausted"}
        assert all(len(t.feed) <= 10 and t.score for t in episode.turns)
        assert all(not t.parse for t in episode.turns)  # no parser here
    if kind != "retrieval":  # commands are ignored: the feed never changes
        feeds = {tuple(t.feed) for e in episodes[:1] for t in e.turns}
        assert len(feeds) == 1


def test_the_episode_stops_satisfied_or_after_its_last_turn(catalog: Catalog) -> None:
    turns = [[_hard("genre", "==", "War")], [_hard("year", ">=", 1980)], [_hard("runtime", ">", 1)]]
    never = _goal("8", "multi", turns)  # Ran: the popularity feed never shows it at K = 1
    (episode,) = run_episodes(
        [never],
        Baseline("popularity"),
        catalog=catalog,
        simulator=PlainSimulator(),
        settings=RecSettings(k=1),
    )
    assert episode.status == "exhausted" and episode.summary()["rounds"] == 3
    # a RecBot that filters by the first cue shows Ran at once and stops there
    (found,) = run_episodes(
        [never],
        RecBot(ScriptedRecBot()),
        catalog=catalog,
        simulator=PlainSimulator(),
        settings=RecSettings(k=1),
    )
    assert found.status == "satisfied" and found.summary()["rounds"] == 1


def test_planner_replies_are_read_leniently() -> None:
    from agents.schemes.recbot.episode import parse_calls

    text = (
        'Thought: filter, then rank.\n<tool_call>{"name": "filter_items", "arguments": '
        '{"constraints": [{"attribute": "year", "operator": ">=", "value": 1990}]}}</tool_call>\n'
        '{"name": "match_items", "arguments": "{\\"preference\\": \\"funny\\"}"}\n'
        '<tool_call>{"name": "aggregate_feed", "arguments": {"k": 10}}'  # no closing tag
        '\n<tool_call>{"name": broken}</tool_call> {"not": "a call"}'
    )
    calls = parse_calls(text)
    names = [c["function"]["name"] for c in calls]
    assert names == ["filter_items", "match_items", "aggregate_feed"]
    assert json.loads(calls[1]["function"]["arguments"]) == {"preference": "funny"}
    assert [c["id"] for c in calls] == ["call_0", "call_1", "call_2"]
    assert parse_calls("I would rank the films by year.") == []


def test_a_planner_reply_stops_at_its_first_aggregation_and_drops_repeats() -> None:
    from agents.schemes.recbot.episode import parse_calls, plan_of

    line = '{"name": "filter_items", "arguments": {"constraints": []}}'
    text = "\n".join([line, line, '{"name": "aggregate_feed", "arguments": {"k": 10}}', line])
    assert [c["function"]["name"] for c in plan_of(parse_calls(text))] == [
        "filter_items",
        "aggregate_feed",
    ]


def _call(name: str, **arguments: object) -> dict:
    return {"type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


def test_a_plan_follows_its_preferences_only_when_it_applies_each_exactly() -> None:
    from agents.schemes.recbot.episode import plan_follows

    prefs = {
        "positive": {
            "hard": [{"attribute": "year", "operator": ">=", "value": 1990}],
            "soft": ["funny"],
        },
        "negative": {
            "hard": [{"attribute": "genre", "operator": "==", "value": "Horror"}],
            "soft": [],
        },
    }
    wanted = [
        {"attribute": "genre", "operator": "!=", "value": "horror"},
        {"attribute": "year", "operator": ">=", "value": 1990.0},
    ]
    calls = [
        _call("filter_items", constraints=wanted),
        _call("match_items", preference="Funny"),
        _call("aggregate_feed", k=10),
    ]
    ok = [
        {"role": "assistant", "content": "", "tool_calls": calls},
        *({"role": "tool", "content": "12 films meet ..."} for _ in calls),
    ]
    assert plan_follows(prefs, ok, 10)
    assert not plan_follows(prefs, ok, 5)  # the wrong K
    unnegated = [
        _call("filter_items", constraints=[{**wanted[0], "operator": "=="}, wanted[1]]),
        *calls[1:],
    ]
    assert not plan_follows(
        prefs, [{"role": "assistant", "content": "", "tool_calls": unnegated}], 10
    )
    assert not plan_follows(
        prefs, [{"role": "assistant", "content": "", "tool_calls": calls[::2]}], 10
    )
    failed = [*ok[:2], {"role": "tool", "content": "Error: match_items: ..."}]
    assert not plan_follows(prefs, failed, 10)


def test_a_refusal_is_not_a_users_command() -> None:
    from agents.schemes.recbot.episode import _usable

    assert not _usable("I'm sorry, but I can't assist with that.")
    assert not _usable("Here are some films you might like")
    assert _usable("Something funny from the 1990s, please.")
