"""The four authentication methods a plugin can run with."""
