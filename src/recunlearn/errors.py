"""Errors with messages that name what is wrong; all are ValueErrors so callers can catch broadly."""


class RecUnlearnError(ValueError):
    """Base class of every error recunlearn raises on bad input."""


class DataError(RecUnlearnError):
    """A data file or table is missing, malformed or inconsistent."""


class UnknownIdError(RecUnlearnError, KeyError):
    """A user, item or sample id that the data or model has never seen."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class EmptyRequestError(RecUnlearnError):
    """A deletion request that names nothing."""


class ConfigError(RecUnlearnError):
    """A configuration with an unknown key or an invalid value."""


class NotFittedError(RecUnlearnError):
    """A method used before ``fit``."""


def validation_problems(exc) -> str:
    """A pydantic ``ValidationError`` as one line naming each bad field: ``path: message; ...``."""
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or '<config>'}: {e['msg']}" for e in exc.errors()
    )
