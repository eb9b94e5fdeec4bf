"""seq2seq.analysis.report and scripts/report.py on synthetic sweep dirs (no training)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from seq2seq.analysis.report import (
    Versus,
    build_report,
    find_jobs,
    markdown_report,
    markdown_table,
    report_figure,
)
from seq2seq.analysis.run_dir import read_results
from seq2seq.cli.report import main
from seq2seq.errors import ReportError

SIGNATURE = "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"


def make_job(root: Path, name: str, overrides: list[str], test_bleu: float | None = None,
             seed: int = 1, **fields) -> Path:
    """A run dir as train.py -m leaves it; no results.json when test_bleu is None."""
    job = root / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if test_bleu is not None:
        results = {
            "seed": seed,
            "parameters": {"total": fields.get("params", 1000)},
            "tokens_per_s": fields.get("tokens_per_s", 5000.0),
            "train_seconds": fields.get("train_seconds", 60.0),
            "valid": {"split": "val", "beam_size": 1, "bleu": fields.get("val_bleu", test_bleu),
                      "chrf": 50.0},
            "test": {"split": fields.get("test_split", "test_2016_flickr"), "beam_size": 5,
                     "bleu": test_bleu, "chrf": fields.get("test_chrf", 55.0),
                     "signatures": {"bleu": SIGNATURE}},
        }
        if "attention" in fields:  # the final model's attention statistics, since issue 33
            results["valid"]["attention"] = fields["attention"]
        for key in ("alignment", "agreement"):  # scores against data.valid_alignments
            if key in fields:
                results["valid"][key] = fields[key]
        if "other_busy_cores" in fields:  # what runs record since the trainer samples the load
            results["other_busy_cores"] = fields["other_busy_cores"]
        (job / "results.json").write_text(json.dumps(results))
    return job


def sweep(root: Path, bleus: dict[str, list[float]], extra: tuple[str, ...] = (),
          **fields) -> Path:
    """Jobs `<n>_attention=<a>,seed=<s>` with the given test BLEU per seed."""
    number = 0
    for attention, scores in bleus.items():
        for seed, bleu in enumerate(scores, start=1):
            make_job(root, f"{number}_attention={attention},seed={seed}",
                     [f"attention={attention}", f"seed={seed}", "experiment=attention_ablation",
                      *extra], bleu, seed=seed, **fields)
            number += 1
    return root


def row(table: str, label: str) -> list[str]:
    line = next(line for line in table.splitlines() if line.startswith(f"| `{label}`"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_jobs_differing_only_in_seed_and_paths_form_one_setting(tmp_path):
    make_job(tmp_path, "0", ["attention=dot", "seed=1", "data.source=/a", "data.root=/x"], 30.0)
    make_job(tmp_path, "1", ["attention=dot", "seed=2", "data.source=/b", "data.root=/y"], 32.0,
             seed=2)
    make_job(tmp_path, "2", ["attention=dot", "seed=1", "train.lr=0.003"], 20.0)
    make_job(tmp_path, "3", ["seed=2", "train.lr=0.003", "attention=dot"], 22.0, seed=2)
    report = build_report(tmp_path)
    assert [(s.label, len(s.jobs)) for s in report.settings] == [
        ("(common overrides only)", 2), ("train.lr=0.003", 2)]
    assert report.common == ("attention=dot",)


def test_mean_and_sample_std_over_seeds(tmp_path):
    report = build_report(sweep(tmp_path, {"additive": [30.0, 32.0, 34.0], "dot": [25.0]}))
    additive, dot = report.settings
    assert additive.stats["test_bleu"].mean == pytest.approx(32.0)
    assert additive.stats["test_bleu"].std == pytest.approx(2.0)  # n-1 in the denominator
    assert additive.seeds == [1, 2, 3]
    assert dot.stats["test_bleu"].std is None
    table = markdown_table(report.settings)
    assert row(table, "attention=additive")[1] == "**32.00 ± 2.00**"
    assert row(table, "attention=dot")[1] == "25.00 (n=1)"  # one seed has no spread to show
    assert row(table, "attention=dot")[-2] == "1"


def test_attention_statistics_get_columns_where_runs_have_them(tmp_path):
    for seed, (entropy, coverage) in enumerate([(1.0, 0.5), (1.5, 0.25)], start=1):
        make_job(tmp_path, f"a{seed}", ["attention=dot", f"seed={seed}"], 30.0, seed=seed,
                 attention={"entropy": entropy, "coverage": coverage, "diagonal": 0.75,
                            "heads": []})
    make_job(tmp_path, "b1", ["attention=general", "seed=1"], 31.0)  # an older run: none
    table = markdown_table(build_report(tmp_path).settings)
    header = [cell.strip() for cell in table.splitlines()[0].strip("|").split("|")]
    columns = header.index("val attention entropy"), header.index("val coverage"), \
        header.index("val diagonal")
    assert [row(table, "attention=dot")[i] for i in columns] == [
        "1.250 ± 0.354", "0.375 ± 0.177", "0.750 ± 0.000"]
    assert [row(table, "attention=general")[i] for i in columns] == ["–", "–", "–"]


def test_agreement_with_eflomal_and_aer_against_gold_are_columns_of_their_own(tmp_path):
    make_job(tmp_path, "a1", ["attention=dot", "seed=1"], 30.0, agreement={"agreement": 0.7})
    make_job(tmp_path, "a2", ["attention=dot", "seed=2"], 30.0, seed=2,
             agreement={"agreement": 0.8})
    make_job(tmp_path, "b1", ["attention=general", "seed=1"], 31.0, alignment={"aer": 0.4})
    table = markdown_table(build_report(tmp_path).settings)
    header = [cell.strip() for cell in table.splitlines()[0].strip("|").split("|")]
    columns = header.index("val agreement with eflomal"), \
        header.index("val AER vs data.valid_alignments")
    assert [row(table, "attention=dot")[i] for i in columns] == ["0.750 ± 0.071", "–"]
    assert [row(table, "attention=general")[i] for i in columns] == ["–", "0.400 (n=1)"]


def write_val_figures(job: Path, entropy_per_token: np.ndarray) -> None:
    """A val.attention.tsv of 40 sentences of 5 target and 4 source tokens each."""
    rows = ["target_tokens\tsource_tokens\tentropy\tcoverage\tdiagonal"]
    rows += [f"5\t4\t{5 * e}\t1.0\t2.5" for e in entropy_per_token]
    (job / "val.attention.tsv").write_text("\n".join(rows) + "\n")


def test_attention_columns_mark_figures_that_differ_from_the_best_settings(tmp_path):
    noise = np.random.default_rng(0).normal(0, 0.3, size=(3, 2, 40))
    means = {"dot": 1.0, "general": 1.6, "additive": 1.0}  # general: clearly more entropy
    bleus = {"dot": 32.0, "general": 30.0, "additive": 31.0}
    for k, (scorer, mean) in enumerate(means.items()):
        for seed in (1, 2):
            # additive: other sentences' noise around dot's mean, so no real difference
            per_sentence = mean + noise[k, seed - 1]
            job = make_job(tmp_path, f"{k}{seed}", [f"attention={scorer}", f"seed={seed}"],
                           bleus[scorer], seed=seed,
                           attention={"entropy": float(per_sentence.mean()), "coverage": 0.25,
                                      "diagonal": 0.5})
            write_val_figures(job, per_sentence)
    report = build_report(tmp_path)
    table = markdown_table(report.settings)
    entropy = [cell.strip() for cell in table.splitlines()[0].strip("|").split("|")].index(
        "val attention entropy")
    assert not row(table, "attention=dot")[entropy].endswith("‡")  # the best: the reference
    assert row(table, "attention=general")[entropy].endswith(" ‡")
    assert not row(table, "attention=additive")[entropy].endswith("‡")
    assert "‡ in an attention column: the val figure differs from that of `attention=dot`" \
        in table
    # a run without its sentence figures: no marks, and the report says why
    (tmp_path / "01" / "val.attention.tsv").unlink()
    report = build_report(tmp_path)
    assert "‡" not in markdown_table(report.settings)
    assert any("no significance test of the attention columns" in note and
               "val.attention.tsv is missing" in note for note in report.notes)


def test_no_attention_columns_without_statistics(tmp_path):
    table = markdown_table(build_report(sweep(tmp_path, {"dot": [30.0]})).settings)
    assert "entropy" not in table and "coverage" not in table


def test_best_mean_is_bold_and_ties_are_all_bold(tmp_path):
    report = build_report(sweep(tmp_path, {"additive": [30.0], "dot": [31.0], "general": [31.0]}))
    table = markdown_table(report.settings)
    assert not row(table, "attention=additive")[1].startswith("**")
    assert row(table, "attention=dot")[1] == "**31.00 (n=1)**"
    assert row(table, "attention=general")[1] == "**31.00 (n=1)**"


@pytest.mark.parametrize("bleus", [{"dot": [30.0, 31.0]}, {"dot": [30.0], "general": [30.0]}])
def test_nothing_is_bold_without_a_best(tmp_path, bleus):
    report = build_report(sweep(tmp_path, bleus))  # one setting, or two that score the same
    assert "**" not in markdown_table(report.settings)


def test_settings_keep_the_sweep_order(tmp_path):
    for number in range(12):
        make_job(tmp_path, f"{number}_x", [f"train.lr={number}"], 10.0 + number)
    labels = [s.label for s in build_report(tmp_path).settings]
    assert labels == [f"train.lr={n}" for n in range(12)]  # 2 before 10


def test_unfinished_and_broken_runs_are_listed_not_fatal(tmp_path):
    sweep(tmp_path, {"additive": [30.0, 31.0]})
    failed = make_job(tmp_path, "2_attention=dot,seed=1", ["attention=dot", "seed=1"])
    (failed / "train.log").write_text("[2026-01-01 10:00:00,000][seq2seq.training.trainer][INFO] "
                                      "- step 20\n"
                                      "[2026-01-01 10:00:01,000][seq2seq.train][ERROR] - 5 "
                                      "consecutive non-finite losses at step 21\n")
    killed = make_job(tmp_path, "4_attention=dot,seed=3", ["attention=dot", "seed=3"])
    (killed / "train.log").write_text("[2026-01-01 10:00:00,000][seq2seq.training.trainer][INFO] "
                                      "- step 20\n")  # the OOM killer's SIGKILL writes nothing
    broken = make_job(tmp_path, "3_attention=dot,seed=2", ["attention=dot", "seed=2"], 30.0)
    (broken / "results.json").write_text('{"seed": 2, "test": {')  # killed while writing
    report = build_report(tmp_path)
    assert [s.label for s in report.settings] == ["(common overrides only)"]
    assert [(job.path.name, job.seed) for job in report.missing] == [
        ("2_attention=dot,seed=1", 1), ("3_attention=dot,seed=2", 2), ("4_attention=dot,seed=3", 3)]
    problems = [job.problem for job in report.missing]
    assert problems[0] == "failed: 5 consecutive non-finite losses at step 21"  # from train.log
    assert "unreadable" in problems[1]
    assert problems[2] == "no results.json and no error in train.log: killed or still running"
    text = markdown_report(report)
    assert "`2_attention=dot,seed=1`: failed: 5 consecutive" in text
    assert "`3_attention=dot,seed=2`: unreadable results.json" in text
    assert "`4_attention=dot,seed=3`: no results.json and no error in train.log" in text


@pytest.mark.parametrize("overrides_yaml", [
    "- [unclosed\n",  # not YAML
    "attention: dot\n",  # YAML, but not a list
    "- 'attention=[unclosed'\n",  # an override Hydra cannot parse
])
def test_a_run_with_unreadable_overrides_is_listed_and_the_rest_reported(tmp_path,
                                                                          overrides_yaml):
    sweep(tmp_path, {"additive": [30.0, 31.0]})
    bad = make_job(tmp_path, "2_attention=dot,seed=1", ["attention=dot"], 29.0)
    (bad / ".hydra" / "overrides.yaml").write_text(overrides_yaml)
    report = build_report(tmp_path)
    assert [job.path.name for job in report.missing] == ["2_attention=dot,seed=1"]
    assert report.missing[0].problem.startswith("unreadable .hydra/overrides.yaml")
    assert [s.label for s in report.settings] == ["(common overrides only)"]


def test_a_truncated_results_json_is_named_and_no_missing_log_is_pointed_at(tmp_path):
    job = make_job(tmp_path, "0_x", ["seed=1"], 30.0)
    (job / "results.json").write_text('{"seed": 1, "te')
    with pytest.raises(ReportError) as error:
        build_report(tmp_path)
    assert "unreadable results.json" in str(error.value) and "train.log" not in str(error.value)


@pytest.mark.parametrize(("content", "problem"), [
    ('{"seed": 1, "te', "unreadable results.json (not JSON: "),
    ("[1, 2]", "unreadable results.json (a JSON list, not an object)"),
    ('{"seed": 1}', "unreadable results.json (no number at test.bleu)"),
    ('{"test": {"bleu": "many"}}', "unreadable results.json (test.bleu is not a number: 'many')"),
    ('{"test": {"bleu": NaN}}', "unreadable results.json (test.bleu is nan)"),
])
def test_a_broken_results_json_says_what_is_wrong_with_it(tmp_path, content, problem):
    (tmp_path / "results.json").write_text(content)
    results, why = read_results(tmp_path / "results.json")
    assert results is None and why.startswith(problem), why


def test_cli_output_dir_under_a_file_is_one_line(tmp_path, capsys):
    sweep(tmp_path / "sweep", {"dot": [30.0]})
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "sweep"), "--output-dir", str(tmp_path / "file" / "out")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write the report into ") and err.count("\n") == 1


def test_a_run_outside_hydra_is_its_own_setting(tmp_path):
    sweep(tmp_path / "sweep", {"dot": [30.0]})
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "results.json").write_text((tmp_path / "sweep" / "0_attention=dot,seed=1" /
                                        "results.json").read_text())
    assert [s.label for s in build_report(tmp_path).settings] == [
        "run=lone", "attention=dot, experiment=attention_ablation"]


def test_ignore_merges_settings_that_differ_in_an_irrelevant_key(tmp_path):
    make_job(tmp_path, "0", ["seed=1", "train.num_threads=1"], 30.0)
    make_job(tmp_path, "1", ["seed=2", "train.num_threads=2"], 32.0, seed=2)
    assert len(build_report(tmp_path).settings) == 2
    merged = build_report(tmp_path, ignore=["train.num_threads"]).settings
    assert [len(s.jobs) for s in merged] == [2]


def test_repeated_seeds_and_different_test_sets_are_warned_about(tmp_path):
    make_job(tmp_path, "0", ["attention=dot", "seed=1"], 30.0)
    make_job(tmp_path, "1", ["attention=dot", "seed=1"], 31.0)
    make_job(tmp_path, "2", ["attention=additive", "seed=1"], 31.0, test_split="test_2017_flickr")
    notes = build_report(tmp_path).notes
    assert any("seed 1 ran more than once" in note for note in notes)
    assert any("test split" in note and "test_2017_flickr" in note for note in notes)


@pytest.mark.parametrize("setup,words", [
    (lambda root: None, ["no run found"]),
    (lambda root: make_job(root, "0_x", ["seed=1"]), ["none of the 1 runs", "finished"]),
])
def test_nothing_to_report_is_a_clear_error(tmp_path, setup, words):
    setup(tmp_path)
    with pytest.raises(ReportError) as error:
        build_report(tmp_path)
    for word in words:
        assert word in str(error.value)


def test_cli_writes_report_md_and_png_and_prints_the_table(tmp_path, capsys):
    sweep(tmp_path, {"additive": [30.0, 32.0], "dot": [29.0, 29.5]}, extra=("train=smoke",))
    make_job(tmp_path, "4_attention=general,seed=1", ["attention=general", "seed=1"])
    main([str(tmp_path)])
    out = capsys.readouterr().out
    assert "| `attention=additive` | **31.00 ± 1.41** |" in out
    assert "missing: " in out and "4_attention=general,seed=1" in out
    report = (tmp_path / "report.md").read_text()
    assert "Common to every run: `experiment=attention_ablation`, `train=smoke`." in report
    assert SIGNATURE in report
    assert "![BLEU and chrF per setting](report.png)" in report
    assert (tmp_path / "report.png").read_bytes().startswith(b"\x89PNG")


def test_cli_output_dir_and_no_plot(tmp_path, capsys):
    sweep(tmp_path / "sweep", {"dot": [30.0]})
    main([str(tmp_path / "sweep"), "--output-dir", str(tmp_path / "out"), "--no-plot"])
    assert (tmp_path / "out" / "report.md").is_file()
    assert not (tmp_path / "out" / "report.png").exists()
    assert not (tmp_path / "sweep" / "report.md").exists()


def test_cli_error_is_one_line_without_traceback(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "nowhere")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nowhere" in err and "Traceback" not in err


def test_find_jobs_reads_seed_from_the_overrides_of_an_unfinished_run(tmp_path):
    make_job(tmp_path, "0", ["attention=dot", "seed=7"])
    (job,) = find_jobs(tmp_path)
    assert job.results is None and job.seed == 7 and job.setting == ("attention=dot",)


def test_the_chart_draws_error_bars_only_where_there_is_a_spread(tmp_path):
    from matplotlib.container import ErrorbarContainer

    sweep(tmp_path, {"additive": [30.0, 32.0], "dot": [29.0]})
    figure = report_figure(build_report(tmp_path).settings)
    for axes in figure.axes:
        bars = [c for c in axes.containers if isinstance(c, ErrorbarContainer)]
        assert [len(c.lines[2][0].get_segments()) for c in bars] == [1, 1]  # additive only
        assert "mean ± std" in axes.get_title()
    one_seed = report_figure(build_report(sweep(tmp_path / "one", {"dot": [29.0]})).settings)
    assert all("one seed each" in axes.get_title() for axes in one_seed.axes)
    assert not any(isinstance(c, ErrorbarContainer) for a in one_seed.axes for c in a.containers)


def test_the_charts_legend_covers_no_bar_and_no_error_bar_goes_below_zero(tmp_path):
    from matplotlib.container import ErrorbarContainer

    sweep(tmp_path, {"additive": [0.0, 3.0], "dot": [30.0, 31.0]})  # additive: 1.5 ± 2.1
    figure = report_figure(build_report(tmp_path).settings)
    figure.canvas.draw()
    (legend,) = figure.legends
    for axes in figure.axes:
        assert not legend.get_window_extent().overlaps(axes.get_window_extent())
        bars = [c for c in axes.containers if isinstance(c, ErrorbarContainer)]
        lowest = min(y for c in bars for segment in c.lines[2][0].get_segments()
                     for _, y in segment)
        assert lowest == 0.0 if axes is figure.axes[0] else lowest > 0.0  # BLEU 1.5 - 2.1


def test_a_run_with_a_nan_score_is_listed_not_averaged(tmp_path):
    sweep(tmp_path, {"additive": [30.0, 31.0]})
    make_job(tmp_path, "2_attention=additive,seed=3", ["attention=additive", "seed=3"],
             float("nan"), seed=3)
    report = build_report(tmp_path)
    assert [job.path.name for job in report.missing] == ["2_attention=additive,seed=3"]
    assert "is nan" in report.missing[0].problem
    assert report.settings[0].stats["test_bleu"].n == 2



# ---- significance: paired bootstrap of test BLEU against the best setting --------------------

REFERENCES = ["A man rides a red bike down the street.", "Two dogs play in the snow.",
              "A woman sings on a stage.", "Children run across a green field.",
              "An old man reads a newspaper on a bench.", "A cat sleeps in the kitchen.",
              "Three people walk along the beach at sunset.", "A boy jumps into a lake."] * 4


def with_outputs(job: Path, hypotheses: list[str]) -> Path:
    """Give a made-up run the test files a trained run leaves beside results.json."""
    (job / "test_2016_flickr.hyp.txt").write_text("\n".join(hypotheses) + "\n")
    (job / "test_2016_flickr.ref.txt").write_text("\n".join(REFERENCES) + "\n")
    return job


def degraded(words_kept: int) -> list[str]:
    return [" ".join(ref.split()[:words_kept]) for ref in REFERENCES]


def sacrebleu_p_value(tmp_path: Path, baseline: list[str], system: list[str]) -> float:
    """What sacreBLEU's own command says: --paired-bs of `system` against `baseline`."""
    files = {}
    for name, lines in (("ref", REFERENCES), ("base", baseline), ("sys", system)):
        files[name] = tmp_path / f"{name}.txt"
        files[name].write_text("\n".join(lines) + "\n")
    done = subprocess.run([sys.executable, "-m", "sacrebleu", str(files["ref"]), "-i",
                           str(files["base"]), str(files["sys"]), "--paired-bs", "-m", "bleu",
                           "--format", "json"], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)[1]["BLEU"]["p_value"]


