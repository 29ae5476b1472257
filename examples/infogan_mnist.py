"""InfoGAN on MNIST (Chen et al. 2016): train, then write figures, a checkpoint and metrics.json.

    python examples/infogan_mnist.py --split test --steps 5000 --out runs/infogan
    python examples/infogan_mnist.py --baseline --out runs/gan   # the plain-GAN baseline
    python examples/infogan_mnist.py --split test --consistency 1 --out runs/infogan_consistency

Defaults are the paper's: Adam (beta1 0.5), lr 2e-4 for D/Q and 1e-3 for G, lambda 1, batch 128,
5,000 steps, one Cat(10) and two U(-1, 1) codes beside 62 noise dims. --consistency W adds an
augmentation-consistency term on Q's categorical code for real images (off by default). Every
--select-every steps the state is scored without labels on the validation images and the best
one kept in best.npz; metrics.json reports the final and that selected state.

Below ``main`` (the flags): InfoGAN's run (``run_infogan``), the label-free selection and the
paper's figures; the evaluation protocol is ``tinygan.evaluation``'s, the shared run
``tinygan.runner``'s.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from tinygan import cli, evaluation, runner, viz
from tinygan.checkpoints import BestCheckpoint
from tinygan.models.infogan import (
    CONSISTENCY_OBJECTIVES,
    DEFAULT_CONSISTENCY_OBJECTIVE,
    InfoGAN,
    LatentSpec,
    sweep_latents,
)


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    cli.add_common_flags(parser, out="runs/infogan")
    weight = cli.real(0.0)
    parser.add_argument(
        "--lambda-cat", type=weight, default=1.0, help="weight of L_I's categorical part"
    )
    parser.add_argument(
        "--lambda-cont", type=weight, default=0.1, help="weight of L_I's continuous part"
    )
    parser.add_argument(
        "--baseline", action="store_true", help="do not reward G with L_I (plain GAN + Q)"
    )
    parser.add_argument(
        "--consistency",
        type=weight,
        default=0.0,
        metavar="W",
        help="weight of the augmentation-consistency term on Q's categorical code for real "
        "images (0, the default: the paper's recipe)",
    )
    parser.add_argument(
        "--consistency-objective",
        choices=CONSISTENCY_OBJECTIVES,
        default=DEFAULT_CONSISTENCY_OBJECTIVE,
        help=f"the loss of the term (default {DEFAULT_CONSISTENCY_OBJECTIVE}): iic is minus "
        "IIC's mutual information between Q(c|x) and Q(c|T(x)); kl their symmetric KL minus "
        "IMSAT's mutual information H(mean p) - mean H(p)",
    )
    parser.add_argument(
        "--select-every",
        type=cli.integer(0),
        default=500,
        metavar="K",
        help="score the model every K steps by IIC's mutual information on the validation "
        "images (no labels) and keep the best state in best.npz (0: off)",
    )
    parser.add_argument(
        "--compare",
        metavar="RUN_DIR",
        type=cli.run_folder("history.json"),
        help="a baseline run to draw in Figure 1 too",
    )
    return run_infogan(cli.parse(parser, argv))


def baseline_history(run: Path) -> list[dict[str, float]]:
    """The history of a finished baseline run (``--compare``): its ``history.json``, which must
    be a list of steps with ``info_cat`` (``cli.UsageError`` if it is not)."""
    path = Path(run) / "history.json"
    try:
        history = json.loads(path.read_text())
        if not history or not all({"step", "info_cat"} <= set(h) for h in history):
            raise ValueError("not a list of steps with 'step' and 'info_cat'")
    except (OSError, ValueError, TypeError) as e:
        raise cli.UsageError(
            f"--compare {run}: {path} is not an InfoGAN or baseline history ({e})"
        ) from None
    return history


def run_infogan(args: argparse.Namespace) -> int:
    """Train InfoGAN (or the baseline) as the flags say; write figures, checkpoint, metrics.

    With ``--select-every K`` (K > 0) the state to report is also chosen without labels
    (``infogan_selection``): ``metrics.json`` then holds the final state's numbers at its top
    level and the selected state's under ``"selected"``, and ``selected/`` its figures."""
    device = cli.pick_device(args.device)
    spec = LatentSpec()
    with cli.flag_errors():  # the model checks its options (e.g. --consistency) before any data
        model = InfoGAN(
            spec,
            lambda_cat=args.lambda_cat,
            lambda_cont=args.lambda_cont,
            info_in_g=not args.baseline,
            seed=args.seed,
            device=device,
            consistency=args.consistency,
            consistency_objective=args.consistency_objective,
        )
    baseline = None if args.compare is None else baseline_history(args.compare)
    cli.check_classifier(args)
    runner.tune_allocator()
    splits = evaluation.load_splits(args.dataset, args.split, args.data_dir)
    images, labels = splits.train
    cli.check_batch(args.batch_size, images, model)
    with runner.make_out(args) as out:
        name = "GAN baseline (Q trained, G not rewarded)" if args.baseline else "InfoGAN"
        if model.consistency:
            name += f" + consistency {model.consistency:g} ({model.consistency_objective})"
        print(
            f"{name}: {args.dataset} {args.split} ({len(images)} images), device {device}, "
            f"{args.steps} steps of batch {args.batch_size}, seed {args.seed}, writing to {out}"
        )
        best = infogan_selection(model, splits, args.select_every, args.seed, out)
        history = runner.fit(model, images, args, args.batch_size, splits.train_name, best)
        if isinstance(history, int):
            return history
        seconds = history[-1].get("seconds", math.nan) if history else 0.0
        runner.write_json(out / "history.json", history)

        result = evaluation.code_accuracy(model, *splits.test)
        on_training_images = evaluation.code_accuracy(model, images, labels)
        info = [h["info_cat"] for h in history]
        summary = {
            "model": "gan" if args.baseline else "infogan",
            "accuracy": result["accuracy"],
            "info_cat_at_1000": float(np.mean(info[990:1000])) if len(info) >= 1000 else None,
            "info_cat_final": float(np.mean(info[-10:])),
            "info_cat_ceiling": spec.categorical_entropy,
            "accuracy_on_training_images": on_training_images["accuracy"],
            **runner.evaluate_samples(model, splits, args),
            "splits": splits.description,
            "train_seconds": seconds,
            "flags": {k: v for k, v in vars(args).items() if k != "compare"},
            "device": device,  # what "auto" resolved to
            **result,
        }
        paths = []
        if runner.is_main():  # under mpiexec the models are equal: rank 0 draws
            paths = write_figures(model, history, result, out, args.seed, baseline)
        print(
            f"accuracy {result['accuracy']:.4f}, L_I {summary['info_cat_final']:.3f} of "
            f"{spec.categorical_entropy:.3f} nats, Parzen {summary['parzen']['mean']:.1f} nats, "
            f"{seconds:.0f} s"
        )
        if best is not None:  # last: it loads the selected state into the model
            summary.update(
                evaluate_selected(model, best, history, splits, args, out, summary, baseline)
            )
            selected = summary["selected"]
            print(
                f"selected (label-free, step {selected['step']} of {args.steps}): accuracy "
                f"{selected['accuracy']:.4f}, Parzen {selected['parzen']['mean']:.1f} nats"
            )
            paths += [best.path, out / "selected"]
        runner.write_json(out / "metrics.json", summary)
        print(
            "wrote",
            ", ".join(str(p) for p in [out / "metrics.json", out / "checkpoint.npz", *paths]),
        )
        return 0


