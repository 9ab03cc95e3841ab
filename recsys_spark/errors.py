"""Errors a user can fix (exit code 2) as opposed to failures of the program or platform (exit code 1)."""


class UserError(Exception):
    """Bad input the user can fix: a config key, a path, an expression. The message says what and where."""


class ConfigError(UserError):
    """The YAML config (or a schema file it names) is invalid; the message lists every problem found."""
