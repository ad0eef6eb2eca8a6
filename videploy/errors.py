"""The one exception type for user errors.

Everything a user can cause (a bad path, a wrong checkpoint, a corrupt video, a mismatched
bundle) raises :class:`VideployError` with a message that names the object and says how to
fix it. The CLI prints these without a traceback; anything else is a bug.
"""

from __future__ import annotations


class VideployError(Exception):
    """A user-facing error: the message says what is wrong and how to fix it."""
