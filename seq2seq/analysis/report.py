"""Compare the runs of a sweep: one row per setting, mean ± std over seeds, a table and a chart.

A *job* is a run dir: its `.hydra/overrides.yaml` says what it changed and its `results.json`
(written by the trainer at the end) what it scored. Jobs whose overrides are equal once the seed
and the path-only keys are dropped form one *setting*; the report aggregates each setting over its
seeds, since reruns of one model drift by about a BLEU point and a single run proves little.
"""

from __future__ import annotations

import logging
import re
import statistics
import textwrap
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser

from seq2seq.analysis.run_dir import (
    ATTENTION_METRICS,
    METRICS,
    format_duration,
    metric_value,
    read_overrides,
    read_results,
)
from seq2seq.analysis.sentence_figures import FILE as FIGURES_FILE
from seq2seq.analysis.sentence_figures import joined, paired_p_value, read_figures
from seq2seq.config import is_path_key
from seq2seq.cpu_load import BUSY_CORES
from seq2seq.errors import ReportError
from seq2seq.machine import recorded_machine

log = logging.getLogger(__name__)

# Overrides that do not change what is trained: where the data or the outputs live, which
# checkpoint a run resumed from. `seed` is what a setting is averaged over.
IGNORED_KEYS = ("seed",)  # and seq2seq.config.PATH_KEYS
IGNORED_PREFIXES = ("hydra.", "hydra/")

SCORES = ("test_bleu", "test_chrf", "val_bleu", "val_chrf")
BOLD = (*SCORES, "tokens_per_s")
TIMING = ("tokens_per_s", "train_seconds")  # what other processes' CPU use changes
LOADED = "†"  # marks timing measured while other processes used BUSY_CORES or more


@dataclass(frozen=True)
class Job:
    """One run dir of a sweep; `results` is None when it has no readable results.json."""

    path: Path
    overrides: tuple[str, ...] | None  # as in .hydra/overrides.yaml; None for a run outside Hydra
    setting: tuple[str, ...]  # the overrides that define what was trained (seed, paths dropped)
    seed: int | None
    results: dict[str, Any] | None
    problem: str | None = None  # why results is None


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation over seeds (std is None with one seed)."""

    mean: float
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        std = statistics.stdev(values) if len(values) > 1 else None
        return cls(statistics.fmean(values), std, len(values))


@dataclass(frozen=True)
class Versus:
    """A setting's test BLEU against the best setting's, over the paired runs (see
    `test_against_best`)."""

    delta: float  # its BLEU minus the best's, both on the paired runs' joined outputs
    # None when both score the same: sacreBLEU's test then says p=0.001, as if no difference
    # at all were a significant one (its p counts resamples that differ by more than observed)
    p_value: float | None


@dataclass
class Setting:
    """The jobs that differ only in their seed, and their aggregated results."""

    setting: tuple[str, ...]
    label: str
    jobs: list[Job]
    stats: dict[str, Stat] = field(default_factory=dict)
    # the paired bootstrap test of its test BLEU against the best setting (see
    # `test_against_best`): "best" for the best itself; None if untested
    versus_best: Versus | str | None = None
    # per attention column, the p-value of its val figure against the best setting's (see
    # `test_attention_against_best`; None: the same figure); absent where untested
    attention_p: dict[str, float | None] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int | None]:
        return [job.seed for job in self.jobs]

    @property
    def loads(self) -> list[float | None]:
        """Each run's other_busy_cores: the CPU other processes used while it trained (None
        where results.json does not say: runs from before the trainer recorded it)."""
        return [recorded_load(job.results) for job in self.jobs]


def recorded_load(results: dict[str, Any]) -> float | None:
    value = results.get("other_busy_cores")
    return float(value) if isinstance(value, int | float) else None


@dataclass
class Report:
    root: Path
    settings: list[Setting]
    missing: list[Job]
    common: tuple[str, ...]  # overrides shared by every finished run
    notes: list[str]


# ---- reading a sweep ------------------------------------------------------------------------


def find_jobs(root: Path, ignore: Iterable[str] = ()) -> list[Job]:
    """Every run dir under `root` (at any depth) with a results.json or .hydra/overrides.yaml.

    A job without results.json (failed, killed or still running) or with an unreadable one is
    returned with `results=None` and the reason in `problem`.
    """
    root = Path(root)
    if not root.is_dir():
        raise ReportError(f"{root} is not a directory: pass the sweep dir of `train.py -m` "
                          f"(hydra.sweep.dir, e.g. multirun/DATE/TIME)")
    dirs = {p.parent for p in root.rglob("results.json")}
    dirs |= {p.parent.parent for p in root.rglob(".hydra/overrides.yaml")}
    if not dirs:
        raise ReportError(f"no run found under {root}: no results.json and no "
                          f".hydra/overrides.yaml (is it the sweep dir of `train.py -m`?)")
    ignored = (*IGNORED_KEYS, *ignore)
    return [read_job(path, root, ignored) for path in sorted(dirs, key=natural_key)]


def read_job(path: Path, root: Path, ignored: Sequence[str] = IGNORED_KEYS) -> Job:
    try:
        overrides = read_overrides(path)
        parsed = OverridesParser.create().parse_overrides(list(overrides or ()))
    except Exception as error:  # noqa: BLE001 - bad YAML, not a list, an unparsable override
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        return Job(path, None, (f"run={path.relative_to(root)}",), None, None,
                   f"unreadable .hydra/overrides.yaml ({reason})")
    # sorted, as Hydra's override_dirname: `a=1 b=2` and `b=2 a=1` train the same model
    setting = tuple(sorted(o.input_line for o in parsed
                           if not is_ignored(o.key_or_group, ignored)))
    if overrides is None:  # not started by Hydra: nothing says what it shares with the others
        setting = (f"run={path.relative_to(root)}",)
    seed_values = [o.value() for o in parsed if o.key_or_group == "seed"]
    seed = int(seed_values[-1]) if seed_values and str(seed_values[-1]).isdigit() else None
    results, problem = read_results(path / "results.json")
    if results is not None:
        seed = results.get("seed", seed)
    return Job(path, overrides, setting, seed, results, problem)


def is_ignored(key: str, ignored: Sequence[str]) -> bool:
    return key in ignored or is_path_key(key) or key.startswith(IGNORED_PREFIXES)


def natural_key(path: Path) -> list[Any]:
    """`2_x` before `10_x`: Hydra numbers jobs without padding."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


