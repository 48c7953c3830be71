"""The iris API through an HTTP client: the shared contract, validation, a model that knows its flowers."""

from typing import Any

import pytest

from iris.main import SERVICE
from modelserving.dev.testing import ServiceClient, ServiceContract, assert_rejected

# Typical measurements of each species (near the species' means in Fisher's data).
SETOSA = {"sepal_length_cm": 5.0, "sepal_width_cm": 3.4, "petal_length_cm": 1.5, "petal_width_cm": 0.25}
VERSICOLOR = {"sepal_length_cm": 5.9, "sepal_width_cm": 2.8, "petal_length_cm": 4.3, "petal_width_cm": 1.3}
VIRGINICA = {"sepal_length_cm": 6.6, "sepal_width_cm": 3.0, "petal_length_cm": 5.6, "petal_width_cm": 2.0}


def species_probabilities(client: ServiceClient, flowers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = client.predict(flowers)
    assert response.status_code == 200, response.text
    predictions: list[dict[str, Any]] = response.json()["predictions"]
    return predictions


class TestIrisApi(ServiceContract):
    service = SERVICE
    valid_row = SETOSA
    invalid_values = (
        ("sepal_length_cm", 0),
        ("sepal_width_cm", -1.5),
        ("petal_length_cm", 100),
        ("petal_width_cm", 1e6),
        ("petal_width_cm", "wide"),
        ("petal_width_cm", None),
    )

    def test_prediction_is_the_most_probable_species_and_probabilities_sum_to_1(
        self, client: ServiceClient
    ) -> None:
        for prediction in species_probabilities(client, [SETOSA, VERSICOLOR, VIRGINICA]):
            probabilities = prediction["probabilities"]
            assert set(probabilities) == {"setosa", "versicolor", "virginica"}
            assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)
            assert prediction["species"] == max(probabilities, key=probabilities.get)

    def test_typical_flowers_get_their_species_with_confidence(self, client: ServiceClient) -> None:
        predictions = species_probabilities(client, [SETOSA, VERSICOLOR, VIRGINICA])
        for prediction, species in zip(predictions, ["setosa", "versicolor", "virginica"], strict=True):
            assert prediction["species"] == species
            assert prediction["probabilities"][species] > 0.7

    def test_longer_wider_petals_move_a_flower_from_versicolor_to_virginica(
        self, client: ServiceClient
    ) -> None:
        growing = [
            {**VERSICOLOR, "petal_length_cm": length, "petal_width_cm": width}
            for length, width in [(4.0, 1.2), (4.8, 1.6), (5.6, 2.0), (6.4, 2.4)]
        ]
        virginica = [p["probabilities"]["virginica"] for p in species_probabilities(client, growing)]
        assert virginica == sorted(virginica)
        assert virginica[0] < 0.2 < 0.8 < virginica[-1]

    def test_predictions_are_per_flower_whatever_the_batch(self, client: ServiceClient) -> None:
        alone = species_probabilities(client, [VIRGINICA])
        batched = species_probabilities(client, [SETOSA, VIRGINICA, VERSICOLOR])
        assert batched[1] == alone[0]

    def test_misspelt_field_is_named_not_ignored(self, client: ServiceClient) -> None:
        flower = {**SETOSA, "petal_widht_cm": 0.2}
        assert_rejected(client.predict([flower]), "body[0].petal_widht_cm")

    def test_openapi_documents_each_measurement_and_its_bounds(self, client: ServiceClient) -> None:
        flower = client.get("/openapi.json").json()["components"]["schemas"]["Flower"]
        assert flower["required"] == [
            "sepal_length_cm",
            "sepal_width_cm",
            "petal_length_cm",
            "petal_width_cm",
        ]
        for measurement in flower["properties"].values():
            assert (measurement["exclusiveMinimum"], measurement["exclusiveMaximum"]) == (0, 100)
            assert measurement["description"] and measurement["examples"]
