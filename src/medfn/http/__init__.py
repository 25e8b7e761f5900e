"""The HTTP edge: FastAPI routes, thin, over the inference plane. Pydantic lives only here."""

from medfn.http.app import create_app

__all__ = ["create_app"]
