"""recplatform: feature-store-backed recommendations with LLM embeddings in Postgres/pgvector."""

__version__ = "0.1.0"
