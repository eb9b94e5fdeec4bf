"""Regenerate the tiny synthetic de->en corpus here: `python tests/data/make_tiny_corpus.py`.

Sentences come from a small grammar with a word-for-word translation (and German adjective
endings), so a small model can learn the task in a short CPU run. The output is deterministic.

  tiny/{train,val,test}.{de,en}        aligned plain-text files
  tiny/{train,val,test}.tsv            the same pairs as de<TAB>en<TAB>note (Tatoeba-like)
  multi30k/{train,val,test_2016_flickr}.{de,en}.gz
                                       the same pairs under Multi30k file names; their sha256 is
                                       not Multi30k's, so data=multi30k_* rejects them
"""

from __future__ import annotations

import gzip
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIZES = {"train": 400, "val": 50, "test": 50}

# (German noun with gender m/f/n, English noun)
NOUNS = [
    ("Mann", "m", "man"), ("Frau", "f", "woman"), ("Kind", "n", "child"), ("Hund", "m", "dog"),
    ("Mädchen", "n", "girl"), ("Junge", "m", "boy"), ("Katze", "f", "cat"),
    ("Radfahrer", "m", "cyclist"), ("Musikerin", "f", "musician"), ("Pferd", "n", "horse"),
]
ARTICLES = {"m": "ein", "f": "eine", "n": "ein"}
ADJECTIVE_ENDINGS = {"m": "er", "f": "e", "n": "es"}
ADJECTIVES = [
    ("groß", "big"), ("klein", "small"), ("jung", "young"), ("alt", "old"), ("rot", "red"),
    ("weiß", "white"), ("müde", "tired"), ("fröhlich", "happy"),
]
VERBS = [
    ("läuft", "runs"), ("spielt", "plays"), ("sitzt", "sits"), ("steht", "stands"),
    ("springt", "jumps"), ("schläft", "sleeps"), ("wartet", "waits"), ("tanzt", "dances"),
]
PLACES = [
    ("auf der Straße", "on the street"), ("im Park", "in the park"),
    ("am Strand", "on the beach"), ("vor dem Haus", "in front of the house"),
    ("über die Brücke", "over the bridge"), ("im Schnee", "in the snow"),
    ("neben dem Fluss", "next to the river"), ("hinter einem Zaun", "behind a fence"),
    ("auf einer Wiese", "in a meadow"), ("in der Küche", "in the kitchen"),
]
SECOND_VERBS = [("lacht", "laughs"), ("singt", "sings"), ("isst", "eats"), ("winkt", "waves")]


def sentence_pair(rng: random.Random) -> tuple[str, str]:
    noun, gender, noun_en = rng.choice(NOUNS)
    de, en = [ARTICLES[gender]], ["a"]
    if rng.random() < 0.5:
        adjective, adjective_en = rng.choice(ADJECTIVES)
        stem = adjective[:-1] if adjective.endswith("e") else adjective
        de.append(stem + ADJECTIVE_ENDINGS[gender])
        en.append(adjective_en)
    de.append(noun)
    en.append(noun_en)
    verb, verb_en = rng.choice(VERBS)
    de.append(verb)
    en.append(verb_en)
    if rng.random() < 0.7:
        place, place_en = rng.choice(PLACES)
        de.append(place)
        en.append(place_en)
    if rng.random() < 0.3:
        second, second_en = rng.choice(SECOND_VERBS)
        de += ["und", second]
        en += ["and", second_en]
    if en[1][0] in "aeiou":
        en[0] = "an"
    return _sentence(de), _sentence(en)


def _sentence(words: list[str]) -> str:
    text = " ".join(words) + "."
    return text[0].upper() + text[1:]


def splits(seed: int = 0) -> dict[str, list[tuple[str, str]]]:
    """Disjoint train/val/test pairs, no duplicates within a split."""
    rng = random.Random(seed)
    seen: set[tuple[str, str]] = set()
    result = {}
    for name, size in SIZES.items():
        pairs = []
        while len(pairs) < size:
            pair = sentence_pair(rng)
            if pair not in seen:
                seen.add(pair)
                pairs.append(pair)
        result[name] = pairs
    return result


def write(path: Path, lines: list[str]) -> None:
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)  # mtime 0: the same bytes on every run
    path.write_bytes(data)


def main() -> None:
    multi30k_names = {"train": "train", "val": "val", "test": "test_2016_flickr"}
    for name, pairs in splits().items():
        de = [d for d, _ in pairs]
        en = [e for _, e in pairs]
        write(HERE / "tiny" / f"{name}.de", de)
        write(HERE / "tiny" / f"{name}.en", en)
        write(HERE / "tiny" / f"{name}.tsv",
              [f"{d}\t{e}\tsynthetic #{i}" for i, (d, e) in enumerate(pairs, start=1)])
        write(HERE / "multi30k" / f"{multi30k_names[name]}.de.gz", de)
        write(HERE / "multi30k" / f"{multi30k_names[name]}.en.gz", en)


if __name__ == "__main__":
    main()
