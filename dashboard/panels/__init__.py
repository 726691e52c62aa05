"""Page sections reused by pages or too long for one: each renders from plain results.

May import ``session``, ``resources``, ``services``, ``figures``, ``analytics`` and ``models``.
"""
