"""A model's arguments, declared once: in its constructor."""

import inspect

import keras


def constructor_arguments(cls):
    """The names of `cls`'s constructor arguments along its class chain (without
    `**kwargs` and the ones a subclass removes in `REMOVED_ARGUMENTS`): what
    `get_config` returns, and what recipes' model sections must match (tested)."""
    names = []
    for klass in cls.__mro__:
        if klass is keras.Model:
            break
        if "__init__" in vars(klass):
            for name, parameter in inspect.signature(klass.__init__).parameters.items():
                if (name != "self" and parameter.kind is parameter.POSITIONAL_OR_KEYWORD
                        and name not in names):
                    names.append(name)
    return [name for name in names if name not in cls.REMOVED_ARGUMENTS]
