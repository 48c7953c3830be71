"""Train the diabetes progression model and write its artifact and model card.

    ./pants run services/diabetes:train            # writes services/diabetes/model/

The model is fitted on 80 % of the patients and scored on the other 20 %, which
it never sees; the card carries the held-out R² and mean absolute error, and the
5-fold cross-validated R² on the training part. Deterministic: the same
libraries give the same model.
"""

from sklearn.metrics import mean_absolute_error, r2_score

from diabetes.features import build_regressor, load_training_data
from diabetes.main import SERVICE
from diabetes.schemas import Patient
from modelserving.dev import export
from modelserving.dev.reference import ReferenceRows
from modelserving.dev.training import Dataset, refused_in_one_line, save_and_report, training_arguments
from modelserving.formats.pipeline import PIPELINE

MODEL_VERSION = "1.1.0"
SEED = 42
HELD_OUT_FRACTION = 0.2


def held_out_split(data: Dataset, seed: int = SEED) -> tuple[Dataset, Dataset]:
    """(train, held out): the split training uses, for tests to score the committed model on."""
    return data.split(held_out_fraction=HELD_OUT_FRACTION, seed=seed, stratify=False)


def main(argv: list[str] | None = None) -> None:
    arguments = training_arguments("diabetes", default_version=MODEL_VERSION, usage=__doc__).parse_args(argv)

    data = load_training_data()
    train, held_out = held_out_split(data)
    cv_r2 = train.cross_validated(build_regressor(SEED), scoring="r2", folds=5, seed=SEED, stratify=False)
    regressor = build_regressor(SEED).fit(train.features, train.target)
    with refused_in_one_line("diabetes"):
        served = export.checked(regressor, data.features)  # XGBoost's trees as arrays, predicting as it does
    predicted = served.predict(held_out.features)
    save_and_report(
        served,
        arguments,
        name="diabetes",
        training_data=data.as_csv(),
        metrics={
            "holdout_r2": r2_score(held_out.target, predicted),
            "holdout_mae": mean_absolute_error(held_out.target, predicted),
            "cv5_r2": cv_r2,
            "training_rows": len(train),
            "holdout_rows": len(held_out),
        },
        libraries=("numpy",),
        description="Gradient-boosted decision stumps (XGBoost) on raw-unit baseline measurements;"
        " disease progression one year after baseline.",
        artifact_format=PIPELINE,
        reference=ReferenceRows(SERVICE, data.rows(Patient)),  # what input drift is measured against
    )


if __name__ == "__main__":
    main()
