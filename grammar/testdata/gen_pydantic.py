"""Writes the Pydantic v2 schemas of the corpus: schemas/pydantic_*.json.

Run from this folder: python3 gen_pydantic.py (Pydantic 2.13.4 produced the committed files).
Each model is one that real code declares: constrained strings, dates, bounded floats,
tuples, sets, enums, optional fields, nested and recursive models, discriminated unions.
"""
import datetime
import enum
import json
import uuid
from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, Field, confloat, conint, constr

from pydantic import (NonNegativeInt, PositiveFloat,
                      PositiveInt, StringConstraints)


class Color(str, enum.Enum):
    red = "red"
    green = "green"


class Address(BaseModel):
    street: constr(min_length=1, max_length=40)
    city: str
    zip: Annotated[str, StringConstraints(min_length=5, max_length=5)]


class Person(BaseModel):
    name: constr(max_length=20)
    age: conint(ge=0, le=150)
    height_m: confloat(gt=0, lt=3)
    score: float = Field(ge=0, le=100)
    born: datetime.date
    created: datetime.datetime
    wakes: datetime.time
    id: uuid.UUID
    color: Color
    address: Address
    nick: Optional[str] = None


class Point(BaseModel):
    xy: tuple[float, float]
    label: tuple[str, int, bool]
    rest: tuple[int, ...]


class Server(BaseModel):
    host: Annotated[str, Field(json_schema_extra={"format": "hostname"})]
    ip: Annotated[str, Field(json_schema_extra={"format": "ipv4"})]
    admin: Annotated[str, Field(json_schema_extra={"format": "email"}, max_length=64)]
    port: PositiveInt
    weight: PositiveFloat
    retries: NonNegativeInt
    timeout: datetime.timedelta
    tags: set[Literal["a", "b", "c"]]


class Cat(BaseModel):
    kind: Literal["cat"]
    lives: int = Field(ge=1, le=9)


class Dog(BaseModel):
    kind: Literal["dog"]
    good: bool


class Owner(BaseModel):
    pet: Union[Cat, Dog] = Field(discriminator="kind")
    pets: list[Annotated[Union[Cat, Dog], Field(discriminator="kind")]] = Field(min_length=1, max_length=3)


class Tree(BaseModel):
    value: int = Field(multiple_of=5)
    children: list["Tree"] = []
    meta: dict[str, float] = Field(default_factory=dict, max_length=4)


class Reading(BaseModel):
    celsius: float = Field(gt=-273.15, le=1e4)
    ratio: float = Field(ge=0.0, le=1.0)
    offset: float = Field(gt=-0.5, lt=0.25)
    when: Optional[datetime.datetime] = None


MODELS = {
    "person": Person, "point": Point, "server": Server, "owner": Owner, "tree": Tree,
    "reading": Reading,
}

if __name__ == "__main__":
    for name, model in MODELS.items():
        for mode in ("validation",):
            with open(f"schemas/pydantic_{name}.json", "w") as f:
                json.dump(model.model_json_schema(mode=mode), f, indent=1, sort_keys=True)
                f.write("\n")