# ---- aggregating --------------------------------------------------------------------------


def build_report(root: Path, ignore: Iterable[str] = ()) -> Report:
    """Group the jobs under `root` by setting and aggregate each over its seeds."""
    jobs = find_jobs(root, ignore)
    done = [job for job in jobs if job.results is not None]
    if not done:
        first = jobs[0]
        raise ReportError(f"none of the {len(jobs)} runs under {root} has finished with usable "
                          f"results (the first, {first.path}: {first.problem})")
    # labels come from the finished runs: a stray unfinished one must not change them
    common = common_overrides([job.setting for job in done])
    groups: dict[tuple[str, ...], list[Job]] = {}
    for job in done:
        groups.setdefault(job.setting, []).append(job)
    settings = [aggregate(key, label(key, common), members) for key, members in groups.items()]
    missing = [job for job in jobs if job.results is None]
    notes = consistency_notes(settings)
    notes += test_against_best(settings)
    notes += test_attention_against_best(settings)
    return Report(Path(root), settings, missing, common, notes)


def common_overrides(settings: Sequence[tuple[str, ...]]) -> tuple[str, ...]:
    shared = set.intersection(*(set(s) for s in settings)) if settings else set()
    return tuple(o for o in settings[0] if o in shared) if settings else ()


def label(setting: tuple[str, ...], common: tuple[str, ...]) -> str:
    """What sets this setting apart from the others: its overrides minus the shared ones."""
    own = [o for o in setting if o not in common]
    if own:
        return ", ".join(own)
    return "(common overrides only)" if common else "(no overrides)"


def aggregate(setting: tuple[str, ...], name: str, jobs: list[Job]) -> Setting:
    stats = {key: Stat.of([metric_value(job.results, keys) for job in jobs])
             for key, (_, keys, _) in METRICS.items()}
    for key, (_, keys) in ATTENTION_METRICS.items():  # only when every seed's run has them
        values = [optional_value(job.results, keys) for job in jobs]
        if None not in values:
            stats[key] = Stat.of(values)
    return Setting(setting, name, jobs, stats)


def optional_value(results: dict[str, Any], keys: Sequence[str]) -> float | None:
    """A figure that older runs' results.json lack (None then, or when it is not a number)."""
    try:
        return metric_value(results, keys)
    except (KeyError, TypeError, ValueError):
        return None


