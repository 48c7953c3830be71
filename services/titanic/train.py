"""Select, train and save the Titanic model: its artifact and a model card listing every candidate.

    ./pants run services/titanic:train            # writes services/titanic/model/

Compares every candidate in `features.CANDIDATES` by 10 x 5-fold stratified CV on
the 891 labelled passengers, keeps the simplest within one standard error of the
best, fits it on all of them and prints the comparison. Deterministic: fixed seeds,
so the same data and libraries give the same model.
"""

from pathlib import Path

import pandas as pd

from modelserving import NPZ
from modelserving.dev.reference import ReferenceRows
from modelserving.dev.training import save_and_report, training_arguments
from titanic.features import (
    FOLDS,
    REPEATS,
    Result,
    candidate,
    compare,
    load_training_data,
    passenger_records,
    simplest_within_one_standard_error,
    survival_scorer,
)
from titanic.main import SERVICE
from titanic.schemas import Passenger

DATA = Path(__file__).parent / "data" / "train.csv"
# The original service's scheme: the model version is the date it was trained, an integer YYYYMMDD.
MODEL_VERSION = "20261205"
SEED = 0
# Not watched for drift: the caller's id (new passengers' ids are all above the training ones')
# and the name, free text (its title is what the model reads; every name is a category of one).
UNWATCHED = ("PassengerId", "Name")


def comparison_table(results: list[Result], chosen: Result) -> str:
    """The candidates as a Markdown table, as the service README shows them."""
    lines = [
        f"| Candidate | {REPEATS} x {FOLDS}-fold CV accuracy, mean ± sd | Fitted parameters |",
        "|---|---|---|",
    ]
    for result in results:
        mark = " **(chosen)**" if result is chosen else ""
        lines.append(f"| {result.name}{mark} | {result.mean:.4f} ± {result.sd:.4f} | {result.parameters} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = training_arguments("titanic", default_version=MODEL_VERSION, usage=__doc__)
    parser.add_argument("--data", type=Path, default=DATA, help="labelled passengers CSV")
    arguments = parser.parse_args(argv)

    frame, survived = load_training_data(arguments.data)
    results = compare(frame, survived, SEED)
    chosen = simplest_within_one_standard_error(results)
    print(comparison_table(results, chosen))
    pipeline = candidate(chosen.name).build(SEED).fit(frame, survived)
    save_and_report(
        survival_scorer(pipeline).to_arrays(),
        arguments,
        name="titanic",
        training_data=arguments.data.read_bytes(),
        metrics={
            "cv_accuracy": chosen.mean,
            "cv_accuracy_sd": chosen.sd,
            "train_accuracy": pipeline.score(frame, survived),
            "training_rows": len(frame),
            **{f"cv_accuracy[{result.name}]": result.mean for result in results},
            **{f"cv_accuracy_sd[{result.name}]": result.sd for result in results},
        },
        # What serving needs to load and evaluate the arrays (scikit-learn and pandas only train).
        libraries=("numpy",),
        description=(
            f"{chosen.name} (scikit-learn) on engineered passenger features, as NumPy arrays; survival"
            f" probability. Chosen by {REPEATS} x {FOLDS}-fold stratified CV as the simplest candidate"
            " within one standard error of the best (every candidate is under metrics)."
        ),
        artifact_format=NPZ,
        # Every passenger's fields binned, and the scores served for them: what serving's
        # input drift is measured against.
        reference=ReferenceRows(SERVICE, passengers(frame), unwatched=UNWATCHED),
    )


def passengers(frame: pd.DataFrame) -> list[Passenger]:
    """The frame's rows as the service's typed rows, gaps as None, as requests bring them."""
    return [Passenger.model_validate(record._asdict()) for record in passenger_records(frame)]


if __name__ == "__main__":
    main()
