"""The package version, in a module of its own so that config.json can record it without importing aligniql."""

__version__ = "0.2.0"
