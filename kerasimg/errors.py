"""The one exception type that CLIs turn into a clean message and exit code 2."""


class UserError(Exception):
    """Bad input or an unmet precondition that the user can fix.

    The message says what happened, what was expected and how to fix it, and
    names the value received. CLIs print it without a traceback.
    """


class WeightsUnavailableError(UserError):
    """Pretrained weights were asked for but could not be found or fetched."""


class ArgumentError(UserError):
    """A bad value of one named argument.

    The library's message names the keyword argument (``epochs must be at least 1.
    Received: epochs=0``); a CLI prints ``for_cli()``, which names the flag instead.
    """

    def __init__(self, argument: str, problem: str, received: object):
        self.argument, self.problem, self.received = argument, problem, received
        super().__init__(f"{argument} {problem}. Received: {argument}={received!r}")

    def for_cli(self) -> str:
        flag = "--" + self.argument.replace("_", "-")
        return f"{flag} {self.problem}. Received: {flag} {self.received}"
