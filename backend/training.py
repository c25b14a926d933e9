"""Fine-tuning a sequence classifier on labelled Examples, and scoring a classifier on them.

Pure ML: the caller chooses the base checkpoint and the output directory, and decides what to do with
the result (publish it to the store, for instance). Nothing here knows about Label Studio, Redis or the
store's CURRENT pointer.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from backend import calibration
from backend.calibration import ECE_BINS
from backend.model.classifier import SentimentClassifier, pack_batches
from backend.model.torch_engine import quiet_transformers, resolve_device
from backend.model.types import Classifier, Example, Prediction

log = logging.getLogger(__name__)

_POOL_BATCHES = 50  # length-sorting happens inside pools of this many batches, so batches stay shuffled


@dataclass
class TrainParams:
    """Hyper-parameters of one fine-tuning run; every field is recorded in the version's meta."""

    epochs: float = 1.0
    learning_rate: float = 5e-5
    batch_size: int = 32  # most rows in one batch
    token_budget: int = 4096  # most padded tokens in one batch
    max_length: int = 128  # longer training texts are cut (and counted in TrainResult.truncated)
    max_examples: int | None = None  # seeded random subsample of the training examples
    min_words: int = 0  # examples of fewer words are left out (before the subsample): sentence-like rows only
    max_seconds: float | None = None  # wall-clock budget: the learning rate decays to 0 by then and training stops
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    seed: int = 0
    eval_every: int | None = None  # steps between evaluations on eval_examples
    patience: int | None = None  # evaluations without improvement before stopping early
    max_grad_norm: float = 1.0
    distill_weight: float = 0.0  # α: a row with a teacher target has loss (1 − α)·CE(gold) + α·T²·KL(teacher ‖ student)
    distill_temperature: float = 1.0  # T: the temperature the teacher's probabilities were softened with
    average_last: float = 0.0  # average the weights over this last share of the run (0: keep the last weights)
    average_every: int = 10  # steps between the snapshots that the average takes in
    freeze_embeddings: bool = False  # keep the word-embedding matrix as the base has it (no gradient, no Adam state)


@dataclass(frozen=True)
class TrainProgress:
    """What a progress callback receives after every optimiser step."""

    step: int
    total_steps: int
    epoch: float
    loss: float
    elapsed_s: float
    eta_s: float


@dataclass
class TrainResult:
    """What a run did: steps taken, examples seen, time, why it stopped, its loss and best evaluation."""

    steps: int
    total_steps: int
    examples_seen: int
    train_seconds: float
    final_loss: float
    stopped_early: bool = False
    hit_budget: bool = False
    truncated: int = 0
    best_step: int | None = None
    best_eval: dict[str, Any] | None = None
    averaged: int = 0  # weight snapshots averaged into the result (0: the last weights)
    losses: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """What a version's meta.json records of its training."""
        return {
            "steps": self.steps, "total_steps": self.total_steps, "examples_seen": self.examples_seen,
            "train_seconds": round(self.train_seconds, 1), "final_loss": self.final_loss,
            "stopped_early": self.stopped_early, "hit_budget": self.hit_budget, "best_step": self.best_step,
            "truncated": self.truncated, "averaged": self.averaged,
        }


def fine_tune(
    examples: Sequence[Example],
    base_dir: Path | str,
    out_dir: Path | str,
    params: TrainParams,
    *,
    labels: Sequence[str] = ("NEGATIVE", "POSITIVE"),
    eval_examples: Sequence[Example] | None = None,
    progress: Callable[[TrainProgress], None] | None = None,
    teacher: Mapping[str, Mapping[str, float]] | None = None,
) -> TrainResult:
    """Train base_dir's model on examples and save_pretrained the result (the best one under early stopping).

    teacher maps a training text to a teacher's class probabilities (softened with params.distill_temperature);
    the rows it covers are distilled with weight params.distill_weight, the others learn their gold label only."""
    if not examples:
        raise ValueError("fine_tune needs at least one training example")
    torch.manual_seed(params.seed)
    order = _label_order(Path(base_dir), labels)
    tokenizer, model = _load_base(Path(base_dir), order)
    if params.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    chosen = _subsample(select_sentence_like(examples, params.min_words), params.max_examples, params.seed)
    rows, truncated = encode_examples(tokenizer, chosen, order, params.max_length, teacher)
    plan = plan_batches([len(r[0]) for r in rows], params)
    run = _Run(model, tokenizer, params, Path(out_dir), progress, eval_examples)
    result = run.train(rows, plan)
    result.truncated = truncated
    return result


