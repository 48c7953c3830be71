"""The diabetes API through an HTTP client: the shared contract, plausible ranges, a sensible model."""

from typing import Any

from diabetes.main import SERVICE
from modelserving.dev.testing import ServiceClient, ServiceContract

# Near the data set's median patient.
PATIENT: dict[str, Any] = {
    "age": 50.0,
    "sex": 1,
    "bmi": 25.7,
    "bp": 93.0,
    "s1": 186.0,
    "s2": 113.0,
    "s3": 48.0,
    "s4": 4.0,
    "s5": 4.62,
    "s6": 91.0,
}


def progressions(client: ServiceClient, patients: list[dict[str, Any]]) -> list[float]:
    response = client.predict(patients)
    assert response.status_code == 200, response.text
    return [prediction["progression"] for prediction in response.json()["predictions"]]


class TestDiabetesApi(ServiceContract):
    service = SERVICE
    valid_row = PATIENT
    invalid_values = (
        ("age", 10),
        ("age", 130),
        ("sex", 0),
        ("sex", 1.5),
        ("sex", "female"),
        ("bmi", 5),
        ("bp", 400),
        ("s1", 10),
        ("s2", None),
        ("s3", -1),
        ("s4", 0.5),
        ("s5", 150),
        ("s6", "high"),
    )

    def test_a_typical_patient_gets_a_typical_progression(self, client: ServiceClient) -> None:
        [typical] = progressions(client, [PATIENT])
        assert 100 < typical < 200  # the training targets' middle half is 87 to 212

    def test_higher_bmi_and_triglycerides_predict_faster_progression(self, client: ServiceClient) -> None:
        lean = {**PATIENT, "bmi": 20.0, "s5": 4.0}
        heavy = {**PATIENT, "bmi": 35.0, "s5": 5.4}
        lean_progression, heavy_progression = progressions(client, [lean, heavy])
        assert heavy_progression - lean_progression > 80

    def test_progression_does_not_fall_as_bmi_rises(self, client: ServiceClient) -> None:
        rising = progressions(client, [{**PATIENT, "bmi": bmi} for bmi in (18, 22, 26, 30, 34, 38, 42)])
        assert rising == sorted(rising)
        assert rising[-1] > rising[0]

    def test_predictions_are_per_patient_whatever_the_batch(self, client: ServiceClient) -> None:
        other = {**PATIENT, "bmi": 33.0}
        assert progressions(client, [PATIENT, other])[1] == progressions(client, [other])[0]

    def test_scaled_values_from_the_other_version_of_the_data_set_are_refused(
        self, client: ServiceClient
    ) -> None:
        # scikit-learn's default load_diabetes() is mean-centred and scaled; this service wants real units.
        response = client.predict([dict.fromkeys(PATIENT, 0.02)])
        assert response.status_code == 422
        assert [error["field"] for error in response.json()["fields"]] == [
            f"body[0].{name}" for name in PATIENT
        ]

    def test_openapi_documents_units(self, client: ServiceClient) -> None:
        patient = client.get("/openapi.json").json()["components"]["schemas"]["Patient"]
        assert "mm Hg" in patient["properties"]["bp"]["description"]
        assert "kg/m²" in patient["properties"]["bmi"]["description"]
