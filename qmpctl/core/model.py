"""The base of every qmpctl pydantic model."""

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    """A pydantic model whose validator and serializer are built the first
    time it is used, not when its module is imported (`defer_build`). qmpctl
    declares about ninety models; a `qmpctl migrate` uses a third of them, and
    building the rest at start-up cost a fifth of a second of every run
    (docs/testing.md, "Time per run")."""

    model_config = ConfigDict(defer_build=True)
