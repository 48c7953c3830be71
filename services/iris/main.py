"""The iris species service: its model declaration and its entry points."""

from collections.abc import Sequence
from pathlib import Path

from iris.schemas import (
    FEATURE_COLUMNS,
    SPECIES,
    Flower,
    SpeciesResponse,
)
from modelserving import LoadedModel, ModelService
from modelserving.formats.pipeline import PIPELINE, matrix
from modelserving.outputs import ClassOutput
from modelserving.server.serve import entry_points

MODEL_DIR = Path(__file__).parent / "model"


def predict_species(model: LoadedModel, flowers: Sequence[Flower]) -> SpeciesResponse:
    metadata = {"model_version": model.card.version}
    if not flowers:
        return SpeciesResponse.model_validate({"predictions": [], "metadata": metadata})
    probabilities = model.estimator.predict_proba(matrix(flowers, FEATURE_COLUMNS))
    most_probable = probabilities.argmax(axis=1).tolist()
    # Validated from plain values in one call: an object per row would cost more than the model.
    return SpeciesResponse.model_validate(
        {
            "predictions": [
                {
                    "species": SPECIES[best],
                    "probabilities": {species: round(p, 6) for species, p in zip(SPECIES, row, strict=True)},
                }
                for best, row in zip(most_probable, probabilities.tolist(), strict=True)
            ],
            "metadata": metadata,
        }
    )


SERVICE = ModelService(
    name="iris",
    title="Iris species",
    description="Predicts the species of iris flowers (setosa, versicolor or virginica) from their"
    " sepal and petal measurements.",
    model_dir=MODEL_DIR,
    predict_path="/predict_species",
    predict_summary="Predict the species of a list of flowers",
    item_type=Flower,
    response_type=SpeciesResponse,
    predict=predict_species,
    v2_tensor_input="features",
    examples=[
        Flower(sepal_length_cm=5.1, sepal_width_cm=3.5, petal_length_cm=1.4, petal_width_cm=0.2),
        Flower(sepal_length_cm=6.3, sepal_width_cm=3.3, petal_length_cm=6.0, petal_width_cm=2.5),
    ],
    artifact_format=PIPELINE,  # the fitted pipeline as named arrays: nothing runs when it loads
    predict_inline_rows=8,  # arrays only: a few rows take tens of microseconds, and cannot hang
    output=ClassOutput("species", SPECIES),  # versions are compared by the species they predict
)


create_app, main = entry_points(SERVICE, __name__)

if __name__ == "__main__":
    main()
