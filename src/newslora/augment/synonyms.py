"""WordNet synonym replacement in the EDA style (Wei & Zou, 2019), seeded.

Only plain lower-case words are touched: stopwords, numbers and capitalised words (names,
places, companies: the words that carry a news topic) are left alone. Optional random
insertion (of a synonym), swap and deletion follow EDA. Each row's edits depend only on the
seed and the row's position, so a file augments identically on any machine.

WordNet 3.0 comes from Debian's `wordnet-base` + `wordnet-sense-index` files (/usr/share/wordnet,
or $NEWSLORA_WORDNET), which NLTK's reader accepts once a `lexnames` file (the 45
lexicographer file names, public in WordNet's documentation) is put beside them; without
them, from NLTK's own data path.
"""

import os
import random
import re
import shutil
from pathlib import Path

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from newslora import NewsloraError
from newslora.config import SynonymConfig  # the [synonyms] section: fields, defaults, help

LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute "
    "noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group "
    "noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant "
    "noun.possession noun.process noun.quantity noun.relation noun.shape noun.state "
    "noun.substance noun.time verb.body verb.change verb.cognition verb.communication "
    "verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion "
    "verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
_POS_IDS = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
_WORD = re.compile(r"^(\W*)([a-z][a-z'-]*[a-z])(\W*)$")  # lower-case word, punctuation kept


def _debian_source():
    return Path(os.environ.get("NEWSLORA_WORDNET", "/usr/share/wordnet"))


# NLTK's reader (3.10) opens these at load; Debian splits them over two packages.
NEEDED = {"data.noun": "wordnet-base", "index.sense": "wordnet-sense-index"}


def _prepare_nltk_data(cache):
    """Copy Debian's WordNet files into an NLTK data folder and add `lexnames`.

    Copied again whenever the source has a file the copy lacks (a package installed later)."""
    source = _debian_source()
    missing = [name for name in NEEDED if not (source / name).is_file()]
    if missing:
        packages = " ".join(NEEDED[name] for name in missing)
        raise NewsloraError(
            f"WordNet 3.0: {source} has no {', '.join(missing)} (apt-get install {packages}, "
            "or set NEWSLORA_WORDNET to a WordNet 3.0 dict folder)"
        )
    target = cache / "corpora" / "wordnet"
    files = [p for p in source.iterdir() if p.is_file()]
    if not all((target / p.name).is_file() for p in files) or not (target / "lexnames").is_file():
        target.mkdir(parents=True, exist_ok=True)
        for path in files:  # copies: NLTK refuses symlinks that leave its data folder
            shutil.copy(path, target / path.name)
        lines = [f"{i:02d}\t{n}\t{_POS_IDS[n.split('.')[0]]}\n" for i, n in enumerate(LEXNAMES)]
        (target / "lexnames").write_text("".join(lines))
    return cache


def load_wordnet():
    """WordNet 3.0 from Debian's files (the Makefile installs them), else NLTK's own data."""
    import nltk
    from nltk.corpus import wordnet

    if _debian_source().is_dir() or "NEWSLORA_WORDNET" in os.environ:
        cache = Path(os.environ.get("NEWSLORA_CACHE", Path.home() / ".cache" / "newslora"))
        nltk.data.path.insert(0, str(_prepare_nltk_data(cache / "nltk_data")))
    try:
        wordnet.ensure_loaded()
    except (LookupError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise NewsloraError(
            f"WordNet 3.0 not found ({first[:120]}): apt-get install {' '.join(NEEDED.values())}"
        ) from None
    return wordnet


class SynonymAugmenter:
    def __init__(self, cfg=None, wordnet=None):
        self.cfg = cfg or SynonymConfig()
        self.wordnet = wordnet or load_wordnet()
        self._cache = {}

    def synonyms(self, word):
        """Single- and multi-word WordNet synonyms of `word`, itself excluded, sorted."""
        if word not in self._cache:
            names = {
                lemma.name().replace("_", " ").lower()
                for synset in self.wordnet.synsets(word)
                for lemma in synset.lemmas()
            }
            self._cache[word] = sorted(n for n in names if n != word and n.isascii())
        return self._cache[word]

    def _eligible(self, tokens):
        """Indices of tokens that may be replaced: lower-case non-stopwords with synonyms."""
        out = []
        for i, token in enumerate(tokens):
            match = _WORD.match(token)
            if match and match[2] not in ENGLISH_STOP_WORDS and self.synonyms(match[2]):
                out.append(i)
        return out

    def _replace(self, tokens, rng):
        eligible = self._eligible(tokens)
        if self.cfg.rate <= 0 or not eligible:
            return tokens
        n = min(self.cfg.max_replacements, max(1, round(self.cfg.rate * len(eligible))))
        for i in rng.sample(eligible, min(n, len(eligible))):
            prefix, word, suffix = _WORD.match(tokens[i]).groups()
            tokens[i] = prefix + rng.choice(self.synonyms(word)) + suffix
        return tokens

    def _insert(self, tokens, rng):
        eligible = self._eligible(tokens)
        n = round(self.cfg.insert_rate * len(eligible)) if eligible else 0
        words = [_WORD.match(tokens[rng.choice(eligible)])[2] for _ in range(n)]  # before moving
        for word in words:
            tokens.insert(rng.randrange(len(tokens) + 1), rng.choice(self.synonyms(word)))
        return tokens

    def _swap(self, tokens, rng):
        for _ in range(round(self.cfg.swap_rate * len(tokens)) if len(tokens) > 1 else 0):
            i, j = rng.sample(range(len(tokens)), 2)
            tokens[i], tokens[j] = tokens[j], tokens[i]
        return tokens

    def _delete(self, tokens, rng):
        if self.cfg.delete_rate <= 0 or len(tokens) < 2:
            return tokens
        kept = [t for t in tokens if rng.random() >= self.cfg.delete_rate]
        return kept or [rng.choice(tokens)]

    def augment(self, text, row=0, copy=0):
        """One augmented version of `text`; deterministic in (seed, row, copy)."""
        rng = random.Random(f"{self.cfg.seed}:{row}:{copy}")
        tokens = text.split()
        for step in (self._replace, self._insert, self._swap, self._delete):
            tokens = step(tokens, rng)
        return " ".join(tokens)
