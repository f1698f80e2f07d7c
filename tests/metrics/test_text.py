"""Text evals against the SQuAD v1.1 evaluation script and Google's rouge_score."""

from __future__ import annotations

import random
import re
import string
from collections import Counter

import pytest
from rouge_score import rouge_scorer

from hypermetric.errors import DefinitionError
from hypermetric.metrics import (
    contains,
    exact_match,
    normalize_answer,
    normalized_exact_match,
    regex_match,
    rouge_l,
    token_f1,
)
from hypermetric.metrics._text_utils import lcs_length, rouge_tokens

CASES = 400


# --- The reference: functions of the official SQuAD v1.1 evaluate-v1.1.py, verbatim ---
def squad_normalize_answer(s):  # type: ignore[no-untyped-def]
    """Lower text and remove punctuation, articles and extra whitespace."""

    def remove_articles(text):  # type: ignore[no-untyped-def]
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):  # type: ignore[no-untyped-def]
        return " ".join(text.split())

    def remove_punc(text):  # type: ignore[no-untyped-def]
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):  # type: ignore[no-untyped-def]
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def squad_f1_score(prediction, ground_truth):  # type: ignore[no-untyped-def]
    prediction_tokens = squad_normalize_answer(prediction).split()
    ground_truth_tokens = squad_normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


def squad_exact_match_score(prediction, ground_truth):  # type: ignore[no-untyped-def]
    return squad_normalize_answer(prediction) == squad_normalize_answer(ground_truth)


def squad_metric_max_over_ground_truths(metric_fn, prediction, ground_truths):  # type: ignore[no-untyped-def]
    scores_for_ground_truths = []
    for ground_truth in ground_truths:
        score = metric_fn(prediction, ground_truth)
        scores_for_ground_truths.append(score)
    return max(scores_for_ground_truths)


# --- Random inputs ---------------------------------------------------------------------
WORDS = [
    "cat", "Cat", "CAT", "dog", "sat", "mat", "on", "Paris", "paris", "1990", "42",
    "theory", "another", "anthem", "a", "A", "an", "An", "the", "The", "THE",
    "state-of-the-art", "don't", "U.S.", "e-mail", "x_y", "(note)", "\"quoted\"",
    "café", "Straße", "naïve", "東京", "—", "…", "!", "?", ",", ".", "'s", "$5",
]  # fmt: skip
SPACES = [" ", " ", " ", "  ", "\t", "\n", " \u00a0"]


def random_text(rng: random.Random, words: list[str] = WORDS, max_words: int = 12) -> str:
    out = [rng.choice(SPACES) if rng.random() < 0.2 else ""]
    for _ in range(rng.randint(0, max_words)):
        out.append(rng.choice(words))
        out.append(rng.choice(SPACES))
    return "".join(out)


def perturb(rng: random.Random, text: str) -> str:
    """A variant of ``text`` that often normalises to the same answer."""
    variants = [text.upper(), text.lower(), f"The {text}.", f"  {text}  ", text + "!"]
    return rng.choice([*variants, random_text(rng)])


def qa_cases(seed: int) -> list[tuple[str, list[str]]]:
    rng = random.Random(seed)
    cases = []
    for _ in range(CASES):
        golds = [random_text(rng) for _ in range(rng.randint(1, 3))]
        output = perturb(rng, rng.choice(golds)) if rng.random() < 0.5 else random_text(rng)
        cases.append((output, golds))
    return cases


# --- SQuAD v1.1 ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("The Cat!", "cat"),
        ("  A  quick,  brown fox. ", "quick brown fox"),
        ("an apple a day", "apple day"),
        ("Theory of another anthem", "theory of another anthem"),
        ("Denver Broncos", "denver broncos"),
        ("the Denver Broncos.", "denver broncos"),
        ("state-of-the-art", "stateoftheart"),
        ("U.S.\tArmy\n", "us army"),
        ("“quoted”", "“quoted”"),  # SQuAD strips only ASCII punctuation
        ("", ""),
    ],
)
def test_normalize_answer_follows_squad(text: str, normalized: str) -> None:
    assert normalize_answer(text) == normalized
    assert squad_normalize_answer(text) == normalized


def test_squad_hand_checked_scores() -> None:
    assert normalized_exact_match("the Denver Broncos", "Denver Broncos") == 1.0
    assert normalized_exact_match("Denver", "Denver Broncos") == 0.0
    # tokens [cat, sat] vs [cat, sat, down]: P = 1, R = 2/3, F1 = 0.8
    assert token_f1("the cat sat", "cat sat down") == pytest.approx(0.8)
    # repeated tokens count at most as often as both sides have them: P = 1/3, R = 1
    assert token_f1("cat cat cat", "cat") == pytest.approx(0.5)
    assert token_f1("dog", ["cat", "the dog", "mouse"]) == 1.0
    # SQuAD v1.1 gives 0 when either side normalises to nothing, even both
    assert token_f1("the", "a") == 0.0
    assert normalized_exact_match("the", "a") == 1.0


