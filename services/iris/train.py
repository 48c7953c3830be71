"""Train the iris species model and write its artifact and model card.

    ./pants run services/iris:train            # writes services/iris/model/

The model is fitted on a stratified 70 % of the flowers and scored on the other
30 %, which it never sees; the card carries both scores. Deterministic: the same
libraries give the same model.
"""

from iris.features import build_pipeline, load_training_data
from iris.main import SERVICE
from iris.schemas import Flower
from modelserving.dev import export
from modelserving.dev.reference import ReferenceRows
from modelserving.dev.training import Dataset, refused_in_one_line, save_and_report, training_arguments
from modelserving.formats.pipeline import PIPELINE

MODEL_VERSION = "1.1.0"
SEED = 0
HELD_OUT_FRACTION = 0.3


def held_out_split(data: Dataset) -> tuple[Dataset, Dataset]:
    """(train, held out): the split training uses, for tests to score the committed model on."""
    return data.split(held_out_fraction=HELD_OUT_FRACTION, seed=SEED, stratify=True)


def main(argv: list[str] | None = None) -> None:
    arguments = training_arguments("iris", default_version=MODEL_VERSION, usage=__doc__).parse_args(argv)

    data = load_training_data()
    train, held_out = held_out_split(data)
    cv_accuracy = train.cross_validated(
        build_pipeline(), scoring="accuracy", folds=5, seed=SEED, stratify=True
    )
    pipeline = build_pipeline().fit(train.features, train.target)
    with refused_in_one_line("iris"):
        served = export.checked(pipeline, data.features)  # as arrays, predicting as the pipeline does
    save_and_report(
        served,
        arguments,
        name="iris",
        training_data=data.as_csv(),
        metrics={
            "holdout_accuracy": held_out.scored(served, metric="accuracy"),
            "cv5_accuracy": cv_accuracy,
            "training_rows": len(train),
            "holdout_rows": len(held_out),
        },
        libraries=("numpy",),
        description="Standardised measurements, multinomial logistic regression; species probabilities.",
        artifact_format=PIPELINE,
        reference=ReferenceRows(SERVICE, data.rows(Flower)),  # what input drift is measured against
    )


if __name__ == "__main__":
    main()
