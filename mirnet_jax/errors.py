"""The one base class of the errors a user can fix: commands print them as one line."""


class UserError(ValueError):
  """A mistake or a state the user must fix (a bad path, flag, config, input file, a
  workdir of another model, a run that went non-finite): every command prints it as
  `error: <message>` and exits 1, never with a traceback (cli.run)."""


class UsageError(UserError):
  """A command line that cannot be run as given (a missing or invalid flag): exit 2."""
