"""The README's table of services says what each service it lists is: the service exists, is
declared in its BUILD, and answers the typed route the table gives.

The table lists the services that ship with the repo as examples; a team adding one does not
edit it (adding a service changes no shared file), so it is checked row by row, not for
completeness.
"""

import re
from pathlib import Path

HEADER = "| Service | Model | Typed route | README |"
ROW = re.compile(
    r"^\| `(?P<name>[a-z0-9_]+)` \| [^|]+ \| `POST (?P<route>/[^`]+)` \| \[[^]]+\]\((?P<link>[^)]+)\) \|$"
)


def problems(readme: str, root: Path) -> list[str]:
    """What is wrong with the table's rows, against the services under `root`."""
    lines = readme.splitlines()
    start = lines.index(HEADER) + 2
    end = next((index for index in range(start, len(lines)) if not lines[index].startswith("|")), len(lines))
    found = []
    for line in lines[start:end]:
        row = ROW.match(line)
        if row is None:
            found.append(f"not in the table's form: {line}")
            continue
        name, route = row["name"], row["route"]
        build, main = root / "services" / name / "BUILD", root / "services" / name / "main.py"
        if not build.is_file() or f'model_service(name="{name}"' not in build.read_text():
            found.append(f"{name}: no services/{name}/BUILD declares it")
        elif f'predict_path="{route}"' not in main.read_text():
            found.append(f"{name}: its typed route is not {route}")
        if row["link"] != f"services/{name}/README.md":
            found.append(f"{name}: links {row['link']}, not its README")
    return found if end > start else ["the table lists no service"]


def test_every_listed_service_exists_and_answers_its_listed_route() -> None:
    assert problems(Path("README.md").read_text(), Path(".")) == []


def test_a_wrong_route_or_a_missing_service_is_named(tmp_path: Path) -> None:
    (tmp_path / "services" / "wine").mkdir(parents=True)
    (tmp_path / "services" / "wine" / "BUILD").write_text('model_service(name="wine")\n')
    (tmp_path / "services" / "wine" / "main.py").write_text(
        'SERVICE = ModelService(predict_path="/predict")\n'
    )
    readme = "\n".join(
        [
            HEADER,
            "|---|---|---|---|",
            "| `wine` | cultivar | `POST /classify` | [services/wine](services/wine/README.md) |",
            "| `beer` | style | `POST /predict` | [services/beer](services/beer/README.md) |",
            "",
        ]
    )
    assert problems(readme, tmp_path) == [
        "wine: its typed route is not /classify",
        "beer: no services/beer/BUILD declares it",
    ]
