"""Simulated users' goals: a hidden target film and the structured cues that lead to it.

For a held-out user a target they rated above 3 is hidden (their other ratings before it stay
their history). The goal holds hard constraints the target meets (genre, decade, runtime,
language, director) and a soft phrase ("like <the film of their history closest to it>", or its
genre's mood), revealed over the turns of a scenario:

- ``single``: everything in the first command, one round;
- ``multi``: one or two cues per turn, up to ``max_turns``;
- ``drift``: like multi, but the first year cue is a decoy the target does not meet, replaced
  mid-episode ("actually, rather …"): the user's interest drifts.

Because the cues are structured, every parse can be scored against :meth:`Goal.truth`, and the
feed's constraint satisfaction checked against the same constraints. An LLM only voices them
(``simulator.py``).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from tools.catalog.films import Item, Rating, by_user, positives
from tools.catalog.index import Catalog, HardConstraint

Scenario = Literal["single", "multi", "drift"]
SCENARIOS: tuple[Scenario, ...] = ("single", "multi", "drift")


@dataclass(frozen=True)
class Cue:
    """One thing the user says they want (or no longer want).

    Attributes:
        kind: ``hard`` (a constraint), ``soft`` (a phrase) or ``replace`` (the hard constraint
            ``replaces`` gives way to ``constraint``).
        constraint: The hard constraint, for ``hard`` and ``replace``.
        text: The soft phrase, for ``soft``.
        replaces: The constraint withdrawn, for ``replace``.
    """

    kind: Literal["hard", "soft", "replace"]
    constraint: HardConstraint | None = None
    text: str = ""
    replaces: HardConstraint | None = None

    def describe(self) -> str:
        """The cue as plain words for the simulator's prompt."""
        if self.kind == "soft":
            return f"you would like: {self.text}"
        assert self.constraint is not None
        said = _words(self.constraint)
        if self.kind == "replace":
            assert self.replaces is not None
            return f"you changed your mind: no longer {_words(self.replaces)}, but {said}"
        return f"you want {said}"

    def said_in(self, text: str) -> bool:
        """Whether ``text`` carries this cue's checkable value (a soft cue always passes): the
        year or minutes as a number, the genre by its stem or a common name, the language or
        country, the surname of a person. A command missing it cannot be parsed right."""
        if self.kind == "soft" or self.constraint is None:
            return True
        return _mentions(text, self.constraint)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "constraint": self.constraint.model_dump() if self.constraint else None,
            "text": self.text,
            "replaces": self.replaces.model_dump() if self.replaces else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cue:
        def hc(value: dict[str, Any] | None) -> HardConstraint | None:
            return HardConstraint.model_validate(value) if value else None

        return cls(
            data["kind"], hc(data.get("constraint")), data.get("text", ""), hc(data.get("replaces"))
        )


_GENRE_WORDS = {
    "Sci-Fi": ("sci-fi", "science fiction", "scifi", "sci fi"),
    "Film-Noir": ("noir",),
    "Children": ("child", "kid", "family"),
    "Musical": ("musical",),
    "War": ("war",),
}


def says_more(text: str, cues: Sequence[Cue], genres: Sequence[str]) -> bool:
    """Whether ``text`` names a genre or a year or number of minutes that none of ``cues``
    holds: a simulated user who adds wishes would make the parse's ground truth wrong."""
    lowered = text.lower()
    held = [c.constraint for c in cues if c.constraint is not None]
    held += [c.replaces for c in cues if c.replaces is not None]
    numbers = {f"{float(c.value):g}" for c in held if c.attribute in ("year", "runtime")}
    soft = " ".join(c.text.lower() for c in cues if c.kind == "soft")
    for number in re.findall(r"\d+", text):  # "1990", or "90" of "the 90s"
        if number not in soft and not any(n.endswith(number) for n in numbers):
            return True
    said = {str(c.value) for c in held if c.attribute == "genre"}
    for genre in genres:
        probe = HardConstraint(attribute="genre", value=genre)
        if genre not in said and _mentions(lowered, probe) and not _mentions(soft, probe):
            return True
    return False


