"""The reference plugins."""
