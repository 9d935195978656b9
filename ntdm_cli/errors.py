"""Errors a user can cause. The CLI prints them as one red line and exits with `exit_code`."""


class NtdmError(Exception):
    """A failure caused by the input (bad file, impossible option): exit code 1."""

    exit_code = 1


class NtdmUsageError(NtdmError):
    """A wrong option or argument value: exit code 2."""

    exit_code = 2


class ArtifactError(NtdmError):
    """An HDF5 artifact is missing, unreadable, truncated, or of the wrong kind or version."""


class ConfigError(NtdmUsageError):
    """A config file or a --set override is malformed or names an unknown key."""


class MissingInputError(NtdmUsageError):
    """An input file or folder that does not exist: a usage error (exit 2) in every command."""


class MissingArtifactError(ArtifactError, MissingInputError):
    """An artifact path that does not exist (exit 2, like every missing input)."""

    exit_code = 2


#: longest text (path, value) echoed into an error line
SHORT_LIMIT = 160


def short(text: object, limit: int = SHORT_LIMIT) -> str:
    """``text`` as a string of at most ``limit`` characters: longer ones keep their start and end
    around ``…`` (so a hostile 100 MB path or value never floods an error line)."""
    s = str(text)
    if len(s) <= limit:
        return s
    keep = max(limit - 1, 2)
    return f"{s[: keep - keep // 3]}…{s[-(keep // 3):]}"


class ImageError(NtdmError):
    """An image file that exists but cannot be read as an 8-bit RGB picture (corrupt, unsupported
    pixel format, decompression bomb). Batches skip these and count them."""
