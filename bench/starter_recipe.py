"""The offline starter's training recipes in one run, one table: what each step of the recipe moves.

Each variant is a whole `models bootstrap` (backend.starter.bootstrap: fine-tune the bundled MiniLM-L6 on SST-2
train without the calibration split, fit the temperature, score SST-2 dev) into its own temporary store, with no
inference engine built. Variants, on the preset given by --preset:

  before        the preset as it was before the recipe work (the baseline, measured in the same run)
  average       + the weights averaged over the last 30 % of the run (snapshots every 10 steps)
  teacher       + distilled from the MPNet-base teacher (data/sst2/teacher_probs.tsv, T = 2, weight 0.5) on the
                rows it covers; gold labels only on the rest
  teacher+average  both
  current       the preset as backend.starter.PRESETS defines it now
  NAME:k=v;k=v  a variant with TrainParams fields (or holdout, sentence_holdout, teacher) replaced

Columns: SST-2 dev accuracy, macro-F1 and ECE (15 bins) at the fitted temperature (ECE at T = 1 next to it),
accuracy on the IMDB sample (data/imdb/test_sample.csv, 2,500 reviews, windowed), build seconds (the bootstrap's
wall clock: training, calibration, dev scoring), training rows seen and whether the wall-clock cap cut the run.
SST-2 dev is the scoreboard only: no variant is trained or selected on it.

    .venv/bin/python bench/starter_recipe.py [--preset quick] [--variants before,teacher] [--imdb 2500]
    (a smoke run: --max-seconds 20 --imdb 50 --out /tmp/smoke.json)

Prints the table next to the anchors and writes bench/results/starter_recipe.json (updated after every variant).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from common import git_head  # noqa: E402

from backend.datasets import read_examples  # noqa: E402
from backend.model.classifier import SentimentClassifier  # noqa: E402
from backend.starter import PRESETS, Preset, bootstrap  # noqa: E402
from backend.store import ModelStore  # noqa: E402
from backend.training import TrainParams, evaluate  # noqa: E402

# the presets before the recipe work (commit 4db8fb2): the baseline rows
BEFORE = {
    "quick": Preset(TrainParams(
        epochs=1.0, learning_rate=1e-4, batch_size=32, token_budget=4096, max_length=128,
        max_examples=45_000, max_seconds=510, warmup_ratio=0.06, weight_decay=0.01, seed=0,
    )),
    "full": Preset(TrainParams(
        epochs=3.0, learning_rate=5e-5, batch_size=32, token_budget=4096, max_length=128,
        max_examples=None, max_seconds=3 * 3600, warmup_ratio=0.06, weight_decay=0.01, seed=0,
        eval_every=500, patience=4,
    ), holdout=2_000),
}
ANCHORS = [
    ("distilbert-base-uncased-finetuned-sst-2-english (published)", 0.913),
    ("bert-base-uncased on SST-2 (published)", 0.904),
    ("starter quick before (measured stop 16, uncontended)", 0.8968),
    ("starter full before (measured, 35 min)", 0.888),
]


def variant(preset: str, spec: str) -> Preset:
    """The recipe a variant names; `name:key=value;key=value` overrides TrainParams fields (or holdout,
    sentence_holdout) of it, e.g. `teacher:distill_weight=0.9`."""
    name, _, overrides = spec.partition(":")
    recipe = _named(preset, name)
    for item in filter(None, overrides.split(";")):
        key, _, raw = item.partition("=")
        if key in ("holdout", "sentence_holdout", "teacher"):
            recipe = replace(recipe, **{key: _value(raw, getattr(recipe, key))})
        else:
            recipe = replace(recipe, params=replace(recipe.params, **{key: _value(raw, getattr(recipe.params, key))}))
    return recipe


def _value(raw: str, current: Any) -> Any:
    """raw parsed as the type of the field's current value (None: an int, else a float, or None)."""
    if raw == "None":
        return None
    if isinstance(current, bool):
        return raw == "True"
    if isinstance(current, int) or (current is None and raw.isdigit()):
        return int(raw)
    return float(raw)


