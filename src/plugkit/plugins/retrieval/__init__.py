"""The retrieval plugin: semantic and keyword search over documents (API compatible with the original)."""