def test_the_significance_marks_agree_with_sacrebleus_own_paired_test(tmp_path):
    close, far = REFERENCES[:], degraded(3)
    close[0] = "A man rides a bike down the street."  # one sentence differs from the best
    outputs = {"additive": REFERENCES, "dot": close, "general": far}
    for number, (attention, hypotheses) in enumerate(outputs.items()):
        with_outputs(make_job(tmp_path / "sweep", f"{number}_attention={attention}",
                              [f"attention={attention}", "seed=1"], 50.0 - number), hypotheses)
    report = build_report(tmp_path / "sweep")
    additive, dot, general = report.settings
    assert additive.versus_best == "best"
    assert dot.versus_best.p_value == pytest.approx(
        sacrebleu_p_value(tmp_path, REFERENCES, close))
    assert general.versus_best.p_value == pytest.approx(
        sacrebleu_p_value(tmp_path, REFERENCES, far))
    assert dot.versus_best.p_value >= 0.05 > general.versus_best.p_value
    table = markdown_table(report.settings)
    assert row(table, "attention=additive")[-1] == "best"
    assert row(table, "attention=dot")[-1].endswith(", n.s.")
    assert row(table, "attention=general")[-1] == (
        f"{general.versus_best.delta:+.2f}, p={general.versus_best.p_value:.3f}")
    assert "not significant (p >= 0.05)" in markdown_report(report)
    assert "vs best pairs each setting's run of seed 1 with the best setting's run of the same " \
           "seed." in table


