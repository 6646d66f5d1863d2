"""A ten-film catalog with two tastes among its users, for the catalog and RecBot tests."""

from __future__ import annotations

from tools.catalog import Item, Rating

# fmt: off
FILMS = [
    Item("1", "Heat", 1995, 170, ("Crime", "Thriller", "Action"), ("English",), ("United States",),
         ("Michael Mann",), ("Al Pacino", "Robert De Niro")),
    Item("2", "Casino", 1995, 178, ("Crime", "Drama"), ("English",), ("United States",),
         ("Martin Scorsese",), ("Robert De Niro", "Sharon Stone")),
    Item("3", "Toy Story", 1995, 80, ("Animation", "Children", "Comedy"), ("English",),
         ("United States",), ("John Lasseter",), ("Tom Hanks",)),
    Item("4", "Star Wars", 1977, 121, ("Sci-Fi", "Adventure", "Action"), ("English",),
         ("United States",), ("George Lucas",), ("Mark Hamill", "Harrison Ford")),
    Item("5", "Alien", 1979, 117, ("Sci-Fi", "Horror"), ("English",), ("United Kingdom",),
         ("Ridley Scott",), ("Sigourney Weaver",)),
    Item("6", "The Shining", 1980, 146, ("Horror", "Drama"), ("English",), ("United Kingdom",),
         ("Stanley Kubrick",), ("Jack Nicholson",)),
    Item("7", "Amelie", 2001, 122, ("Comedy", "Romance"), ("French",), ("France",),
         ("Jean-Pierre Jeunet",), ("Audrey Tautou",)),
    Item("8", "Ran", 1985, 162, ("Drama", "War"), ("Japanese",), ("Japan",),
         ("Akira Kurosawa",), ("Tatsuya Nakadai",)),
    Item("9", "Aladdin", 1992, 90, ("Animation", "Children", "Musical"), ("English",),
         ("United States",), ("Ron Clements",), ("Robin Williams",)),
    Item("10", "Unknown Short", None, None, ("Drama",)),
]
# fmt: on
# Two tastes: users 1-4 like crime films, users 5-8 like animation; everyone saw Star Wars.
RATINGS = [
    *(Rating(str(u), i, 5.0, u) for u in range(1, 5) for i in ("1", "2", "4")),
    *(Rating(str(u), i, 5.0, u) for u in range(5, 9) for i in ("3", "9", "4")),
    Rating("1", "6", 2.0, 9),
]
