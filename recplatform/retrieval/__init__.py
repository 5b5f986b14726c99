"""Retrieval: the collaborative space (ALS), the cold-start map, and the SQL the client runs.

Ranking itself lives in SQL functions in schema ``rec`` (one file each in recplatform/sql); see docs/retrieval.md.
"""