def test_vs_best_says_which_way_the_difference_goes(tmp_path):
    from sacrebleu import corpus_bleu

    worse, better = degraded(4), degraded(6)
    for number, (attention, hypotheses, bleu) in enumerate([("dot", worse, 30.0),
                                                            ("general", better, 40.0)]):
        with_outputs(make_job(tmp_path, f"{number}_{attention}",
                              [f"attention={attention}", "seed=1"], bleu), hypotheses)
    dot, general = build_report(tmp_path).settings
    expected = corpus_bleu(worse, [REFERENCES]).score - corpus_bleu(better, [REFERENCES]).score
    assert expected < 0 and dot.versus_best.delta == pytest.approx(expected)
    shown = row(markdown_table([dot, general]), "attention=dot")[-1]
    assert shown.startswith(f"{expected:+.2f}, p=") and shown[0] == "-"


def test_settings_that_score_the_same_are_not_called_significantly_different(tmp_path):
    for number, attention in enumerate(("dot", "general")):  # the same translations
        with_outputs(make_job(tmp_path, f"{number}_{attention}",
                              [f"attention={attention}", "seed=1"], 30.0), degraded(4))
    report = build_report(tmp_path)
    assert report.settings[1].versus_best == Versus(0.0, None)
    assert row(markdown_table(report.settings), "attention=general")[-1] == "0.00, the same score"


