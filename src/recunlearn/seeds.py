"""The seed type every config shares."""

from typing import Annotated

from pydantic import Field

Seed = Annotated[int, Field(ge=0, lt=2**63)]
"""A seed both numpy's and torch's generators take: not negative, below 2^63."""
