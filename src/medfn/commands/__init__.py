"""The CLI's commands, one module each (see medfn.cli)."""