def infogan_selection(
    model: InfoGAN, splits: evaluation.Splits, every: int, seed: int, out: Path
) -> BestCheckpoint | None:
    """Label-free model selection for InfoGAN (None if ``every`` is 0): every ``every`` steps,
    IIC's mutual information between Q's categorical code on the validation images and on
    copies of them moved by the model's random affine maps (``model.augment``, drawn once from
    ``[seed, 4]``: every evaluation scores the same pairs). The labels are never read; the best
    state goes to ``out/best.npz``."""
    if not every:
        return None
    images = splits.validation[0]
    moved = model.augment(images, np.random.default_rng([seed, 4]))
    return BestCheckpoint(lambda: model.consistency_score(images, moved), out / "best.npz", every)


def evaluate_selected(
    model: InfoGAN,
    best: BestCheckpoint,
    history: list[dict],
    splits: evaluation.Splits,
    args: argparse.Namespace,
    out: Path,
    final: dict[str, Any],
    baseline: list[dict[str, float]] | None,
) -> dict[str, Any]:
    """Load the selected state (``best.load()``: this run's, of the selected step) into
    ``model`` and score it as the final one (test and training accuracy, L_I, Parzen, classifier
    score; figures in ``out/selected``): ``{"selection": how it was chosen, "selected": its
    numbers}``. Where the final state is the selected one, it is the model's own (``best.path``
    is not read) and ``final``'s numbers (the run's summary) are reused."""
    step, score = best.best
    if step != len(history):
        model.load_state_dict(best.load())
    result = evaluation.code_accuracy(model, *splits.test)
    info = [h["info_cat"] for h in history[:step]]
    selected = {"step": step, "score": score, "info_cat": float(np.mean(info[-10:])), **result}
    same = ("accuracy_on_training_images", "parzen", "classifier_score",
            "classifier_test_accuracy", "sample_class_counts")  # fmt: skip
    if step == len(history):  # the final state: its numbers are already known
        selected.update({k: final[k] for k in same})
    else:
        on_training_images = evaluation.code_accuracy(model, *splits.train)
        selected["accuracy_on_training_images"] = on_training_images["accuracy"]
        selected.update(runner.evaluate_samples(model, splits, args))
    if runner.is_main():
        write_figures(model, history, result, out / "selected", args.seed, baseline)
    return {
        "selection": {
            "criterion": "IIC mutual information (nats) of Q's categorical code between the "
            "validation images and randomly moved copies; labels unused",
            "every": best.every,
            "scores": [list(s) for s in best.scores],
        },
        "selected": selected,
    }