def _mentions(text: str, c: HardConstraint) -> bool:
    lowered = text.lower()
    if c.attribute in ("year", "runtime"):
        number = f"{float(c.value):g}"
        return number in lowered or (c.attribute == "year" and f"{number[2:]}s" in lowered)
    value = str(c.value)
    if c.attribute == "genre":
        words = _GENRE_WORDS.get(value, (value.lower()[:5],))
        return any(w in lowered for w in words)
    if c.attribute in ("director", "cast"):
        return value.split()[-1].lower() in lowered
    return value.lower() in lowered


def _words(c: HardConstraint) -> str:
    if c.attribute in ("year", "runtime"):
        value = f"{float(c.value):g}"
        unit = "" if c.attribute == "year" else " minutes"
        relation = {
            "year": {
                ">=": "from {} or later",
                "<": "from before {}",
                ">": "after {}",
                "<=": "up to {}",
                "==": "from {}",
                "!=": "not from {}",
            },
            "runtime": {
                "<": "shorter than {}",
                "<=": "of at most {}",
                ">": "longer than {}",
                ">=": "of at least {}",
                "==": "of {}",
                "!=": "not of {}",
            },
        }[c.attribute][c.operator]
        return "films " + relation.format(value + unit)
    noun = {
        "genre": "genre",
        "language": "language",
        "country": "country",
        "director": "director",
        "cast": "actor",
    }[c.attribute]
    return f"{noun} {c.value}" if c.operator == "==" else f"no {noun} {c.value}"


@dataclass
class Goal:
    """One simulated user's episode plan.

    Attributes:
        user: The user id.
        target: The hidden target's item id.
        history: Item ids the user rated before the target (the feed never shows them).
        scenario: ``single``, ``multi`` or ``drift``.
        turns: The cues voiced at each turn (``turns[0]`` is the opening command).
    """

    user: str
    target: str
    history: list[str]
    scenario: Scenario
    turns: list[list[Cue]] = field(default_factory=list)

    def truth(self, turn: int) -> tuple[list[HardConstraint], list[str]]:
        """The hard constraints in force and the soft phrases said after turn ``turn`` (0-based):
        what a perfect parser holds then."""
        hard: list[HardConstraint] = []
        soft: list[str] = []
        for cues in self.turns[: turn + 1]:
            for cue in cues:
                if cue.kind == "soft":
                    soft.append(cue.text)
                elif cue.kind == "hard":
                    assert cue.constraint is not None
                    hard.append(cue.constraint)
                else:
                    hard = [c for c in hard if c != cue.replaces]
                    assert cue.constraint is not None
                    hard.append(cue.constraint)
        return hard, soft

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["turns"] = [[cue.to_dict() for cue in cues] for cues in self.turns]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Goal:
        return cls(
            user=data["user"],
            target=data["target"],
            history=list(data["history"]),
            scenario=data["scenario"],
            turns=[[Cue.from_dict(c) for c in cues] for cues in data["turns"]],
        )


_MOODS = {
    "Action": "fast-paced and full of action",
    "Adventure": "an adventure",
    "Animation": "animated",
    "Children": "good for children",
    "Comedy": "funny",
    "Crime": "about crime",
    "Documentary": "a documentary",
    "Drama": "a serious drama",
    "Fantasy": "fantastical",
    "Film-Noir": "dark, in the film-noir style",
    "Horror": "scary",
    "Musical": "with music and songs",
    "Mystery": "a mystery to unravel",
    "Romance": "romantic",
    "Sci-Fi": "science fiction",
    "Thriller": "tense and suspenseful",
    "War": "about war",
    "Western": "a western",
}


