"""The recipes that ship with keras-lvae: `lvae recipes` lists them, `lvae train NAME` runs one.

Each is a Python file defining `CONFIG = keras_lvae.config.Config(...)`, every choice
commented; copy one to change it. Installed, this folder is the `keras_lvae.recipes` package.
"""
