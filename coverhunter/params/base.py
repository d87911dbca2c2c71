"""The building blocks of every params section: a frozen pydantic dataclass that checks
types and ranges on construction (``dataclasses.replace`` too), and the ranges used."""
from __future__ import annotations

from typing import Annotated

import pydantic
from pydantic import ConfigDict, Field

# every section: frozen, validated on construction (also by dataclasses.replace)
dataclass = pydantic.dataclasses.dataclass(frozen=True, config=ConfigDict(extra="forbid"))
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
Count = Annotated[int, Field(ge=1)]        # an integer >= 1
Size = Annotated[int, Field(ge=0)]         # an integer >= 0


