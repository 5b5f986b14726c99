"""Retrieval: the collaborative space (ALS), the cold-start map, and the SQL the client runs.

Ranking itself lives in SQL functions in schema ``rec`` (migration 0002); see docs/retrieval.md.
"""
