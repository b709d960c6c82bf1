"""Lake et al.'s 20-way within-alphabet one-shot runs as a fixed evaluation task set.

``all_runs.zip`` holds ``run01`` .. ``run20``; each run has ``training/class01..20.png`` (one
drawing of each of 20 characters from one evaluation alphabet), ``test/item01..20.png`` (another
drawing of each, by other people) and ``class_labels.txt``, whose lines map a test item to its
training class (``run01/test/item01.png run01/training/class08.png``).

References:
    Lake, Salakhutdinov & Tenenbaum, "Human-level concept learning through probabilistic
    program induction", Science 2015 (the one-shot classification benchmark).
"""

from __future__ import annotations

from pathlib import Path

import torch

from metalearner.data.images import ImageSettings, decode_many, list_tree, read_tree
from metalearner.data.labeled import to_float
from metalearner.data.omniglot import URLS, download_omniglot, omniglot_dir
from metalearner.errors import DataError
from metalearner.tasks.batch import TaskBatch
from metalearner.tasks.regression import FixedTasks

LABELS = "class_labels.txt"


def load_lake_runs(
    data_dir: Path | str | None = None,
    *,
    size: int | tuple[int, int] = 28,
    resample: str = "lanczos",
    download: bool = False,
) -> FixedTasks:
    """Loads the runs as one fixed task set: task ``t`` is run ``t + 1``, 20-way 1-shot.

    Each task's support is the run's training images, label ``j`` for ``class{j+1:02d}.png``;
    its queries are the run's test items, ordered by label (query ``j`` is the item whose answer
    is label ``j``, the layout of :class:`~metalearner.tasks.EpisodeSampler` with one query per
    class). Images are preprocessed as :func:`~.omniglot.load_omniglot` does (inverted, resized
    with antialiasing) and scaled to ``[0, 1]`` floats, as episodes are.

    The batch's ``classes`` are ``run_index * 20 + j``: one id per character of a run, unique
    across runs. ``info["run"]`` is the run number and ``info["query_item"][t, j]`` the 0-based
    index of query ``j`` among the sorted test items (``item{i+1:02d}.png``).

    Args:
        data_dir: folder holding ``omniglot/all_runs.zip`` (default ``$METALEARNER_DATA``).
        size: stored image side (28, as for Omniglot episodes) or ``(height, width)``.
        resample: ``"lanczos"`` or ``"box"``.
        download: fetch ``all_runs.zip`` from the canonical source when missing (md5-checked).

    Raises:
        DataError: the runs are missing (saying where to put them), a label file is malformed
            or names a missing image (naming the file and line), or an image is unreadable.

    Example:
        >>> runs = load_lake_runs("/data")
        >>> len(runs), runs.batch(0, 1).support_x.shape
        (20, torch.Size([1, 20, 1, 28, 28]))
    """
    source, label_files, runs = _read_runs(data_dir, download)
    n = len(runs[0][0])
    files = [f for train, test in runs for f in (*train, *test)]
    settings = ImageSettings.of(size, invert=True, resample=resample)
    pixels = decode_many(read_tree(source, files), settings, names=[f"{source}/{f}" for f in files])
    x = to_float(torch.from_numpy(pixels)).reshape(len(runs), 2 * n, *pixels.shape[1:])
    query_item = torch.tensor([[sorted(test).index(t) for t in test] for _, test in runs])
    labels = torch.arange(n).expand(len(runs), n)
    return FixedTasks(
        TaskBatch(
            support_x=x[:, :n],
            support_y=labels.clone(),
            query_x=x[:, n:],
            query_y=labels.clone(),
            classes=torch.arange(len(runs) * n).reshape(len(runs), n),
            info={
                "run": torch.tensor([_run_number(f) for f in label_files]),
                "query_item": query_item,
            },
        )
    )


