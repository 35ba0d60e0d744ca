"""Exceptions raised by imcodec.

Library code raises these with a message that quotes the bad value and says what was expected;
only :mod:`imcodec.cli` turns them into exit codes and one-line messages.
"""


class ImcodecError(Exception):
    """Base class of every error imcodec raises on purpose. Exit code 1 (bad data)."""

    exit_code = 1


class InputError(ImcodecError):
    """Bad input data: malformed PLY, empty cloud, non-finite coordinates, unreadable sequence."""


class BitstreamError(ImcodecError):
    """A corrupt, truncated or unsupported .imc stream."""


class ToolError(ImcodecError):
    """An external tool (ffmpeg) is missing or failed; the message carries its stderr."""


class UsageError(ImcodecError):
    """Bad usage: wrong or conflicting flags, invalid option values. Exit code 2."""

    exit_code = 2
