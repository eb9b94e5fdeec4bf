"""`python scripts/train.py [overrides]`: train a model, then test its best checkpoint.

Every setting is a Hydra override (see conf/); `-m` runs sweeps. Errors in the config or the data
stop the run with one line on stderr and exit code 1; Ctrl-C or SIGTERM save last.pt first.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from seq2seq.config import ConfigError, register_configs, to_object
from seq2seq.errors import Seq2SeqError

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")
log = logging.getLogger("seq2seq.train")


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def train(cfg: DictConfig) -> float:
    """Returns the best val BLEU, so Hydra sweepers can optimise it."""
    from seq2seq.trainer import Interrupted, Trainer  # after Hydra: `--help` stays fast

    try:
        config = to_object(cfg)
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        results = Trainer(config, run_dir).fit()
    except (ConfigError, Seq2SeqError) as error:
        log.error("%s", error)
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except Interrupted as stop:
        log.warning("%s", stop)
        print(f"stopped: {stop}", file=sys.stderr)
        sys.exit(128 + stop.signum)
    except KeyboardInterrupt:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    log.info("results in %s", run_dir / "results.json")
    return results["valid"]["bleu"]


def main() -> None:
    register_configs()
    train()


if __name__ == "__main__":
    main()