def test_the_runs_of_the_seeds_every_setting_ran_are_paired_and_the_rest_named(tmp_path):
    runs = {("additive", 1): degraded(2), ("additive", 2): REFERENCES,
            ("additive", 3): degraded(6), ("dot", 3): degraded(4), ("dot", 2): degraded(5)}
    for number, ((attention, seed), hypotheses) in enumerate(runs.items()):
        with_outputs(make_job(tmp_path / "sweep", f"{number}_{attention}_{seed}",
                              [f"attention={attention}", f"seed={seed}"], 40.0 - number,
                              seed=seed), hypotheses)
    report = build_report(tmp_path / "sweep")
    additive, dot = report.settings
    assert additive.versus_best == "best"  # seeds 2 and 3 of each: additive's seed 1 sits out
    joined = [*runs[("additive", 2)], *runs[("additive", 3)]]
    expected = sacrebleu_p_value_joined(tmp_path, joined, [*degraded(5), *degraded(4)])
    assert dot.versus_best.p_value == pytest.approx(expected)
    table = markdown_table(report.settings)
    assert ("vs best pairs each setting's runs of seeds 2, 3 with the best setting's runs of the "
            "same seeds. The settings ran unequal numbers of seeds (`attention=additive` 3, "
            "`attention=dot` 2): the mean ± std counts every run, vs best leaves out "
            "`attention=additive` seed 1.") in table


