"""Rewriting text into words the engines read correctly, for EN, ES, PT, FR, DE, IT.

Every engine here phonemises with espeak-ng, which already reads digits,
decimals, thousands separators, percentages and most ordinals in the
text's language ("25" -> "veinticinco", "3,5" -> "tres coma cinco", "1º" ->
"primero"). This module fixes what it gets wrong, each case checked against
espeak-ng 1.52:

- abbreviations it spells out or misreads ("Sr." in Portuguese -> "esse
  erre", German "z. B.", "usw.", French "M.", Spanish "EE. UU.");
- amounts of money: "$20" is read "dollar twenty", "€20" "euros twenty";
  "R$ 5,50" -> "5 reais e 50 centavos";
- times written with "h" ("10h30", FR and PT) and German "10:30 Uhr";
- French ordinals ("2e" -> "deuxième") and German dates ("am 3. Oktober"
  -> "am dritten Oktober").

`no_break_words()` lists the abbreviations whose period never ends a
sentence, for the sentence splitter. The rewritten text is only what the
engine reads; clients see the text as written.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

# Abbreviation -> words, by language. A key ending in "." is one token; keys
# with inner spaces ("z. B.") also match without them ("z.B.").
_ABBREVIATIONS: dict[str, dict[str, str]] = {
    "en": {
        "Mr.": "Mister",
        "Mrs.": "Missus",
        "Ms.": "Miz",
        "Dr.": "Doctor",
        "Prof.": "Professor",
        "Jr.": "Junior",
        "Sr.": "Senior",
        "vs.": "versus",
        "approx.": "approximately",
        "etc.": "et cetera",
        "e.g.": "for example",
        "i.e.": "that is",
        "Mt.": "Mount",
    },
    "es": {
        "Sr.": "señor",
        "Sra.": "señora",
        "Srta.": "señorita",
        "Dr.": "doctor",
        "Dra.": "doctora",
        "Ud.": "usted",
        "Uds.": "ustedes",
        "Prof.": "profesor",
        "etc.": "etcétera",
        "aprox.": "aproximadamente",
        "p. ej.": "por ejemplo",
        "EE. UU.": "Estados Unidos",
        "núm.": "número",
        "Avda.": "avenida",
        "Av.": "avenida",
        "Dña.": "doña",
    },
    "pt": {
        "Sr.": "senhor",
        "Sra.": "senhora",
        "Srta.": "senhorita",
        "Dr.": "doutor",
        "Dra.": "doutora",
        "Prof.": "professor",
        "Profa.": "professora",
        "etc.": "etcétera",
        "aprox.": "aproximadamente",
        "p. ex.": "por exemplo",
        "Av.": "avenida",
        "EUA": "Estados Unidos",
    },
    "fr": {
        "M.": "Monsieur",
        "MM.": "Messieurs",
        "Mme": "Madame",
        "Mmes": "Mesdames",
        "Mlle": "Mademoiselle",
        "Dr": "docteur",
        "Dr.": "docteur",
        "Pr": "professeur",
        "etc.": "et cetera",
        "p. ex.": "par exemple",
        "env.": "environ",
        "cf.": "confer",
    },
    "de": {
        "Dr.": "Doktor",
        "Prof.": "Professor",
        "Hr.": "Herr",
        "Fr.": "Frau",
        "z. B.": "zum Beispiel",
        "d. h.": "das heißt",
        "u. a.": "unter anderem",
        "ca.": "circa",
        "usw.": "und so weiter",
        "bzw.": "beziehungsweise",
        "Nr.": "Nummer",
        "inkl.": "inklusive",
        "evtl.": "eventuell",
        "ggf.": "gegebenenfalls",
        "Str.": "Straße",
    },
    "it": {
        "Sig.": "signor",
        "Sig.ra": "signora",
        "Sigg.": "signori",
        "Dott.": "dottor",
        "Dott.ssa": "dottoressa",
        "Prof.": "professor",
        "ecc.": "eccetera",
        "p. es.": "per esempio",
    },
}
# Abbreviations that often end a sentence: their period may still end one.
_MAY_END_SENTENCE = frozenset({"etc.", "usw.", "env.", "ecc."})


@dataclass(frozen=True, slots=True)
class _Currency:
    one: str
    many: str
    cent_one: str
    cent_many: str


_SYMBOLS = ("US$", "R$", "$", "€", "£")
_CURRENCIES: dict[str, dict[str, _Currency]] = {
    "en": {
        "$": _Currency("dollar", "dollars", "cent", "cents"),
        "€": _Currency("euro", "euros", "cent", "cents"),
        "£": _Currency("pound", "pounds", "penny", "pence"),
        "R$": _Currency("real", "reais", "centavo", "centavos"),
    },
    "es": {
        "$": _Currency("dólar", "dólares", "centavo", "centavos"),
        "€": _Currency("euro", "euros", "céntimo", "céntimos"),
        "£": _Currency("libra", "libras", "penique", "peniques"),
        "R$": _Currency("real", "reales", "centavo", "centavos"),
    },
    "pt": {
        "$": _Currency("dólar", "dólares", "centavo", "centavos"),
        "€": _Currency("euro", "euros", "cêntimo", "cêntimos"),
        "£": _Currency("libra", "libras", "pêni", "pence"),
        "R$": _Currency("real", "reais", "centavo", "centavos"),
    },
    "fr": {
        "$": _Currency("dollar", "dollars", "cent", "cents"),
        "€": _Currency("euro", "euros", "centime", "centimes"),
        "£": _Currency("livre", "livres", "penny", "pence"),
        "R$": _Currency("réal", "réaux", "centavo", "centavos"),
    },
    "de": {
        "$": _Currency("Dollar", "Dollar", "Cent", "Cent"),
        "€": _Currency("Euro", "Euro", "Cent", "Cent"),
        "£": _Currency("Pfund", "Pfund", "Penny", "Pence"),
        "R$": _Currency("Real", "Reais", "Centavo", "Centavos"),
    },
    "it": {
        "$": _Currency("dollaro", "dollari", "centesimo", "centesimi"),
        "€": _Currency("euro", "euro", "centesimo", "centesimi"),
        "£": _Currency("sterlina", "sterline", "penny", "pence"),
        "R$": _Currency("real", "reais", "centavo", "centavos"),
    },
}
_AND = {"en": "and", "es": "con", "pt": "e", "fr": "et", "de": "und", "it": "e"}

_AMOUNT = r"\d{1,3}(?:[.,\u00a0\u202f ]\d{3})+(?:[.,]\d{1,2})?|\d+(?:[.,]\d{1,2})?"
_SYMBOL = "|".join(re.escape(s) for s in _SYMBOLS)
_MONEY = re.compile(
    rf"(?<![\w$])(?P<pre>{_SYMBOL})\s?(?P<a1>{_AMOUNT})(?!\d)|(?<![\d.,])(?P<a2>{_AMOUNT})\s?(?P<post>€|\$|£)"
)

_FR_ORDINALS = (
    "deuxième troisième quatrième cinquième sixième septième huitième neuvième dixième onzième "
    "douzième treizième quatorzième quinzième seizième dix-septième dix-huitième dix-neuvième vingtième"
).split()
_DE_ORDINALS = (
    "erst zweit dritt viert fünft sechst siebt acht neunt zehnt elft zwölft dreizehnt vierzehnt "
    "fünfzehnt sechzehnt siebzehnt achtzehnt neunzehnt zwanzigst einundzwanzigst zweiundzwanzigst "
    "dreiundzwanzigst vierundzwanzigst fünfundzwanzigst sechsundzwanzigst siebenundzwanzigst "
    "achtundzwanzigst neunundzwanzigst dreißigst einunddreißigst"
).split()
DE_MONTHS = frozenset(
    "Januar Februar März April Mai Juni Juli August September Oktober November Dezember".split()
)
_DE_DATE = re.compile(
    rf"(?:(?P<before>\w+)\s)?\b(?P<day>[1-9]|[12]\d|3[01])\.\s(?P<month>{'|'.join(DE_MONTHS)})\b"
)
_DE_DATIVE = frozenset("am vom zum im beim dem den seit ab bis".split())
_DE_ARTICLE = frozenset("der die das".split())


def _abbreviation_pattern(abbreviation: str) -> str:
    parts = [re.escape(p) for p in abbreviation.split(" ")]
    body = r"\s?".join(parts)
    start = r"(?<![\w.])" if abbreviation[0].isalnum() else ""
    end = r"(?![\w])" if abbreviation.endswith(".") else r"\b"
    return start + body + end


def _compile_abbreviations(table: dict[str, str]) -> tuple[re.Pattern[str], dict[str, str]]:
    # Longest first, so "Sra." wins over "Sr." and "MM." over "M.".
    keys = sorted(table, key=len, reverse=True)
    pattern = re.compile("|".join(f"({_abbreviation_pattern(k)})" for k in keys))
    return pattern, {k.replace(" ", ""): v for k, v in table.items()}


_COMPILED = {lang: _compile_abbreviations(table) for lang, table in _ABBREVIATIONS.items()}


def no_break_words(language: str) -> frozenset[str]:
    """Lower-case words (without their final period) whose period does not end a sentence."""
    words: set[str] = set()
    for abbreviation in _ABBREVIATIONS.get(language, {}):
        parts = abbreviation.split(" ")
        # "EE. UU." often ends a sentence: only the inner periods never do.
        if len(parts) == 1 and (not abbreviation.endswith(".") or abbreviation in _MAY_END_SENTENCE):
            continue
        words.update(p.rstrip(".").lower() for p in (parts if len(parts) == 1 else parts[:-1]))
    return frozenset(words)


def _amount(text: str) -> tuple[str, str]:
    """("1000", "50") from "1.000,50" or "1,000.50".

    A separator before 1 or 2 final digits is the decimal one; any other is a
    thousands separator.
    """
    match = re.fullmatch(r"(.*?)(?:[.,](\d{1,2}))?", text)
    assert match is not None
    whole = re.sub(r"\D", "", match.group(1))
    cents = (match.group(2) or "").ljust(2, "0") if match.group(2) else ""
    return whole, cents


def _money(language: str) -> Callable[[re.Match[str]], str]:
    currencies, conjunction = _CURRENCIES[language], _AND[language]

    def spell(match: re.Match[str]) -> str:
        symbol = match.group("pre") or match.group("post")
        currency = currencies["$" if symbol == "US$" else symbol]
        whole, cents = _amount(match.group("a1") or match.group("a2"))
        words = f"{whole} {currency.one if whole == '1' else currency.many}"
        if cents and int(cents):
            n = str(int(cents))
            words += f" {conjunction} {n} {currency.cent_one if n == '1' else currency.cent_many}"
        return words

    return spell


def _times(text: str, language: str) -> str:
    if language == "fr":
        text = re.sub(r"\b(\d{1,2})\s?h\s?(\d{2})\b", r"\1 heures \2", text)
        text = re.sub(r"\b(\d{1,2})\s?h\b", r"\1 heures", text)
    elif language == "pt":
        text = re.sub(r"\b(\d{1,2})\s?h\s?(\d{2})\b", r"\1 horas e \2", text)
        text = re.sub(r"\b(\d{1,2})\s?h\b", r"\1 horas", text)
    elif language == "de":
        text = re.sub(r"\b(\d{1,2}):(\d{2})\s?Uhr\b", r"\1 Uhr \2", text)
    return text


def _fr_ordinal(match: re.Match[str]) -> str:
    n = int(match.group(1))
    return _FR_ORDINALS[n - 2] if 2 <= n <= 20 else match.group(0)


def _de_date(match: re.Match[str]) -> str:
    before = match.group("before")
    stem = _DE_ORDINALS[int(match.group("day")) - 1]
    word = (before or "").lower()
    ending = "en" if word in _DE_DATIVE else "e" if word in _DE_ARTICLE else "er"
    prefix = f"{before} " if before else ""
    return f"{prefix}{stem}{ending} {match.group('month')}"


def normalize(text: str, language: str) -> str:
    """`text` as the engine should read it; unchanged for languages without rules.

    `language` is a primary subtag ("en", "pt", ...).
    """
    if language not in _COMPILED:
        return text
    pattern, table = _COMPILED[language]
    text = _MONEY.sub(_money(language), text)
    text = _times(text, language)
    if language == "fr":
        text = re.sub(r"\b(\d{1,2})(?:e|ème|eme)\b", _fr_ordinal, text)
    elif language == "de":
        text = _DE_DATE.sub(_de_date, text)
    return pattern.sub(lambda m: table[re.sub(r"\s", "", m.group(0))], text)
