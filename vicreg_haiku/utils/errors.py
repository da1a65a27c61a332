"""The error every layer can raise for a config a user must change.

Each other error class lives where it is raised; user_errors.py gathers them
all for the launcher's one-line messages.
"""


class ConfigError(ValueError):
  """A config value that cannot work (one-line message naming the key)."""
