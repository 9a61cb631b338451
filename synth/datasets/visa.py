"""VisA: images and masks listed by `split_csv/1cls.csv` (object,split,label,image,mask; paths from root)."""

from __future__ import annotations

import csv
from pathlib import Path

from synth.datasets.base import LayoutReader, Problems, TestItem
from synth.datasets.decode import broken_link
from synth.errors import DatasetError

CSV = Path("split_csv") / "1cls.csv"
COLUMNS = ("object", "split", "label", "image", "mask")
LABELS = {"normal": 0, "anomaly": 1}


class VisaReader(LayoutReader):
    """VisA (12 objects). Test items use split `good` for normal and `anomaly` for anomalous images."""

    name = "visa"
    title = "a VisA"
    layout = ("split_csv/1cls.csv (columns object,split,label,image,mask), "
              "<object>/Data/Images/{Normal,Anomaly}/*.JPG, <object>/Data/Masks/Anomaly/*.png")
    default_licence = "CC BY 4.0 (VisA)"

    def __init__(self, root: Path) -> None:
        self._rows: list[tuple[int, dict[str, str]]] | None = None
        super().__init__(root)

    def _looks_like(self, folder: Path) -> bool:
        return False  # categories come from the csv

    def _csv_rows(self) -> list[tuple[int, dict[str, str]]]:
        if self._rows is None:
            path = self.root / CSV
            try:
                with open(path, newline="", encoding="utf-8-sig") as fh:   # Excel writes a BOM
                    reader = csv.DictReader(fh)
                    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
                    if missing:
                        raise DatasetError(f"{path}: missing column(s) {', '.join(missing)}; "
                                           f"expected {','.join(COLUMNS)}")
                    self._rows = [(line, row) for line, row in enumerate(reader, start=2)]
            except (OSError, UnicodeDecodeError, csv.Error) as exc:
                raise DatasetError(f"{path}: cannot read the split file ({exc})") from None
        return self._rows

    def _discover(self) -> dict[str, Path]:
        if not (self.root / CSV).is_file():
            return {}
        names = sorted({row["object"].strip() for _, row in self._csv_rows() if row["object"]})
        return {n: self.root / n for n in names}

    def _where(self, line: int) -> str:
        return f"{self.root / CSV}, line {line}"

    def _rows_of(self, category: str, split: str) -> list[tuple[int, dict[str, str]]]:
        self.category_dir(category)  # unknown category -> DatasetError
        return [(line, r) for line, r in self._csv_rows()
                if r["object"].strip() == category and r["split"].strip() == split]

    def _file(self, value: str, line: int, what: str, problems: Problems) -> Path | None:
        path = self.root / value.strip()
        if value.strip() and broken_link(path):
            problems.add(f"{self._where(line)}: {what} {broken_link(path)}")
            return None
        if not value.strip() or not path.is_file():
            problems.add(f"{self._where(line)}: {what} {path} does not exist")
            return None
        return path

    def _train(self, category: str, problems: Problems) -> list[Path]:
        out = []
        for line, row in self._rows_of(category, "train"):
            if row["label"].strip() != "normal":
                continue
            path = self._file(row["image"], line, "image", problems)
            if path is not None:
                out.append(path)
        return sorted(out)

    def _test(self, category: str, problems: Problems) -> list[TestItem]:
        items = []
        for line, row in self._rows_of(category, "test"):
            label = LABELS.get(row["label"].strip())
            if label is None:
                problems.add(f"{self._where(line)}: label {row['label']!r} is neither 'normal' nor 'anomaly'")
                continue
            image = self._file(row["image"], line, "image", problems)
            mask = self._file(row["mask"] or "", line, "mask", problems) if label else None
            if image is not None:
                items.append(TestItem(image, "anomaly" if label else "good", label, None, mask))
        return sorted(items, key=lambda it: (it.split != "good", str(it.path)))
