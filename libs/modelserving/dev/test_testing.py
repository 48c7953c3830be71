"""The test helpers that read a service's schema."""

from typing import Annotated

from pydantic import BaseModel, Field

from modelserving.dev.testing import out_of_bounds


class Bounded(BaseModel):
    share: Annotated[float, Field(ge=0, le=1)]
    count: int = Field(gt=0, lt=10)
    free: str = Field(max_length=5)


def test_out_of_bounds_gives_a_value_past_each_numeric_bound() -> None:
    assert out_of_bounds(Bounded) == [("share", -1), ("share", 2), ("count", 0), ("count", 10)]