def export_lake_runs(
    dest: Path | str, data_dir: Path | str | None = None, *, download: bool = False
) -> list[Path]:
    """Lays each run out as a user's new task: ``runNN/support/<class>/`` and ``query/<class>/``.

    The original PNG files are copied unchanged: ``support/classNN/classNN.png`` is the run's
    training drawing of that class, and ``query/classNN/itemMM.png`` its test item whose answer
    is that class, so ``metalearner adapt`` scores a run as a user's labeled task.

    Returns:
        The run folders, in run order.

    Raises:
        DataError: as :func:`load_lake_runs`.
    """
    source, label_files, runs = _read_runs(data_dir, download)
    out = []
    for label_file, (training, test) in zip(label_files, runs, strict=True):
        run = Path(dest) / f"run{_run_number(label_file):02d}"
        files = [*training, *test]
        for name, data in zip(files, read_tree(source, files), strict=True):
            cls = Path(training[(training + test).index(name) % len(training)]).stem
            part = "support" if name in training else "query"
            target = run / part / cls / Path(name).name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data.read_bytes() if isinstance(data, Path) else data)
        out.append(run)
    return out


def _read_runs(
    data_dir: Path | str | None, download: bool
) -> tuple[Path, list[str], list[tuple[list[str], list[str]]]]:
    """The runs' source, label files and ``(training, test)`` files by label, checked."""
    folder = omniglot_dir(data_dir)
    source = next((p for p in (folder / "all_runs.zip", folder / "all_runs") if p.exists()), None)
    if source is None and download:
        source = download_omniglot(folder, files=["all_runs.zip"])[0]
    if source is None:
        raise DataError(
            f"Lake's one-shot runs are not in {folder}: put all_runs.zip (or its extracted "
            "folder all_runs/) there, point --data-dir or METALEARNER_DATA at the folder that "
            f"holds omniglot/, or download it from {URLS['all_runs.zip']}."
        )
    names = list_tree(source)
    label_files = [n for n in names if n.rsplit("/", 1)[-1] == LABELS]
    if not label_files:
        raise DataError(
            f"{source} has no run folders with {LABELS}; use the original all_runs.zip."
        )
    texts = read_tree(source, label_files)
    present = set(names)
    runs = [_parse_run(source, f, t, present) for f, t in zip(label_files, texts, strict=True)]
    ways = {len(train) for train, _ in runs}
    if len(ways) != 1:
        raise DataError(
            f"The runs in {source} have different numbers of classes ({sorted(ways)}); "
            "use the original all_runs.zip."
        )
    return source, label_files, runs


def _parse_run(
    source: Path, label_file: str, text: bytes | Path, present: set[str]
) -> tuple[list[str], list[str]]:
    """``(training files by label, test files by label)`` of one run, checked for consistency.

    The label file's paths start at the runs' root; only their last two parts (``test/itemNN``,
    ``training/classNN``) are used, so a zip extracted into an extra folder still works.
    """
    raw = text.read_bytes() if isinstance(text, Path) else text
    run = label_file.removesuffix(LABELS)  # "run01/", or "" for a lone run
    where = f"{source}/{label_file}"
    training = sorted(n for n in present if n.startswith(f"{run}training/"))
    answer: dict[str, str] = {}
    for i, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise DataError(
                f"{where} line {i} is {line.strip()!r}, not 'test/itemNN.png "
                "training/classNN.png'; use the original all_runs.zip."
            )
        test, train = (run + "/".join(p.split("/")[-2:]) for p in parts)
        for path in (test, train):
            if path not in present:
                raise DataError(
                    f"{where} line {i} names {path}, which is not in {source}; "
                    "use the original all_runs.zip."
                )
        answer[test] = train
    by_class = {train: test for test, train in answer.items()}
    if not training or sorted(by_class) != training or len(answer) != len(training):
        raise DataError(
            f"{where} does not give each of the {len(training)} training classes exactly one "
            "test item; use the original all_runs.zip."
        )
    return training, [by_class[c] for c in training]


def _run_number(label_file: str) -> int:
    """The number in the run folder's name (``run07`` -> 7), 0 if it has none."""
    folder = label_file.removesuffix(LABELS).rstrip("/").rsplit("/", 1)[-1]
    digits = "".join(ch for ch in folder if ch.isdigit())
    return int(digits) if digits else 0
