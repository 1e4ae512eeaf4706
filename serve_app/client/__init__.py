"""Fathom's Python client (``FathomClient``) and the ``fathom`` command line built on it (``cli``)."""

from serve_app.client.api import FathomClient, FathomError

__all__ = ["FathomClient", "FathomError"]
