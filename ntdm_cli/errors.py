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
