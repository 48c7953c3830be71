"""Titanic's personal data (issue #28): the schema marks a passenger's name and ticket, which
payload logging hashes or leaves out (modelserving.runtime.payloads), and tells clients so."""

from fastapi.testclient import TestClient

from modelserving import Settings
from modelserving.server.app import create_app
from modelserving.service import personal_fields
from titanic.main import SERVICE
from titanic.schemas import Passenger


def test_name_and_ticket_are_marked_personal() -> None:
    assert personal_fields(Passenger) == ("Name", "Ticket")


def test_the_openapi_document_shows_them_as_personal() -> None:
    with TestClient(create_app(SERVICE, Settings(allow_unauthenticated=True))) as client:
        properties = client.get("/openapi.json").json()["components"]["schemas"]["Passenger"]["properties"]
    assert sorted(name for name, schema in properties.items() if schema.get("x-personal")) == [
        "Name",
        "Ticket",
    ]