def consistency_notes(settings: Sequence[Setting]) -> list[str]:
    """Warnings about comparisons that would mislead: repeated seeds, different test sets."""
    notes = []
    for setting in settings:
        seeds = [s for s in setting.seeds if s is not None]
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        if repeated:
            notes.append(f"{setting.label}: seed {', '.join(map(str, repeated))} ran more than "
                         f"once; each run counts in the mean")
    for what in ("split", "beam_size"):
        values = sorted({str(job.results["test"].get(what)) for s in settings for job in s.jobs})
        if len(values) > 1:
            notes.append(f"the runs differ in test {what} ({', '.join(values)}): their test "
                         f"scores are not comparable")
    return notes


# ---- significance ---------------------------------------------------------------------------

BOOTSTRAP_SAMPLES = 1000
SIGNIFICANCE_LEVEL = 0.05
DIFFERS = "‡"  # marks an attention figure that differs significantly from the best setting's


def test_against_best(settings: Sequence[Setting]) -> list[str]:
    """Test each setting's test BLEU against the best setting's (the highest mean) with
    sacreBLEU's paired bootstrap resampling (Koehn 2004; 1000 resamples, sacreBLEU's fixed
    seed) on the runs' saved test translations, and set `versus_best`. Returns notes on what
    could not be tested.

    With several seeds, each setting's runs of the seeds that every setting ran
    (`paired_seeds`) are joined, in seed order, into one output of that many test sets: the
    run of a seed is paired with the best setting's run of the same seed, and the resampling
    sees seed-to-seed variation as well as sentence-to-sentence variation.
    """
    from sacrebleu.metrics import BLEU
    from sacrebleu.significance import PairedTest

    if len(settings) < 2:
        return []
    seeds = paired_seeds(settings)
    if not seeds:
        ran = "; ".join(f"{s.label}: {', '.join(map(str, s.seeds))}" for s in settings)
        return [f"no significance test: no seed ran in every setting ({ran})"]
    outputs: list[list[str]] = []
    references: list[str] | None = None
    for setting in settings:
        joined: list[str] = []
        for seed in seeds:
            job = next(job for job in setting.jobs if job.seed == seed)  # a repeat sits out
            read = read_test_output(job)
            if isinstance(read, str):
                return [f"no significance test: {read}"]
            hypotheses, job_references = read
            if references is None:
                references = job_references
            elif job_references != references:
                return [f"no significance test: {job.path} was tested on other references "
                        "than the other runs"]
            joined += hypotheses
        outputs.append(joined)
    best = best_by_bleu(settings)
    order = [best, *(i for i in range(len(settings)) if i != best)]
    test = PairedTest([(settings[i].label, outputs[i]) for i in order], {"BLEU": BLEU()},
                      [references * len(seeds)], test_type="bs", n_samples=BOOTSTRAP_SAMPLES)
    _, results = test()
    best_bleu = results["BLEU"][0].score
    for index, result in zip(order, results["BLEU"], strict=True):
        delta = result.score - best_bleu
        settings[index].versus_best = "best" if index == best else \
            Versus(delta, float(result.p_value) if delta != 0 else None)
    return []


def test_attention_against_best(settings: Sequence[Setting]) -> list[str]:
    """Test each setting's val attention figures (the report's attention columns) against the
    best setting's (by test BLEU, as vs best) by paired bootstrap resampling of the val
    sentences of the paired runs' final models (their val.attention.tsv, joined over the paired
    seeds as vs best joins the test outputs), and set `attention_p`. Returns notes on what could
    not be tested."""
    keys = [key for key in ATTENTION_METRICS if any(key in s.stats for s in settings)]
    seeds = paired_seeds(settings)
    if len(settings) < 2 or not keys or not seeds:  # test_against_best says why, if it must
        return []
    tables = []
    for setting in settings:
        runs = []
        for seed in seeds:
            job = next(job for job in setting.jobs if job.seed == seed)
            table = read_figures(job.path / FIGURES_FILE)
            if isinstance(table, str):
                return [f"no significance test of the attention columns: {table}"]
            runs.append(table)
        tables.append(joined(runs))
    if len({len(table["target_tokens"]) for table in tables}) > 1:
        return ["no significance test of the attention columns: the runs' val splits differ "
                "in length"]
    best = best_by_bleu(settings)
    for index, setting in enumerate(settings):
        for key in keys:
            if index != best and key in setting.stats and key in settings[best].stats:
                setting.attention_p[key] = paired_p_value(tables[index], tables[best], key,
                                                          BOOTSTRAP_SAMPLES)
    return []


