"""Class-name files: the official one-name-per-line lists, or ``id,name`` CSV (header optional).

Video-FocalNet ships Kinetics / SSv2 labels as ``id,name`` CSV with an ``id,name`` header; many
other projects use a plain list, one class name per line in class order. Both are read here; a
file whose count does not match the model's classes is an error, not a silent misnaming.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from videploy.errors import VideployError


MAX_BYTES_PER_LABEL = 1024  # longest class name (+ CSV id) read per class


def read_labels(path: str | Path, num_classes: int) -> tuple[str, ...]:
    """Class names in class order (length ``num_classes``)."""
    path = Path(path)
    if not path.exists():
        raise VideployError(f"label file {str(path)!r} does not exist; pass a file with one class name per line, or id,name CSV")
    if not path.is_file():
        raise VideployError(f"label file {str(path)!r} is not a regular file; pass a file with one class name per line, or id,name CSV")
    limit = MAX_BYTES_PER_LABEL * num_classes + 4096  # a hostile bundle's label file is not read whole
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise VideployError(f"label file {str(path)!r} is larger than {limit} bytes ({MAX_BYTES_PER_LABEL} per class); it is not a label file for {num_classes} classes")
        text = data.decode("utf-8-sig")
    except OSError as exc:
        raise VideployError(f"cannot read label file {str(path)!r}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise VideployError(f"label file {str(path)!r} is not UTF-8 text ({exc}); save it as UTF-8") from exc
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines:
        raise VideployError(f"label file {str(path)!r} is empty; it needs {num_classes} class names")
    if _is_csv(lines):
        names = _parse_csv(path, lines, num_classes)
    else:
        names = tuple(lines)
    if len(names) != num_classes:
        raise VideployError(
            f"label file {str(path)!r} has {len(names)} class names, but the model has {num_classes} classes; "
            "use the label file of the dataset the model was trained on"
        )
    return names


def _is_int(s: str) -> bool:
    try:
        int(s.strip())
    except ValueError:
        return False
    return True


def _is_csv(lines: list[str]) -> bool:
    # id,name rows: every line after an optional header starts with an integer and a comma
    body = lines[1:] if lines and not _is_int(lines[0].split(",")[0]) else lines
    return bool(body) and all("," in ln and _is_int(ln.split(",", 1)[0]) for ln in body)


def _parse_csv(path: Path, lines: list[str], num_classes: int) -> tuple[str, ...]:
    rows = list(csv.reader(io.StringIO("\n".join(lines))))
    if rows and not _is_int(rows[0][0]):
        rows = rows[1:]  # header, e.g. "id,name"
    by_id: dict[int, str] = {}
    for row in rows:
        i = int(row[0].strip())
        name = ",".join(row[1:]).strip()
        if i in by_id:
            raise VideployError(f"label file {str(path)!r} lists class id {i} twice")
        if not 0 <= i < num_classes:
            raise VideployError(f"label file {str(path)!r} has class id {i}, outside 0..{num_classes - 1} for this model")
        by_id[i] = name
    missing = [i for i in range(num_classes) if i not in by_id]
    if missing:
        if len(by_id) != num_classes:
            return tuple(by_id[i] for i in sorted(by_id))  # count mismatch: reported by the caller
        raise VideployError(f"label file {str(path)!r} has no name for class ids {missing[:5]}")
    return tuple(by_id[i] for i in range(num_classes))
