"""The one exception type that CLIs turn into a clean message and exit code 2."""


class UserError(Exception):
    """Bad input or an unmet precondition that the user can fix.

    The message says what happened, what was expected and how to fix it, and
    names the value received. CLIs print it without a traceback.
    """


class WeightsUnavailableError(UserError):
    """Pretrained weights were asked for but could not be found or fetched."""