def _named(preset: str, name: str) -> Preset:
    base = BEFORE[preset]
    average = {"average_last": 0.3, "average_every": 10}
    teacher = {"distill_weight": 0.5, "distill_temperature": 2.0}
    recipes: dict[str, Preset] = {
        "before": base,
        "average": replace(base, params=replace(base.params, **average)),
        "teacher": replace(base, params=replace(base.params, **teacher), teacher=True),
        "teacher+average": replace(base, params=replace(base.params, **teacher, **average), teacher=True),
        "current": PRESETS[preset],
    }
    if name not in recipes:
        raise SystemExit(f"unknown variant {name!r}; choose from {', '.join(recipes)}")
    return recipes[name]


def run_variant(preset: str, name: str, data_dir: Path, imdb: int, max_seconds: float | None) -> dict[str, Any]:
    recipe = variant(preset, name)
    if max_seconds is not None:
        recipe = replace(recipe, params=replace(recipe.params, max_seconds=max_seconds))
    with tempfile.TemporaryDirectory(prefix="starter-recipe-") as tmp:
        started = time.monotonic()
        version = bootstrap(ModelStore(Path(tmp) / "models"), data_dir, preset=preset, recipe=recipe)
        build_s = time.monotonic() - started
        meta = version.meta
        reviews = read_examples(data_dir / "imdb" / "test_sample.csv")[:imdb]
        imdb_metrics = evaluate(SentimentClassifier.from_path(version.path, device="cpu"), reviews) if imdb else {}
    dev = meta["metrics"]["sst2_dev"]
    training = meta["training"]
    return {
        "preset": preset, "variant": name, "params": asdict(recipe.params), "teacher": recipe.teacher,
        "sst2_dev": {k: dev[k] for k in ("n", "accuracy", "macro_f1", "log_loss", "ece")},
        "ece_at_t1": meta["calibration"]["before"]["ece"], "temperature": meta["calibration"]["temperature"],
        "imdb": {k: imdb_metrics[k] for k in ("n", "accuracy", "macro_f1")} if imdb else None,
        "build_s": round(build_s, 1), "training": training,
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'preset':<6} {'variant':<44} {'dev acc':>8} {'F1':>7} {'ECE':>6} {'ECE T=1':>8} {'IMDB acc':>9} "
            f"{'build s':>8} {'rows seen':>10} {'capped':>7}")
    lines = [head, "-" * len(head)]
    for r in rows:
        imdb = f"{100 * r['imdb']['accuracy']:.2f}" if r["imdb"] else "-"
        lines.append(
            f"{r['preset']:<6} {r['variant']:<44} {100 * r['sst2_dev']['accuracy']:>8.2f} "
            f"{100 * r['sst2_dev']['macro_f1']:>7.2f} {r['sst2_dev']['ece']:>6.3f} {r['ece_at_t1']:>8.3f} "
            f"{imdb:>9} {r['build_s']:>8.0f} {r['training']['examples_seen']:>10,} "
            f"{'yes' if r['training']['hit_budget'] else 'no':>7}")
    lines.append("")
    lines.extend(f"anchor  {name:<60} {100 * acc:.1f}" for name, acc in ANCHORS)
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(BEFORE), default="quick")
    ap.add_argument("--variants", default="before,average,teacher,teacher+average",
                    help="comma-separated; name:key=value;key=value overrides fields, e.g. teacher:distill_weight=0.9")
    ap.add_argument("--data", type=Path, default=ROOT / "data")
    ap.add_argument("--imdb", type=int, default=2500, help="IMDB sample reviews to score (0: none)")
    ap.add_argument("--max-seconds", type=float, help="replace the wall-clock cap (a smoke run)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "starter_recipe.json")
    args = ap.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for name in args.variants.split(","):
        rows.append(run_variant(args.preset, name, args.data, args.imdb, args.max_seconds))
        print(table(rows[-1:]).splitlines()[2], flush=True)
        args.out.write_text(json.dumps({"host": platform.processor() or platform.machine(), **git_head(),
                                        "rows": rows}, indent=2))
    print(table(rows))


if __name__ == "__main__":
    main()
