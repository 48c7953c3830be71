"""Train the Titanic model and write its artifact and model card.

    ./pants run services/titanic:train            # writes services/titanic/model/

Deterministic: fixed seeds, so the same data and libraries give the same model.
"""

import argparse
from pathlib import Path

from modelserving import save_model
from titanic.features import build_pipeline, cross_validated_accuracy, load_training_data

DATA = Path(__file__).parent / "data" / "train.csv"
MODEL_VERSION = "1.0.0"
SEED = 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DATA, help="labelled passengers CSV")
    parser.add_argument("--output-dir", type=Path, default=Path("services/titanic/model"))
    parser.add_argument("--version", default=MODEL_VERSION, help="model version recorded in the card")
    args = parser.parse_args(argv)

    frame, survived = load_training_data(args.data)
    accuracy = cross_validated_accuracy(build_pipeline(SEED), frame, survived, folds=5, random_state=SEED)
    pipeline = build_pipeline(SEED).fit(frame, survived)
    card = save_model(
        pipeline,
        args.output_dir,
        name="titanic",
        version=args.version,
        training_data=args.data.read_bytes(),
        metrics={
            "cv5_accuracy": round(accuracy, 4),
            "train_accuracy": round(float(pipeline.score(frame, survived)), 4),
            "training_rows": float(len(frame)),
        },
        libraries=("scikit-learn", "numpy", "pandas", "joblib"),
        description="Gradient-boosted trees on engineered passenger features; survival probability.",
    )
    print(f"trained {card.name} {card.version}: 5-fold CV accuracy {accuracy:.4f} -> {args.output_dir}")


if __name__ == "__main__":
    main()
