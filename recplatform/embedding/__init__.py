"""Embedding: load a text encoder once per process and turn texts into L2-normalised vectors."""

from recplatform.embedding.encoder import Encoder, clear_encoder_cache, load_encoder

__all__ = ["Encoder", "clear_encoder_cache", "load_encoder"]
