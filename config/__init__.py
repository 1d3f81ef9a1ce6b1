"""Typed settings for every process of returnsync; the only place that reads the environment."""

from config.settings import Settings, get_settings, require_safe, unsafe_settings

__all__ = ["Settings", "get_settings", "require_safe", "unsafe_settings"]