def select_sentence_like(examples: Sequence[Example], min_words: int) -> list[Example]:
    """The examples of at least min_words whitespace-separated words (all of them when min_words <= 1); raises
    ValueError when none is left."""
    chosen = [e for e in examples if len(e.text.split()) >= min_words]
    if not chosen:
        raise ValueError(f"no training example has {min_words} words or more")
    return chosen


def hold_out(examples: Sequence[Example], count: int, seed: int) -> tuple[list[Example], list[Example]]:
    """(the rest, a seeded random `count` rows) — the held-out rows never reach training."""
    if count <= 0:
        return list(examples), []
    chosen = set(random.Random(seed).sample(range(len(examples)), count))
    rest = [e for i, e in enumerate(examples) if i not in chosen]
    return rest, [examples[i] for i in sorted(chosen)]



Row = tuple[list[int], int, tuple[float, ...] | None]  # token ids, gold label index, teacher probabilities


def encode_examples(
    tokenizer: Any, examples: Sequence[Example], labels: Sequence[str], max_length: int,
    teacher: Mapping[str, Mapping[str, float]] | None = None,
) -> tuple[list[Row], int]:
    """(token ids with [CLS]/[SEP], label index, the teacher's probabilities in label order or None) per example,
    cut to max_length, and how many were cut."""
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted({e.label for e in examples} - index.keys())
    if unknown:
        raise ValueError(f"example labels {unknown} are not among the model labels {list(labels)}")
    teacher = teacher or {}
    encoded = tokenizer([e.text for e in examples], truncation=False, verbose=False)["input_ids"]
    rows = [(ids if len(ids) <= max_length else ids[: max_length - 1] + ids[-1:], index[e.label],
             _soft(teacher.get(e.text), labels)) for ids, e in zip(encoded, examples, strict=True)]
    truncated = sum(len(ids) > max_length for ids in encoded)
    if truncated:
        log.warning("%d of %d training texts were cut to %d tokens", truncated, len(rows), max_length)
    return rows, truncated


def _soft(probs: Mapping[str, float] | None, labels: Sequence[str]) -> tuple[float, ...] | None:
    if probs is None:
        return None
    if sorted(probs) != sorted(labels):
        raise ValueError(f"teacher labels {sorted(probs)} are not the model labels {list(labels)}")
    return tuple(float(probs[label]) for label in labels)


def distillation_loss(
    logits: torch.Tensor, targets: torch.Tensor, soft: torch.Tensor, has_soft: torch.Tensor,
    weight: float, temperature: float,
) -> torch.Tensor:
    """Mean over rows of (1 − w)·CE(gold) + w·T²·KL(soft ‖ softmax(logits / T)) where has_soft, CE(gold) elsewhere.

    soft holds the teacher's probabilities already softened with T (rows without a teacher: anything, ignored);
    T² keeps the soft term's gradient on the scale of the hard one (Hinton et al., 2015)."""
    hard = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    if weight == 0.0 or not bool(has_soft.any()):
        return hard.mean()
    log_student = torch.log_softmax(logits / temperature, dim=-1)
    kl = (soft * (torch.log(soft.clamp_min(1e-12)) - log_student)).sum(dim=-1) * temperature**2
    mixed = torch.where(has_soft, (1.0 - weight) * hard + weight * kl, hard)
    return mixed.mean()


