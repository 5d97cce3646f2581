"""The release number, in a module of its own so the server reports it without importing the facade;
pyproject.toml reads it from here too."""

__version__ = "0.1.0"
