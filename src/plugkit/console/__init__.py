"""The console: a page for people at /console beside the API for models (see `mount_console`)."""

from plugkit.console.mount import Console, console_enabled, mount_console

__all__ = ["Console", "console_enabled", "mount_console"]