def test_settings_without_a_common_seed_are_not_tested(tmp_path):
    for number, seed in enumerate((1, 2)):
        with_outputs(make_job(tmp_path, f"{number}_x", [f"train.lr={number}", f"seed={seed}"],
                              30.0 + number, seed=seed), REFERENCES)
    report = build_report(tmp_path)
    assert all(setting.versus_best is None for setting in report.settings)
    assert report.notes == ["no significance test: no seed ran in every setting "
                            "(train.lr=0: 1; train.lr=1: 2)"]
    assert "vs best pairs" not in markdown_table(report.settings)


def sacrebleu_p_value_joined(tmp_path: Path, baseline: list[str], system: list[str]) -> float:
    from sacrebleu.metrics import BLEU
    from sacrebleu.significance import PairedTest

    _, results = PairedTest([("a", baseline), ("b", system)], {"BLEU": BLEU()},
                            [REFERENCES * 2], test_type="bs", n_samples=1000)()
    return results["BLEU"][1].p_value


def test_runs_without_saved_outputs_are_reported_untested(tmp_path):
    sweep(tmp_path, {"additive": [30.0], "dot": [29.0]})
    report = build_report(tmp_path)
    assert all(setting.versus_best is None for setting in report.settings)
    assert any("no significance test" in note and "test_2016_flickr.hyp.txt" in note
               for note in report.notes)
    assert row(markdown_table(report.settings), "attention=dot")[-1] == "—"


