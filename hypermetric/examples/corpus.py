"""A small question-answering corpus about fictional towns, made deterministically.

Each town has one article (the relevant document) and appears in travel notes that mention
several towns, some with misleading details, so retrieval is not trivial and a reader given
more context can be led astray. Nothing is downloaded: the same seed gives the same corpus.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cache
from typing import Any

__all__ = ["ATTRIBUTES", "Document", "Town", "corpus", "questions"]

_SYLLABLES = [
    "ka",
    "lo",
    "ve",
    "mir",
    "ta",
    "sen",
    "dor",
    "al",
    "ri",
    "bel",
    "mon",
    "ash",
    "vel",
    "tor",
    "en",
    "ys",
    "qua",
    "ner",
    "hal",
    "pim",
    "ost",
    "ur",
    "zan",
    "fi",
]
_COUNTRIES = [
    "Arvenia",
    "Belmark",
    "Cadora",
    "Dunmere",
    "Estravia",
    "Fennland",
    "Gorvat",
    "Hollin",
    "Istria Minor",
    "Jorvale",
    "Kessary",
    "Lunmark",
]
_RIVERS = [
    "Sarn",
    "Ovel",
    "Tamber",
    "Leith",
    "Morrow",
    "Ashwater",
    "Kell",
    "Dunning",
    "Isk",
    "Vire",
    "Calder",
    "Penwith",
    "Oxley",
    "Rusk",
    "Fallow",
]
_EXPORTS = [
    "glassware",
    "wool",
    "copper bells",
    "blue cheese",
    "silk rope",
    "clocks",
    "salt",
    "honey wine",
    "paper",
    "lanterns",
    "saddles",
    "pottery",
    "dyes",
    "violins",
    "maps",
]
_FIRST = [
    "Ada",
    "Bram",
    "Cora",
    "Dario",
    "Elin",
    "Fenn",
    "Greta",
    "Hugo",
    "Ines",
    "Jonas",
    "Kaia",
    "Lars",
    "Mira",
    "Nils",
    "Orla",
    "Piet",
    "Runa",
    "Sven",
    "Tove",
    "Ulla",
]

#: attribute -> (question templates, the article sentence, the misleading note sentence)
ATTRIBUTES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "river": (
        ("Which river flows through {town}?", "What river runs past {town}?"),
        "The {value} river flows through {town}.",
        "Some maps wrongly show the {value} river flowing through {town}.",
    ),
    "country": (
        ("In which country is {town}?", "{town} lies in what country?"),
        "{town} is a town in {value}.",
        "Older guides place {town} in {value}.",
    ),
    "founded": (
        ("When was {town} founded?", "In what year was {town} established?"),
        "{town} was founded in {value}.",
        "A stone in the square claims {town} was founded in {value}.",
    ),
    "mayor": (
        ("Who is the mayor of {town}?", "Who governs {town}?"),
        "The mayor of {town} is {value}.",
        "Visitors often think the mayor of {town} is {value}.",
    ),
    "export": (
        ("What is {town} known for?", "What does {town} produce?"),
        "{town} is known for its {value}.",
        "Market traders say {town} is known for its {value}.",
    ),
}


@dataclass(frozen=True)
class Town:
    """One fictional town and its facts (its article leaves ``omitted`` out)."""

    name: str
    facts: dict[str, str]
    omitted: str


@dataclass(frozen=True)
class Document:
    """A document of the corpus."""

    id: str
    text: str
    towns: tuple[str, ...]


def _name(rng: random.Random, taken: set[str]) -> str:
    while True:
        name = "".join(rng.choice(_SYLLABLES) for _ in range(rng.choice((2, 3)))).capitalize()
        if name not in taken and len(name) > 3:
            taken.add(name)
            return name


def _facts(rng: random.Random) -> dict[str, str]:
    return {
        "river": rng.choice(_RIVERS),
        "country": rng.choice(_COUNTRIES),
        "founded": str(rng.randint(1100, 1900)),
        "mayor": f"{rng.choice(_FIRST)} {rng.choice(_FIRST)}son",
        "export": rng.choice(_EXPORTS),
    }


def _article(i: int, town: Town) -> Document:
    lines = [
        ATTRIBUTES[a][1].format(town=town.name, value=v)
        for a, v in town.facts.items()
        if a != town.omitted
    ]
    return Document(id=f"town-{i:03d}", text=" ".join(lines), towns=(town.name,))


def _note(i: int, rng: random.Random, towns: list[Town], about: Town | None) -> Document:
    """Travel notes through three towns: the fact ``about``'s article omits, stated right,
    and misleading claims about the others."""
    picked = rng.sample([t for t in towns if t is not about], 3 if about is None else 2)
    if about is not None:
        picked.insert(rng.randrange(3), about)
    lines = [f"Travel notes from {picked[0].name} to {picked[1].name} and {picked[2].name}."]
    for town in picked:
        if town is about:
            value = town.facts[town.omitted]
            lines.append(ATTRIBUTES[town.omitted][1].format(town=town.name, value=value))
            continue
        attribute = rng.choice(list(ATTRIBUTES))
        wrong = _facts(rng)[attribute]
        _, fact, misleading = ATTRIBUTES[attribute]
        template = misleading if wrong != town.facts[attribute] else fact
        lines.append(template.format(town=town.name, value=wrong))
    return Document(id=f"note-{i:03d}", text=" ".join(lines), towns=tuple(t.name for t in picked))


@cache
def corpus(
    towns: int = 160, notes: int = 320, seed: int = 7
) -> tuple[tuple[Town, ...], tuple[Document, ...]]:
    """The towns and the documents (articles first, then travel notes)."""
    rng = random.Random(seed)
    taken: set[str] = set()
    made = [
        Town(name=_name(rng, taken), facts=_facts(rng), omitted=rng.choice(list(ATTRIBUTES)))
        for _ in range(towns)
    ]
    documents = [_article(i, t) for i, t in enumerate(made)]
    subjects: list[Town | None] = [t for t in made for _ in range(rng.choice((1, 2)))]
    subjects += [None] * max(0, notes - len(subjects))
    rng.shuffle(subjects)
    documents += [_note(i, rng, made, about) for i, about in enumerate(subjects)]
    return tuple(made), tuple(documents)


def questions(n: int = 300, seed: int = 11) -> list[dict[str, Any]]:
    """The evaluation set: ``id``, ``question``, ``answer``, ``attribute`` and ``relevant``
    (the article graded 2, travel notes that mention the town graded 1)."""
    towns, documents = corpus()
    rng = random.Random(seed)
    out = []
    for i in range(n):
        t = rng.randrange(len(towns))
        town = towns[t]
        attribute = rng.choice(list(ATTRIBUTES))
        template = rng.choice(ATTRIBUTES[attribute][0])
        relevant = {d.id: 1 for d in documents if d.id.startswith("note") and town.name in d.towns}
        relevant[f"town-{t:03d}"] = 2
        out.append(
            {
                "id": f"q{i:04d}",
                "question": template.format(town=town.name),
                "answer": town.facts[attribute],
                "attribute": attribute,
                "relevant": relevant,
            }
        )
    return out