@pytest.mark.parametrize("seed", [0, 1])
def test_normalize_answer_matches_squad_script_on_random_text(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(CASES):
        text = random_text(rng)
        assert normalize_answer(text) == squad_normalize_answer(text), repr(text)


@pytest.mark.parametrize("seed", [0, 1])
def test_em_and_f1_match_squad_script_on_random_answers(seed: int) -> None:
    exact, partial = 0, 0
    for output, golds in qa_cases(seed):
        want_em = float(squad_metric_max_over_ground_truths(squad_exact_match_score, output, golds))
        want_f1 = squad_metric_max_over_ground_truths(squad_f1_score, output, golds)
        assert normalized_exact_match(output, golds) == want_em, (output, golds)
        assert token_f1(output, golds) == pytest.approx(want_f1, abs=1e-12), (output, golds)
        if len(golds) == 1:
            assert token_f1(output, golds[0]) == pytest.approx(want_f1, abs=1e-12)
        exact += want_em == 1.0
        partial += 0.0 < want_f1 < 1.0
    # the random cases exercise matches, partial overlaps and misses
    assert CASES // 10 < exact < CASES - CASES // 10
    assert partial > CASES // 10


# --- exact_match and contains ---------------------------------------------------------
def test_exact_match_is_strict_but_ignores_surrounding_whitespace() -> None:
    assert exact_match("Paris", "Paris") == 1.0
    assert exact_match(" Paris\n", "Paris ") == 1.0
    assert exact_match("paris", "Paris") == 0.0
    assert exact_match("Paris.", "Paris") == 0.0
    assert exact_match("Lyon", ["Paris", "Lyon"]) == 1.0
    assert exact_match("Nice", ("Paris", "Lyon")) == 0.0


@pytest.mark.parametrize(
    ("output", "answer", "expected"),
    [
        ("It is Paris.", "paris", 1.0),
        ("The capital is PARIS, France", "Paris France", 1.0),
        ("Parisian cafés", "paris", 0.0),
        ("in Paris", ["Lyon", "the paris"], 1.0),
        ("Paris, France", "France, Paris", 0.0),
        ("anything", "the", 1.0),  # normalises to nothing: in every output, like "" in s
        ("", "Paris", 0.0),
    ],
)
def test_contains_hand_cases(output: str, answer: str | list[str], expected: float) -> None:
    assert contains(output, answer) == expected


def reference_contains(output: str, answers: list[str]) -> float:
    """Whole-token sublist search on SQuAD-normalised tokens."""
    tokens = squad_normalize_answer(output).split()
    for answer in answers:
        needle = squad_normalize_answer(answer).split()
        n = len(needle)
        if any(tokens[i : i + n] == needle for i in range(len(tokens) - n + 1)):
            return 1.0
    return 0.0


def test_contains_matches_a_token_search_on_random_text() -> None:
    rng = random.Random(7)
    found = 0
    for output, golds in qa_cases(7):
        if rng.random() < 0.3:  # embed an answer in a longer output
            output = f"{random_text(rng, max_words=4)} {rng.choice(golds)} {random_text(rng)}"
        want = reference_contains(output, golds)
        assert contains(output, golds) == want, (output, golds)
        found += want == 1.0
    assert CASES // 10 < found < CASES - CASES // 10


# --- regex_match ---------------------------------------------------------------------------
def test_regex_match_is_a_factory_with_params() -> None:
    digits = regex_match(r"^\d+$")
    assert digits.name == "regex_match"
    assert dict(digits.params) == {"pattern": r"^\d+$", "flags": 0}
    assert digits.parameter_names == ("output",)
    assert digits("2024") == 1.0
    assert digits("year 2024") == 0.0
    assert regex_match(r"\d{4}")("year 2024") == 1.0  # re.search: anywhere
    shout = regex_match("yes", re.IGNORECASE, name="says_yes")
    assert shout.name == "says_yes"
    assert shout.params["flags"] == re.IGNORECASE
    assert shout("Oh YES!") == 1.0
    assert regex_match(re.compile("y", re.I))("Y") == 1.0


def test_regex_match_agrees_with_re_search_on_random_text() -> None:
    rng = random.Random(3)
    patterns = [r"\bcat\b", r"^the", r"[0-9]{2}", r"(?i)paris", r"\.$", r"caf."]
    evals = [(re.compile(p), regex_match(p)) for p in patterns]
    for _ in range(CASES):
        text = random_text(rng)
        for compiled, ev in evals:
            assert ev(text) == float(compiled.search(text) is not None)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("(unclosed",), "cannot compile"),
        ((42,), "must be a string or re.Pattern"),
        ((re.compile("a"), re.I), "not both"),
        (("a", "i"), "cannot compile"),
    ],
)
def test_regex_match_rejects_bad_definitions(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        regex_match(*args)  # type: ignore[arg-type]


# --- ROUGE-L -----------------------------------------------------------------------------
ASCII_WORDS = [w for w in WORDS if w.isascii()] + ["mat", "sat", "on", "cat", "hat"] * 3


def plain_lcs(a: list[str], b: list[str]) -> int:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a, 1):
        for j, y in enumerate(b, 1):
            table[i][j] = (
                table[i - 1][j - 1] + 1 if x == y else max(table[i - 1][j], table[i][j - 1])
            )
    return table[-1][-1]


