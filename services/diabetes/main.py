"""The diabetes progression service: its model declaration and its entry points."""

from collections.abc import Sequence
from pathlib import Path

from diabetes.schemas import (
    FEATURE_COLUMNS,
    Patient,
    ProgressionResponse,
)
from modelserving import LoadedModel, ModelService
from modelserving.formats.pipeline import PIPELINE, matrix
from modelserving.outputs import ScoreOutput
from modelserving.server.serve import entry_points

MODEL_DIR = Path(__file__).parent / "model"


def predict_for_patients(model: LoadedModel, patients: Sequence[Patient]) -> ProgressionResponse:
    metadata = {"model_version": model.card.version}
    values = model.estimator.predict(matrix(patients, FEATURE_COLUMNS)).tolist() if patients else []
    # Validated from plain values in one call: an object per row would cost more than the model.
    return ProgressionResponse.model_validate(
        {"predictions": [{"progression": round(value, 2)} for value in values], "metadata": metadata}
    )


SERVICE = ModelService(
    name="diabetes",
    title="Diabetes progression",
    description="Predicts diabetes disease progression one year on from a patient's baseline measurements.",
    model_dir=MODEL_DIR,
    predict_path="/predict_progression",
    predict_summary="Predict disease progression for a list of patients",
    item_type=Patient,
    response_type=ProgressionResponse,
    predict=predict_for_patients,
    v2_tensor_input="features",
    examples=[
        Patient(age=59, sex=2, bmi=32.1, bp=101, s1=157, s2=93.2, s3=38, s4=4, s5=4.8598, s6=87),
        Patient(age=48, sex=1, bmi=21.6, bp=87, s1=183, s2=103.2, s3=70, s4=3, s5=3.8918, s6=69),
    ],
    artifact_format=PIPELINE,  # XGBoost's trees as named arrays: no XGBoost in the image
    predict_inline_rows=8,
    # Versions compared by their progression values in bands of 50 (the targets span 25-346);
    # a shadow agrees within 10.
    output=ScoreOutput(
        "progression", edges=(50, 100, 150, 200, 250, 300), tolerance=10.0
    ),  # arrays only: a few rows take tens of microseconds, and cannot hang
)


create_app, main = entry_points(SERVICE, __name__)

if __name__ == "__main__":
    main()
