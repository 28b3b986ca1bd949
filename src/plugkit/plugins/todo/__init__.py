"""The TODO plugin: the original example's API, persistent, with stable ids."""