def write_figures(
    model: InfoGAN,
    history: list[dict[str, float]],
    result: dict[str, Any],
    out: Path,
    seed: int,
    baseline: list[dict[str, float]] | None,
) -> list[Path]:
    """The paper's Figure 2 (one grid per continuous code), Figure 1 (L_I, beside the
    ``baseline`` run's history if there is one), losses, samples, and the confusion matrix
    (``result``: ``evaluation.code_accuracy``'s); the files."""
    spec = model.spec
    label_of = result["category_to_label"]
    # rows in digit order: the category matched to label 0 first (unmatched categories last)
    order = sorted(range(spec.categorical[0]), key=lambda c: label_of.get(c, 99))
    row_names = [f"c={c} ({label_of[c]})" if c in label_of else f"c={c}" for c in order]
    values = np.linspace(-2, 2, 10)
    paths = []
    for j in range(spec.continuous):
        latent = sweep_latents(spec, j, order, values, np.random.default_rng(seed))
        grid = model.generate(latent).reshape(len(order), len(values), 28, 28)
        paths.append(
            viz.image_grid(
                out / f"figure2_code{j + 1}.png",
                grid,
                row_labels=row_names,
                col_labels=[f"{v:.1f}" for v in values],
                xlabel=f"continuous code c{j + 2} from -2 to 2",
                title=f"varying c{j + 2}, one row per category (matched digit)",
            )
        )
    steps = [h["step"] for h in history]
    series = {"InfoGAN" if model.info_in_g else "GAN": (steps, [h["info_cat"] for h in history])}
    if baseline is not None:
        series["GAN baseline"] = ([h["step"] for h in baseline], [h["info_cat"] for h in baseline])
    paths.append(
        viz.curves(
            out / "figure1_info.png",
            series,
            title="lower bound L_I of I(c; G(z, c))",
            ylabel="L_I (nats)",
            hlines={"H(c) = ln 10": spec.categorical_entropy},
        )
    )
    paths.append(
        viz.curves(
            out / "losses.png",
            {k: (steps, [h[k] for h in history]) for k in ("d_loss", "g_loss")},
            title="GAN losses",
            ylabel="loss",
        )
    )
    rng = np.random.default_rng(seed + 1)
    latent = spec.sample(len(order) * 10, rng)
    latent.categories[:, 0] = np.repeat(order, 10)
    samples = model.generate(latent).reshape(len(order), 10, 28, 28)
    paths.append(
        viz.image_grid(
            out / "samples.png",
            samples,
            row_labels=row_names,
            title="samples: one row per category",
        )
    )
    paths.append(
        viz.confusion(
            out / "confusion.png",
            np.array(result["confusion"]),
            title=f"accuracy {result['accuracy']:.3f}",
            xlabel="category of c1 (Q's argmax)",
            ylabel="true label",
        )
    )
    return paths


if __name__ == "__main__":
    sys.exit(cli.run(main))
