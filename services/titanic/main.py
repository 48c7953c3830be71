"""The Titanic survival service: its model declaration and its entry points."""

from collections.abc import Sequence
from pathlib import Path

from modelserving import NPZ, LoadedModel, ModelService
from modelserving.outputs import ScoreOutput
from modelserving.server.serve import entry_points
from titanic.health import ORIGINAL_HEALTH_KEYS
from titanic.schemas import Passenger, SurvivalResponse
from titanic.scoring import SurvivalScorer

MODEL_DIR = Path(__file__).parent / "model"
SURVIVAL_THRESHOLD = 0.5
SCORE_DECIMALS = 3  # as the original service sent them


def prepare(model: LoadedModel) -> LoadedModel:
    """The verified artifact's arrays as the `SurvivalScorer` they describe."""
    return LoadedModel(estimator=SurvivalScorer.from_arrays(model.estimator), card=model.card)


def predict_survival(model: LoadedModel, passengers: Sequence[Passenger]) -> SurvivalResponse:
    metadata = {"titanic_model_version": int(model.card.version)}
    if not passengers:
        return SurvivalResponse.model_validate({"predictions": [], "metadata": metadata})
    scores = model.estimator.scores(passengers).tolist()
    # Validated from plain values in one call: a model per prediction would cost more than the trees.
    return SurvivalResponse.model_validate(
        {
            "predictions": [
                {
                    "passenger_id": passenger.PassengerId,
                    "survived": score >= SURVIVAL_THRESHOLD,
                    "score": round(score, SCORE_DECIMALS),
                }
                for passenger, score in zip(passengers, scores, strict=True)
            ],
            "metadata": metadata,
        }
    )


SERVICE = ModelService(
    name="titanic",
    title="Titanic survival",
    description="Predicts whether Titanic passengers survived, from their passenger-list records.",
    model_dir=MODEL_DIR,
    artifact_format=NPZ,
    predict_path="/predict_survival_by_passengers",
    predict_summary="Predict survival for a list of passengers",
    item_type=Passenger,
    response_type=SurvivalResponse,
    predict=predict_survival,
    prepare=prepare,
    predict_inline_rows=8,  # its trees as arrays: a few rows take tens of microseconds, and cannot hang
    # Versions compared by their survival scores' deciles; a shadow agrees within 0.05.
    output=ScoreOutput("score", edges=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9), tolerance=0.05),
    health_keys=ORIGINAL_HEALTH_KEYS,  # the original service's, for the monitors that read them
    examples=[
        Passenger(
            PassengerId=1,
            Pclass=3,
            Name="Braund, Mr. Owen Harris",
            Sex="male",
            Age=22,
            SibSp=1,
            Parch=0,
            Ticket="A/5 21171",
            Fare=7.25,
            Cabin=None,
            Embarked="S",
        ),
        Passenger(PassengerId=2, Pclass=1, Name="Cumings, Mrs. John Bradley", Sex="female", SibSp=1, Parch=0),
    ],
)


create_app, main = entry_points(SERVICE, __name__)

if __name__ == "__main__":
    main()
