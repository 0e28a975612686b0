"""Channel name patterns: moved to server/pattern.py (the application layer's
channel sources match them too, and the core may not import the server API)."""

from ..pattern import MAX_NESTING, MAX_PATTERN_LENGTH, Pattern, compile_pattern

__all__ = ["MAX_NESTING", "MAX_PATTERN_LENGTH", "Pattern", "compile_pattern"]