def best_by_bleu(settings: Sequence[Setting]) -> int:
    """The index of the setting with the highest mean test BLEU: what vs best compares with."""
    return max(range(len(settings)), key=lambda i: settings[i].stats["test_bleu"].mean)


def paired_seeds(settings: Sequence[Setting]) -> list[int]:
    """The seeds that every setting ran, in order: the runs the significance test pairs."""
    ran = [{seed for seed in setting.seeds if seed is not None} for setting in settings]
    return sorted(set.intersection(*ran)) if ran else []


def read_test_output(job: Job) -> tuple[list[str], list[str]] | str:
    """A run's test translations and references (TEST_SPLIT.hyp.txt and .ref.txt beside its
    results.json), or why they cannot be used."""
    split = job.results["test"].get("split", "test")
    files = [job.path / f"{split}.{kind}.txt" for kind in ("hyp", "ref")]
    missing = [file.name for file in files if not file.is_file()]
    if missing:
        return f"{job.path} has no {' or '.join(missing)} (runs save them since the report " \
               "tests significance)"
    hypotheses, references = (file.read_text(encoding="utf-8").splitlines() for file in files)
    if len(hypotheses) != len(references):
        return f"{job.path}: {len(hypotheses)} test translations but {len(references)} references"
    return hypotheses, references


def format_versus_best(value: Versus | str | None) -> str:
    """`-1.20, p=0.001`: which way the difference goes, and whether it is significant."""
    if value is None or isinstance(value, str):
        return value or "—"
    if value.p_value is None:
        return "0.00, the same score"
    shown = f"{value.delta:+.2f}, p={value.p_value:.3f}"
    return shown if value.p_value < SIGNIFICANCE_LEVEL else f"{shown}, n.s."


# ---- writing ------------------------------------------------------------------------------


def format_stat(stat: Stat, digits: int = 2) -> str:
    if stat.std is None:
        return f"{stat.mean:.{digits}f} (n=1)"
    return f"{stat.mean:.{digits}f} ± {stat.std:.{digits}f}"


def best_settings(settings: Sequence[Setting], key: str) -> set[int]:
    """Indices of the settings whose mean is the best at the shown precision (ties all win).

    Nothing is bold when every setting shows the same value: there is no best.
    """
    higher_is_better = METRICS[key][2]
    shown = [round(s.stats[key].mean, 2) for s in settings]
    if len(set(shown)) < 2:
        return set()
    best = max(shown) if higher_is_better else min(shown)
    return {i for i, value in enumerate(shown) if value == best}


