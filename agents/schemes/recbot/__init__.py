"""RecBot: an interactive recommender agent (a parser and a planner) distilled into a student.

After *Interactive Recommendation Agent with Active User Commands* (arXiv 2509.21317).
``preferences.py`` holds the parser's JSON schema and the memory rule, ``users.py`` the
simulated users' goals, ``metrics.py`` the ranking metrics and the non-agent baselines; the
catalog and the planner's tools live in :mod:`tools.catalog`.
"""