def plan_batches(lengths: Sequence[int], params: TrainParams) -> list[list[int]]:
    """Every optimiser step's row indexes for the whole run: shuffled, length-bucketed, token-budgeted."""
    rng = random.Random(params.seed)
    plan: list[list[int]] = []
    for epoch in range(max(1, math.ceil(params.epochs))):
        batches = _epoch_batches(lengths, params, rng)
        share = min(1.0, params.epochs - epoch)
        plan.extend(batches[: max(1, round(share * len(batches)))])
    return plan


def _epoch_batches(lengths: Sequence[int], params: TrainParams, rng: random.Random) -> list[list[int]]:
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = params.batch_size * _POOL_BATCHES
    batches: list[list[int]] = []
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        packed = pack_batches([lengths[i] for i in chunk], params.token_budget, params.batch_size)
        batches.extend([chunk[j] for j in b] for b in packed)
    rng.shuffle(batches)
    return batches


class _Run:
    """One training loop's state: model, optimiser, schedule, clock and the early-stopping bookkeeping."""

    def __init__(
        self, model: Any, tokenizer: Any, params: TrainParams, out_dir: Path,
        progress: Callable[[TrainProgress], None] | None, eval_examples: Sequence[Example] | None,
    ) -> None:
        self.device = resolve_device("auto")
        self.model, self.tokenizer, self.params = model.to(self.device), tokenizer, params
        self.out_dir, self.progress = out_dir, progress
        self.eval_examples = list(eval_examples or [])
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.best_key: tuple[float, float] | None = None
        self.best_step: int | None = None
        self.best_eval: dict[str, Any] | None = None
        self.bad_evals = 0
        self.average = WeightAverage(self.model)

    def train(self, rows: list[Row], plan: list[list[int]]) -> TrainResult:
        """Run the plan until it ends, the time budget runs out or early stopping triggers."""
        optimizer = _optimizer(self.model, self.params)
        warmup = max(1, round(self.params.warmup_ratio * len(plan)))
        started, seen = time.monotonic(), 0
        losses: list[float] = []
        stopped = hit = False
        steps_per_epoch = len(plan) / max(self.params.epochs, 1e-9)
        self.model.train()
        for step, batch in enumerate(plan, start=1):
            factor = lr_factor(step - 1, len(plan), warmup, self._time_fraction(started))
            for group in optimizer.param_groups:
                group["lr"] = self.params.learning_rate * factor
            losses.append(self._step([rows[i] for i in batch], optimizer))
            seen += len(batch)
            if self._due_snapshot(step, len(plan), started):
                self.average.add()
            elapsed = time.monotonic() - started
            self._report(step, len(plan), step / steps_per_epoch, losses, elapsed)
            if self._due_eval(step) and self._evaluate(step):
                stopped = True
                break
            if self.params.max_seconds is not None and elapsed >= self.params.max_seconds and step < len(plan):
                hit = True
                log.warning("training stopped at step %d of %d: max_seconds=%s reached",
                            step, len(plan), self.params.max_seconds)
                break
        self._finish(len(losses))
        return TrainResult(
            steps=len(losses), total_steps=len(plan), examples_seen=seen, train_seconds=time.monotonic() - started,
            final_loss=float(np.mean(losses[-50:])) if losses else float("nan"), stopped_early=stopped,
            hit_budget=hit, best_step=self.best_step, best_eval=self.best_eval, averaged=self.average.count,
            losses=losses,
        )

    def _due_snapshot(self, step: int, total: int, started: float) -> bool:
        """Within the averaged share of the run (by steps or by the time budget, whichever is further)."""
        if self.params.average_last <= 0.0 or step % max(1, self.params.average_every):
            return False
        return max(step / total, self._time_fraction(started)) >= 1.0 - self.params.average_last

    def _time_fraction(self, started: float) -> float:
        if not self.params.max_seconds:
            return 0.0 if self.params.max_seconds is None else 1.0
        return (time.monotonic() - started) / self.params.max_seconds

    def _step(self, batch: list[Row], optimizer: Any) -> float:
        ids, mask = _pad([r[0] for r in batch], self.pad_id, self.device)
        targets = torch.tensor([r[1] for r in batch], dtype=torch.long, device=self.device)
        width = self.model.config.num_labels
        soft = torch.tensor([r[2] or (0.0,) * width for r in batch], dtype=torch.float32, device=self.device)
        has_soft = torch.tensor([r[2] is not None for r in batch], dtype=torch.bool, device=self.device)
        logits = self.model(input_ids=ids, attention_mask=mask).logits
        loss = distillation_loss(logits.float(), targets, soft, has_soft, self.params.distill_weight,
                                 self.params.distill_temperature)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.params.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    def _report(self, step: int, total: int, epoch: float, losses: list[float], elapsed: float) -> None:
        if self.progress is None:
            return
        eta = elapsed / step * (total - step)
        if self.params.max_seconds is not None:
            eta = min(eta, max(0.0, self.params.max_seconds - elapsed))
        loss = float(np.mean(losses[-20:]))
        self.progress(TrainProgress(step=step, total_steps=total, epoch=epoch, loss=loss, elapsed_s=elapsed, eta_s=eta))

    def _due_eval(self, step: int) -> bool:
        return bool(self.eval_examples and self.params.eval_every and step % self.params.eval_every == 0)

    def _evaluate(self, step: int) -> bool:
        """Score the eval set, save when it is the best so far; True when patience has run out."""
        classifier = SentimentClassifier.from_model(self.model, self.tokenizer, device=self.device)
        metrics = evaluate(classifier, self.eval_examples)
        self.model.train()
        key = (metrics["accuracy"], -metrics["log_loss"])
        log.info("step %d: eval accuracy=%.4f log_loss=%.4f", step, metrics["accuracy"], metrics["log_loss"])
        if self.best_key is None or key > self.best_key:
            self.best_key, self.best_step, self.best_eval, self.bad_evals = key, step, metrics, 0
            self._save()
            return False
        self.bad_evals += 1
        return self.params.patience is not None and self.bad_evals >= self.params.patience

    def _finish(self, steps: int) -> None:
        """Leave the right checkpoint in out_dir: the best evaluated one, or the last (averaged) one without
        evaluation. The averaged weights replace the last ones before that last evaluation."""
        if self.average.count:
            log.info("averaged the weights of the last %d snapshots", self.average.count)
            self.average.apply()
        if not self.eval_examples:
            self._save()
        elif self.best_step != steps and not (self.params.patience and self.bad_evals >= self.params.patience):
            self._evaluate(steps)
        self.model.eval()

    def _save(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with quiet_transformers():
            self.model.save_pretrained(self.out_dir)
            self.tokenizer.save_pretrained(self.out_dir)


class WeightAverage:
    """The running mean of a model's floating-point parameters and buffers over the snapshots `add` takes."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.count = 0
        self.mean: dict[str, torch.Tensor] = {}

    def add(self) -> None:
        self.count += 1
        with torch.no_grad():
            for name, value in self.model.state_dict().items():
                if not value.is_floating_point():
                    continue
                if name not in self.mean:
                    self.mean[name] = value.detach().clone()
                else:
                    self.mean[name] += (value.detach() - self.mean[name]) / self.count

    def apply(self) -> None:
        """Load the mean into the model (integer buffers keep their values)."""
        self.model.load_state_dict(self.mean, strict=False)


def _label_order(base_dir: Path, labels: Sequence[str]) -> list[str]:
    """The base's own label order when it already has these labels (so its trained head is kept), else `labels`."""
    config = AutoConfig.from_pretrained(base_dir, local_files_only=True)
    own = [str(config.id2label[i]) for i in sorted(config.id2label)] if getattr(config, "id2label", None) else []
    return own if sorted(own) == sorted(labels) else list(labels)


def _load_base(base_dir: Path, labels: Sequence[str]) -> tuple[Any, Any]:
    """Tokenizer and a sequence-classification model; a bare encoder gets a freshly initialised head."""
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(base_dir, local_files_only=True)
        model, info = AutoModelForSequenceClassification.from_pretrained(
            base_dir, local_files_only=True, num_labels=len(labels), output_loading_info=True,
            id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)},
            ignore_mismatched_sizes=True,
        )
    fresh = sorted(set(info.get("missing_keys", ())) | {k for k, *_ in info.get("mismatched_keys", ())})
    if fresh:
        log.info("base %s: newly initialised %s", base_dir, ", ".join(fresh))
    return tokenizer, model


