"""`python scripts/prepare_data.py [overrides]`: fetch and verify a corpus, train subword models.

Takes the same config as training, so `data=...` and `data.*` overrides mean the same thing, and a
later training run reuses what this prepared. Prints corpus statistics. Errors in the config or
the data print one line on stderr and exit with code 1.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from seq2seq.cli.common import (
    CONFIG_NAME,
    CONFIG_PATH,
    check_overrides,
    plain_overrides,
    user_errors,
)
from seq2seq.config import override_key, register_configs, to_object

# `--help` (Hydra's): this command's own, not the training help of the config it shares
HELP = """seq2seq-prepare (python scripts/prepare_data.py): fetch and verify a corpus, train its
subword models and print corpus statistics. It takes the training config, so data=OPTION and
data.KEY=VALUE mean what they mean to seq2seq-train, which then reuses what this prepared.

== Config groups ==
$APP_CONFIG_GROUPS

== Examples ==
  python scripts/prepare_data.py data.source=DIR             # Multi30k de->en, under data/
  python scripts/prepare_data.py data=multi30k_en_fr data.source=DIR data.root=/tmp/data

--cfg job prints the composed config; --hydra-help shows Hydra's own options."""

# This command writes no run directory: no outputs/<date>/, no .hydra/, no log file.
_NO_RUN_DIR = {
    "hydra.run.dir": ".",
    "hydra.output_subdir": "null",
    "hydra/job_logging": "stdout",
    "hydra.help.app_name": "seq2seq-prepare",
    "hydra.help.template": f'"{HELP}"',  # quoted: an override's value, newlines and all
}


@hydra.main(config_path=CONFIG_PATH, config_name=CONFIG_NAME, version_base="1.3")
def prepare(cfg: DictConfig) -> None:
    from seq2seq.data.prepare import prepare_data  # after Hydra: `--help` stays fast
    from seq2seq.runtime import peak_rss_mb

    with user_errors():
        config = to_object(cfg)
        started = time.perf_counter()
        data = prepare_data(config.data, batch_tokens=config.train.batch_tokens)
        seconds = time.perf_counter() - started
    print(format_stats(data.stats(), f"{config.data.src_lang}->{config.data.tgt_lang}",
                       data.directory))
    print(f"prepared in {seconds:.1f} s, peak memory (RSS) {peak_rss_mb():,.0f} MB")


def format_stats(stats: dict[str, Any], pair: str, directory: Path) -> str:
    """The statistics of PreparedData.stats() as a small table."""
    lines = [
        f"corpus {directory.name} ({pair}), prepared in {directory}",
        f"{'split':<18}{'pairs':>8}{'src tokens':>12}{'tgt tokens':>12}"
        f"  {'src length: mean p50/95/99 max':<32}{'tgt length: mean p50/95/99 max'}",
    ]
    for name, split in stats["splits"].items():
        lines.append(
            f"{name:<18}{split['pairs']:>8,}{split['src_tokens']:>12,}{split['tgt_tokens']:>12,}"
            f"  {lengths(split, 'src'):<32}{lengths(split, 'tgt')}"
        )
    drops = stats["drop_counts"]
    lines += [
        f"train pairs dropped: {stats['train_dropped']:,} ({drops.get('empty', 0):,} empty, "
        f"{drops.get('too_long', 0):,} over data.max_len)",
        f"vocabulary: {'joint' if stats['joint_vocab'] else 'separate'}, "
        f"src {stats['src_vocab_size']:,}, tgt {stats['tgt_vocab_size']:,} "
        f"(the training targets use {stats['output_pieces']:,}: the output layer's rows)",
        f"padding efficiency: {stats['padding_efficiency']:.3f} "
        f"({stats['train_batches']:,} train batches of <= {stats['batch_tokens']:,} tokens)",
    ]
    return "\n".join(line.rstrip() for line in lines)


def lengths(split: dict[str, Any], side: str) -> str:
    percentiles = "/".join(str(n) for n in split[f"{side}_len_percentiles"].values())
    return f"{split[f'{side}_mean_len']:.1f} {percentiles} {split[f'{side}_max_len']}"


def main() -> None:
    register_configs()
    overrides = plain_overrides(sys.argv[1:])
    if overrides is not None:
        with user_errors():
            check_overrides(overrides)
    given = {override_key(arg) for arg in sys.argv[1:]}
    sys.argv += [f"{key}={value}" for key, value in _NO_RUN_DIR.items() if key not in given]
    prepare()


if __name__ == "__main__":
    main()
