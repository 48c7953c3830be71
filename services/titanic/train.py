"""Train the Titanic model and write its artifact and model card.

    ./pants run services/titanic:train            # writes services/titanic/model/

Deterministic: fixed seeds, so the same data and libraries give the same model.
"""

from pathlib import Path

from modelserving import NPZ
from modelserving.training import save_and_report, training_arguments
from titanic.features import build_pipeline, cross_validated_accuracy, load_training_data, survival_scorer

DATA = Path(__file__).parent / "data" / "train.csv"
MODEL_VERSION = "1.0.0"
SEED = 0


def main(argv: list[str] | None = None) -> None:
    parser = training_arguments("titanic", default_version=MODEL_VERSION, usage=__doc__)
    parser.add_argument("--data", type=Path, default=DATA, help="labelled passengers CSV")
    arguments = parser.parse_args(argv)

    frame, survived = load_training_data(arguments.data)
    accuracy = cross_validated_accuracy(build_pipeline(SEED), frame, survived, folds=5, random_state=SEED)
    pipeline = build_pipeline(SEED).fit(frame, survived)
    save_and_report(
        survival_scorer(pipeline).to_arrays(),
        arguments,
        name="titanic",
        training_data=arguments.data.read_bytes(),
        metrics={
            "cv5_accuracy": accuracy,
            "train_accuracy": pipeline.score(frame, survived),
            "training_rows": len(frame),
        },
        # What serving needs to load and evaluate the arrays (scikit-learn and pandas only train).
        libraries=("numpy",),
        description=(
            "Gradient-boosted trees (scikit-learn) on engineered passenger features, as NumPy arrays;"
            " survival probability."
        ),
        artifact_format=NPZ,
    )


if __name__ == "__main__":
    main()
