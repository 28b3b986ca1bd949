"""Embedding providers; each implements plugkit.plugins.retrieval.embeddings.base.Embedder."""