def _subsample(examples: Sequence[Example], limit: int | None, seed: int) -> list[Example]:
    if limit is None or limit >= len(examples):
        return list(examples)
    return random.Random(seed).sample(list(examples), limit)


def lr_factor(step: int, total_steps: int, warmup_steps: int, time_fraction: float = 0.0) -> float:
    """Linear warm-up over warmup_steps, then linear decay reaching 0 at the last step or at the end of the
    time budget (time_fraction = elapsed / max_seconds), whichever comes first."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    by_steps = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return max(0.0, 1.0 - max(by_steps, time_fraction))


def _optimizer(model: Any, params: TrainParams) -> Any:
    """AdamW without weight decay on biases and LayerNorm weights; the learning rate is set per step."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": params.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=params.learning_rate)


def _pad(rows: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad_id] * (width - len(r)) for r in rows], dtype=torch.long, device=device)
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], dtype=torch.long, device=device)
    return ids, mask


def evaluate(classifier: Classifier, examples: Sequence[Example]) -> dict[str, Any]:
    """Accuracy, macro-F1, log loss, ECE (15 bins, top-class probability) and confusion of classifier on examples."""
    predictions = classifier.predict([e.text for e in examples])
    return score_predictions(predictions, [e.label for e in examples])


def score_predictions(predictions: Sequence[Prediction], gold: Sequence[str]) -> dict[str, Any]:
    """The metrics of `evaluate` for predictions already made; gold[i] is the true label of predictions[i]."""
    if not predictions or len(predictions) != len(gold):
        raise ValueError(f"need as many predictions as gold labels (>0), got {len(predictions)} and {len(gold)}")
    labels = _metric_labels(predictions, gold)
    confusion = {t: {p: 0 for p in labels} for t in labels}
    for pred, true in zip(predictions, gold, strict=True):
        confusion[true][pred.label] += 1
    n = len(gold)
    return {
        "n": n,
        "accuracy": sum(confusion[t][t] for t in labels) / n,
        "macro_f1": _macro_f1(confusion, labels),
        "log_loss": calibration.log_loss(predictions, gold),
        "ece": expected_calibration_error(predictions, gold),
        "confusion": confusion,
    }


def expected_calibration_error(predictions: Sequence[Prediction], gold: Sequence[str], bins: int = ECE_BINS) -> float:
    """backend.calibration.ece on the top-class probability: Σ_bins |accuracy − mean confidence| × share of rows."""
    return calibration.ece([p.score for p in predictions],
                           [p.label == t for p, t in zip(predictions, gold, strict=True)], bins)


def _metric_labels(predictions: Sequence[Prediction], gold: Sequence[str]) -> list[str]:
    labels = list(predictions[0].probs)
    for label in [*gold, *(p.label for p in predictions)]:
        if label not in labels:
            labels.append(label)
    return labels


def _macro_f1(confusion: dict[str, dict[str, int]], labels: list[str]) -> float:
    scores = []
    for label in labels:
        tp = confusion[label][label]
        predicted = sum(confusion[t][label] for t in labels)
        actual = sum(confusion[label].values())
        if predicted + actual:  # a label nobody predicted and nothing is has no F1 to average
            scores.append(2 * tp / (predicted + actual))
    return float(np.mean(scores))
