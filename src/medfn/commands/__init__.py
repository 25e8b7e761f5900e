"""The CLI's commands, one module each (see medfn.cli)."""

__all__: list[str] = []  # each command is a module, imported by name when it is asked for