def test_lcs_length_matches_dynamic_programming() -> None:
    rng = random.Random(11)
    for _ in range(CASES):
        a = [rng.choice("abcde") for _ in range(rng.randint(0, 90))]
        b = [rng.choice("abcdef") for _ in range(rng.randint(0, 90))]
        assert lcs_length(a, b) == plain_lcs(a, b), (a, b)


def test_rouge_l_hand_checked() -> None:
    # LCS of "the cat sat on the mat" / "the cat on a mat" is "the cat on mat": 4 tokens,
    # P = 4/6, R = 4/5, F = 2PR / (P + R) = 8/11
    assert rouge_l("the cat sat on the mat", "the cat on a mat") == pytest.approx(8 / 11)
    assert rouge_l("Hello, World!", "hello world") == 1.0
    assert rouge_l("", "hello") == 0.0
    assert rouge_l("...", "...") == 0.0  # no tokens on either side


@pytest.mark.parametrize("seed", [0, 1])
def test_rouge_l_matches_rouge_score_on_ascii_text(seed: int) -> None:
    scorer = rouge_scorer.RougeScorer(["rougeL"])  # default tokenizer, no stemming
    rng = random.Random(seed)
    for _ in range(CASES):
        golds = [random_text(rng, ASCII_WORDS, 20) for _ in range(rng.randint(1, 3))]
        output = random_text(rng, ASCII_WORDS, 20)
        want = scorer.score_multi(golds, output)["rougeL"].fmeasure
        assert rouge_l(output, golds) == pytest.approx(want, abs=1e-12), (output, golds)
        single = scorer.score(golds[0], output)["rougeL"].fmeasure
        assert rouge_l(output, golds[0]) == pytest.approx(single, abs=1e-12)


class UnicodeTokenizer:
    """Letters and digits of any script, written independently of the metrics code."""

    def tokenize(self, text: str) -> list[str]:
        return "".join(ch if ch.isalnum() else " " for ch in text.lower()).split()


def test_rouge_l_matches_rouge_score_with_a_unicode_tokenizer() -> None:
    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=UnicodeTokenizer())
    rng = random.Random(5)
    for _ in range(CASES):
        gold, output = random_text(rng, max_words=20), random_text(rng, max_words=20)
        assert rouge_tokens(output) == UnicodeTokenizer().tokenize(output)
        want = scorer.score(gold, output)["rougeL"].fmeasure
        assert rouge_l(output, gold) == pytest.approx(want, abs=1e-12), (output, gold)


def test_rouge_l_keeps_non_ascii_letters_that_rouge_score_drops() -> None:
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    assert scorer.score("café", "cafè")["rougeL"].fmeasure == 1.0  # both become "caf"
    assert rouge_l("cafè", "café") == 0.0
    assert rouge_l("Straße 5", "straße") == pytest.approx(2 / 3)


# --- Arguments ----------------------------------------------------------------------------
TEXT_EVALS = [exact_match, normalized_exact_match, token_f1, contains, rouge_l]


@pytest.mark.parametrize("ev", TEXT_EVALS, ids=lambda e: e.name)
def test_no_acceptable_answer_gives_no_score(ev: object) -> None:
    assert ev("anything", []) is None  # type: ignore[operator]


@pytest.mark.parametrize("ev", TEXT_EVALS, ids=lambda e: e.name)
def test_wrong_argument_types_raise(ev: object) -> None:
    with pytest.raises(TypeError, match="output must be a string"):
        ev(None, "x")  # type: ignore[operator]
    with pytest.raises(TypeError, match="answer must be a string or a list"):
        ev("x", 3)  # type: ignore[operator]
    with pytest.raises(TypeError, match="every acceptable answer must be a string"):
        ev("x", ["a", None])  # type: ignore[operator]
    with pytest.raises(TypeError, match="output must be a string"):
        regex_match("x")(b"x")
