"""A table dataset's columns are checked: names unique and given, features finite numbers, a label
in every row; each failure one sentence naming the file, the column and, for a value, its line.

Before (issue 26), a header with a name twice or a blank name trained on it without a word (the
features were the same as with distinct names), a second label column was reported as a bad
number, and a row without a label became a class named ''.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cli_runner import run_cli
from metalearner.data.folder import load_table
from metalearner.errors import DataError


def _table(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "flowers.csv"
    path.write_text(text)
    return path


def _rows(header: str, *rows: str) -> str:
    # Eight classes of three rows each: enough for a run's class split, were it to start.
    body = rows or tuple(f"{i},{i + 1},{i + 2},c{i % 8}" for i in range(24))
    return "\n".join((header, *body)) + "\n"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        # names: unique (after the spaces around them), and given
        (_rows("a,a,b,label"), ("two columns named 'a'", "columns 1 and 2", "rename one")),
        (_rows(" a ,b,a,label"), ("two columns named 'a'", "columns 1 and 3")),
        (
            _rows("a,b,label,label", "1,2,x,x"),
            ("two columns named 'label'", "columns 3 and 4"),
        ),
        (_rows("a,,b,label"), ("column 2", "has no name", "index=False")),
        (_rows(",a,b,label"), ("column 1", "has no name")),
        # values: numbers, finite, in float32's range; the label column present and filled
        (_rows("a,b,c,label", "1,2,3,x", "4,oops,6,y"), ("line 3", "column 'b'", "'oops'")),
        (_rows("a,b,c,label", "1,nan,3,x"), ("line 2", "column 'b'", "not a finite number")),
        (_rows("a,b,c,label", "1,2,-inf,x"), ("line 2", "column 'c'", "not a finite number")),
        (_rows("a,b,c,label", "1,2,1e999,x"), ("line 2", "column 'c'", "not a finite number")),
        (_rows("a,b,c,label", "1,2,1e39,x"), ("line 2", "column 'c'", "out of range")),
        (_rows("a,b,c,label", "1,2,3,x", "4,5,6, "), ("line 3", "column 'label'", "no label")),
        (_rows("a,b,c,kind"), ("no label column 'label'", "a, b, c, kind")),
    ],
    ids=["same-name", "same-name-spaced", "two-labels", "no-name", "no-name-first", "text",
         "nan", "inf", "overflow", "float32-range", "no-label-value", "no-label-column"],
)  # fmt: skip
def test_a_bad_column_is_one_sentence_naming_the_file_and_column(
    tmp_path: Path, text: str, words: tuple[str, ...]
) -> None:
    path = _table(tmp_path, text)
    with pytest.raises(DataError) as err:
        load_table(path)
    message = str(err.value)
    assert message.startswith(str(path)) and "\n" not in message and message.endswith(".")
    for word in words:
        assert word in message, message


def test_good_columns_still_load(tmp_path: Path) -> None:
    data = load_table(_table(tmp_path, _rows(" a ,b , c,label")))
    assert data.preprocessing["columns"] == ["a", "b", "c"] and data.num_classes == 8
    assert data.x.shape == (24, 3)


def test_training_on_a_table_with_a_repeated_column_stops_with_one_line(tmp_path: Path) -> None:
    # As a user runs it: before, this trained (on a column named twice) and exited 0.
    _table(tmp_path, _rows("petal,petal,sepal,label"))
    sets = ["data.dataset=folder", "data.path=flowers.csv", "data.meta_train_classes=6",
            "data.val_classes=2", "data.ways=2", "data.shots=1", "data.queries=1", "steps=1",
            "val_tasks=1", "test_tasks=2"]  # fmt: skip
    args = ["train", "--preset", "sinusoid-k10-maml", "-q", "--out", "run"]
    result = run_cli(*args, *(f"--set={s}" for s in sets), cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "flowers.csv has two columns named 'petal'" in lines[0], lines
