"""Vector store providers; each implements plugkit.plugins.retrieval.stores.base.VectorStore."""