# ---- timing: which runs trained beside other work ------------------------------------------

def test_timing_measured_beside_other_work_is_marked_and_the_load_named(tmp_path):
    sweep(tmp_path, {"additive": [30.0]}, other_busy_cores=0.1)
    sweep(tmp_path / "more", {"dot": [31.0, 31.5]}, other_busy_cores=1.34)
    make_job(tmp_path / "more", "2_attention=dot,seed=3",
             ["attention=dot", "seed=3", "experiment=attention_ablation"], 31.25,
             seed=3, other_busy_cores=0.2)  # the one dot run on an idle machine
    table = markdown_table(build_report(tmp_path).settings)
    dot, additive = row(table, "attention=dot"), row(table, "attention=additive")
    assert dot[6:8] == ["5,000 †", "60 s †"] and additive[6:8] == ["5,000", "60 s"]
    assert dot[1] == "**31.25 ± 0.25**"  # scores are not marked
    assert ("† tokens/s and train time measured while other processes kept CPU cores busy (the "
            "mean over a run's training): `attention=dot` up to 1.3 cores, in 2 of its 3 runs. "
            "They measure that load as much as the setting.") in table
    assert "not recorded" not in table


def test_an_idle_sweep_says_so_and_runs_without_a_load_record_are_counted(tmp_path):
    sweep(tmp_path / "idle", {"additive": [30.0], "dot": [31.0]}, other_busy_cores=0.2)
    table = markdown_table(build_report(tmp_path / "idle").settings)
    assert "†" not in table
    assert "Timing: every run trained while other processes used under 0.5 cores." in table
    sweep(tmp_path / "old", {"general": [29.0]})  # results.json from before the load record
    table = markdown_table(build_report(tmp_path).settings)
    assert "†" not in row(table, "attention=general")[6]
    assert ("Other processes' CPU use was not recorded for 1 of the 3 runs (their results.json "
            "is from before the trainer recorded it)") in table
    assert "Timing: every run" not in table