def markdown_table(settings: Sequence[Setting]) -> str:
    """The table, and below it the footnotes that its pairing and its marks need."""
    attention = [key for key in ATTENTION_METRICS if any(key in s.stats for s in settings)]
    columns = ["setting", *(METRICS[key][0] for key in METRICS),
               *(ATTENTION_METRICS[key][0] for key in attention), "seeds", "vs best"]
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join([":---"] + ["---:"] * (len(columns) - 1)) + "|"]
    bold = {key: best_settings(settings, key) for key in BOLD}
    for index, setting in enumerate(settings):
        stats = setting.stats
        cells = {key: format_stat(stats[key]) for key in SCORES}
        cells["params"] = f"{stats['params'].mean:,.0f}"
        cells["tokens_per_s"] = f"{stats['tokens_per_s'].mean:,.0f}"
        cells["train_seconds"] = format_duration(stats["train_seconds"].mean)
        cells |= {key: format_stat(stats[key], 3) + significance_mark(setting, key)
                  if key in stats else "–" for key in attention}
        for key in BOLD:
            if index in bold[key]:
                cells[key] = f"**{cells[key]}**"
        if loaded_cores(setting):
            for key in TIMING:
                cells[key] += f" {LOADED}"
        row = [f"`{setting.label}`", *(cells[key] for key in (*METRICS, *attention)),
               str(len(setting.jobs)), format_versus_best(setting.versus_best)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join([*lines, "", *pairing_footnote(settings), *attention_footnote(settings),
                      *timing_footnote(settings)])


def significance_mark(setting: Setting, key: str) -> str:
    """" ‡" where the attention figure differs significantly from the best setting's."""
    p_value = setting.attention_p.get(key)
    return f" {DIFFERS}" if p_value is not None and p_value < SIGNIFICANCE_LEVEL else ""


def attention_footnote(settings: Sequence[Setting]) -> list[str]:
    """What the attention columns' marks mean, once they were tested."""
    if not any(setting.attention_p for setting in settings):
        return []
    best = settings[best_by_bleu(settings)]
    return [f"{DIFFERS} in an attention column: the val figure differs from that of "
            f"`{best.label}` (the best test BLEU) with p < {SIGNIFICANCE_LEVEL}, by paired "
            f"bootstrap resampling ({BOOTSTRAP_SAMPLES} resamples) of the val sentences of "
            "the paired runs' final models (each run's val.attention.tsv).", ""]


def loaded_cores(setting: Setting) -> list[float]:
    """The CPU other processes used while each of its runs that trained beside other work
    (BUSY_CORES or more) did: their timing measured that load as much as the setting."""
    return [load for load in setting.loads if load is not None and load >= BUSY_CORES]


def pairing_footnote(settings: Sequence[Setting]) -> list[str]:
    """Which runs vs best paired, and the runs it left out when the settings ran other seeds."""
    if not any(isinstance(setting.versus_best, Versus) for setting in settings):
        return []
    seeds = paired_seeds(settings)
    plural = "s" if len(seeds) > 1 else ""
    note = (f"vs best pairs each setting's run{plural} of seed{plural} "
            f"{', '.join(map(str, seeds))} with the best setting's run{plural} of the same "
            f"seed{plural}.")
    left_out = [f"`{s.label}` seed {', '.join(map(str, unpaired))}" for s in settings
                if (unpaired := [seed for seed in s.seeds if seed not in seeds])]
    if left_out:
        counts = {len(setting.jobs) for setting in settings}
        why = ("The settings ran unequal numbers of seeds (" +
               ", ".join(f"`{s.label}` {len(s.jobs)}" for s in settings) + ")"
               if len(counts) > 1 else "Not every setting ran the same seeds")
        note += (f" {why}: the mean ± std counts every run, vs best leaves out "
                 f"{'; '.join(left_out)}.")
    return [note, ""]


def timing_footnote(settings: Sequence[Setting]) -> list[str]:
    """Which machines the timing comes from, what the timing marks mean, and whether the load
    was recorded at all."""
    notes = [machines_note([job.results for setting in settings for job in setting.jobs])]
    loaded = [f"`{setting.label}` up to {max(cores):.1f} cores, in {len(cores)} of its "
              f"{len(setting.jobs)} runs" for setting in settings
              if (cores := loaded_cores(setting))]
    if loaded:
        notes.append(f"{LOADED} tokens/s and train time measured while other processes kept "
                     f"CPU cores busy (the mean over a run's training): {'; '.join(loaded)}. "
                     "They measure that load as much as the setting.")
    loads = [load for setting in settings for load in setting.loads]
    unrecorded = loads.count(None)
    if unrecorded:
        notes.append(f"Other processes' CPU use was not recorded for {unrecorded} of the "
                     f"{len(loads)} runs (their results.json is from before the trainer "
                     "recorded it): their timing is unmarked, loaded or not.")
    elif not loaded:
        notes.append(f"Timing: every run trained while other processes used under "
                     f"{BUSY_CORES} cores.")
    return [*notes, ""]


def machines_note(runs: Sequence[dict[str, Any]]) -> str:
    """`Machine: LINE.`, or each machine with its number of runs: tokens/s and train time are
    the machine's as much as the setting's."""
    lines = Counter(machine.line() if (machine := recorded_machine(results.get("machine")))
                    else None for results in runs)
    unrecorded = lines.pop(None, 0)
    before = "their results.json is from before the trainer named its machine"
    if not lines:
        return f"Machine: unknown ({before})."
    named = f"Machine: {next(iter(lines))}." if len(lines) == 1 else "Machines: " + "; ".join(
        f"{line} ({count} runs)" for line, count in lines.most_common()) + "."
    if unrecorded:
        named += f" Unknown for {unrecorded} of the {len(runs)} runs ({before})."
    return named


def describe_scores(settings: Sequence[Setting]) -> str:
    first = settings[0].jobs[0].results
    test, valid = first["test"], first["valid"]
    return (f"test: {test.get('split', '?')}, beam {test.get('beam_size', '?')}, best "
            f"checkpoint; val: {valid.get('split', '?')}, beam {valid.get('beam_size', '?')}, "
            f"the best score during training (it chose the checkpoint, so it is optimistic).")


def markdown_report(report: Report, chart: str | None = None) -> str:
    settings, jobs = report.settings, sum(len(s.jobs) for s in report.settings)
    lines = [f"# Ablation report: `{report.root}`", ""]
    summary = f"{len(settings)} settings from {jobs} finished runs"
    if report.missing:
        summary += f" ({len(report.missing)} more without results, listed below)"
    lines.append(summary + ".")
    if report.common:
        lines.append("Common to every run: " + ", ".join(f"`{o}`" for o in report.common) + ".")
    lines += [
        "",
        "Scores are the mean ± sample standard deviation over seeds (sacreBLEU, detokenized, "
        "cased); " + describe_scores(settings) + " Best in bold; train time excludes evaluation. "
        "vs best: the difference in test BLEU from the best setting, + for higher, and its "
        "p-value from sacreBLEU's paired bootstrap resampling against the best setting "
        f"({BOOTSTRAP_SAMPLES} resamples; both on the paired runs' test outputs joined, see "
        f"below the table); n.s. marks a difference that is not significant "
        f"(p >= {SIGNIFICANCE_LEVEL}).",
        "",
        markdown_table(settings),
    ]
    signatures = {job.results["test"].get("signatures", {}).get(name)
                  for s in settings for job in s.jobs for name in ("bleu", "chrf")}
    signatures.discard(None)
    if signatures:
        lines += ["sacreBLEU signatures: " + "; ".join(f"`{s}`" for s in sorted(signatures)), ""]
    if report.notes:
        lines += ["Warnings:", *(f"- {note}" for note in report.notes), ""]
    if report.missing:
        lines += ["## Runs without results", ""]
        lines += [f"- `{job.path.relative_to(report.root)}`: {job.problem}"
                  for job in report.missing]
        lines.append("")
    if chart:
        lines += [f"![BLEU and chrF per setting]({chart})", ""]
    return "\n".join(lines)


def plot_report(settings: Sequence[Setting], path: Path) -> Path:
    """report_figure as a PNG file."""
    report_figure(settings).savefig(path, dpi=120)
    return path


def report_figure(settings: Sequence[Setting]):
    """Bars of test and val BLEU and chrF per setting, with the std over seeds as error bars."""
    import matplotlib

    matplotlib.use("Agg")  # headless: the chart goes to a file
    from matplotlib.figure import Figure

    labels = [textwrap.fill(s.label, 28) for s in settings]
    width = 0.38
    panel_width = min(max(5.0, 0.9 * len(settings) + 2.0), 16.0)
    # constrained: the legend goes above the panels, where it covers no bar
    figure = Figure(figsize=(2 * panel_width, 4.5), layout="constrained")
    for column, metric in enumerate(("bleu", "chrf")):
        axes = figure.add_subplot(1, 2, column + 1)
        for offset, split in ((-width / 2, "test"), (width / 2, "val")):
            stats = [s.stats[f"{split}_{metric}"] for s in settings]
            positions = [i + offset for i in range(len(settings))]
            axes.bar(positions, [s.mean for s in stats], width, label=split)
            spread = [(x, s) for x, s in zip(positions, stats, strict=True) if s.std is not None]
            if spread:  # one seed has no spread: no error bar rather than a zero-width one
                # a score is never below 0: the bar of the spread stops there
                below = [min(s.std, s.mean) for _, s in spread]
                axes.errorbar([x for x, _ in spread], [s.mean for _, s in spread],
                              yerr=[below, [s.std for _, s in spread]], fmt="none", capsize=4,
                              ecolor="black", elinewidth=1)
        axes.set_xticks(range(len(settings)), labels=labels, rotation=20, ha="right",
                        fontsize=8)
        axes.set_ylabel("BLEU" if metric == "bleu" else "chrF")
        one_seed = all(s.stats[f"test_{metric}"].n == 1 for s in settings)
        spread = "one seed each" if one_seed else "mean ± std over seeds"
        axes.set_title(f"{'BLEU' if metric == 'bleu' else 'chrF'} ({spread})", fontsize=10)
        axes.grid(axis="y", alpha=0.3)
    figure.legend(*axes.get_legend_handles_labels(), loc="outside upper center", ncols=2,
                  fontsize=8)
    return figure


def write_report(report: Report, output_dir: Path, plot: bool = True) -> dict[str, Path]:
    """Write report.md (and report.png) into `output_dir`; returns the written paths."""
    output_dir = Path(output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ReportError(f"cannot write the report into {output_dir}: "
                          f"{error.strerror or error}") from None
    written = {}
    if plot:
        written["chart"] = plot_report(report.settings, output_dir / "report.png")
    markdown = markdown_report(report, chart="report.png" if plot else None)
    written["markdown"] = output_dir / "report.md"
    written["markdown"].write_text(markdown, encoding="utf-8")
    return written