def _constraints(
    target: Item, rng: random.Random, genre_counts: dict[str, int]
) -> list[HardConstraint]:
    """Hard constraints the target meets, most telling first."""
    found: list[HardConstraint] = []
    genres = [g for g in target.genres if g in genre_counts]
    if genres:
        rarest = min(genres, key=lambda g: (genre_counts[g], g))
        found.append(HardConstraint(attribute="genre", value=rarest))
    if target.year:
        decade = target.year // 10 * 10
        found.append(HardConstraint(attribute="year", operator=">=", value=decade))
    if target.runtime:
        bound = (target.runtime // 30 + 1) * 30
        found.append(HardConstraint(attribute="runtime", operator="<", value=bound))
    if target.languages and target.languages[0] != "English":
        found.append(HardConstraint(attribute="language", value=target.languages[0]))
    if target.directors and rng.random() < 0.3:
        found.append(HardConstraint(attribute="director", value=target.directors[0]))
    return found


def _soft(target: Item, history: Sequence[str], catalog: Catalog) -> list[str]:
    """One soft phrase: "something like" the film of the history closest to the target, or,
    without a history, the mood of the target's first genre."""
    if history:
        here = catalog.vectors[catalog.position[target.id]]
        nearest = max(history, key=lambda i: float(catalog.vectors[catalog.position[i]] @ here))
        return [f"something like {catalog.by_id[nearest].title}"]
    return [_MOODS[g] for g in target.genres if g in _MOODS][:1]


def make_goals(
    catalog: Catalog,
    ratings: Sequence[Rating],
    users: Sequence[str],
    scenario: Scenario,
    *,
    seed: int = 0,
    max_turns: int = 4,
    min_history: int = 5,
) -> list[Goal]:
    """One goal per user that has a usable target: their latest positive rating whose film has
    at least two checkable constraints, after at least ``min_history`` earlier ratings.

    Args:
        catalog: The catalog (its vectors pick the "like …" film).
        ratings: Every rating of these users (the goal's history is the part before the
            target, so a held-out user's later ratings never leak into it).
        users: The users to plan for, in order.
        scenario: How cues are spread over the turns.
        seed: Seed of every random choice.
        max_turns: The turns a multi-round episode may use.
        min_history: Ratings a user needs before the target.
    """
    rng = random.Random(seed)
    genre_counts: dict[str, int] = {}
    for item in catalog.items:
        for genre in item.genres:
            genre_counts[genre] = genre_counts.get(genre, 0) + 1
    grouped = by_user(list(ratings))
    goals = []
    for user in users:
        history = grouped.get(user, [])
        liked = [r for r in positives(history) if r.item in catalog.by_id]
        for candidate in reversed(liked):
            before = [r.item for r in history if r.timestamp < candidate.timestamp]
            before = [i for i in before if i in catalog.by_id and i != candidate.item]
            target = catalog.by_id[candidate.item]
            hard = _constraints(target, rng, genre_counts)
            if len(before) < min_history or len(hard) < 2:
                continue
            soft = _soft(target, before, catalog)
            goals.append(
                Goal(
                    user,
                    target.id,
                    before,
                    scenario,
                    _spread(scenario, hard, soft, target, rng, max_turns),
                )
            )
            break
    return goals


def _spread(
    scenario: Scenario,
    hard: list[HardConstraint],
    soft: list[str],
    target: Item,
    rng: random.Random,
    max_turns: int,
) -> list[list[Cue]]:
    cues = [Cue("hard", constraint=c) for c in hard] + [Cue("soft", text=s) for s in soft]
    if scenario == "single":
        return [cues]
    # the opening command: the first hard cue and the first soft one (drift: the year, the cue
    # that will change), then one cue a turn
    year = next((c for c in hard if c.attribute == "year"), None)
    drifts = scenario == "drift" and year is not None and max_turns >= 2
    second = [Cue("hard", constraint=year)] if drifts else [c for c in cues if c.kind == "soft"]
    opening = [cues[0], *(c for c in second if c != cues[0])][:2]
    rest = [c for c in cues if c not in opening]
    turns = [opening, *([c] for c in rest)][: max(1, max_turns)]
    if drifts:
        assert year is not None
        # the year cue is first a decoy the target misses; the middle turn replaces it
        decoy = _decoy(target)
        turns = [[_swap(cue, year, decoy) for cue in cues_] for cues_ in turns]
        change = Cue("replace", constraint=year, replaces=decoy)
        at = max(1, len(turns) // 2)
        if at < len(turns):
            turns[at].append(change)
        else:
            turns.append([change])
    return turns


def _decoy(target: Item) -> HardConstraint:
    """A year cue the target does not meet: the decade after its own, or before it."""
    assert target.year is not None
    decade = target.year // 10 * 10
    if decade + 10 <= 2000:
        return HardConstraint(attribute="year", operator=">=", value=decade + 10)
    return HardConstraint(attribute="year", operator="<", value=decade)


def _swap(cue: Cue, old: HardConstraint, new: HardConstraint) -> Cue:
    if cue.kind == "hard" and cue.constraint == old:
        return Cue("hard", constraint=new)
    return cue
