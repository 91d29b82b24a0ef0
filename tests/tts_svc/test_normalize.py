"""Unit tests of the text normaliser (tts_svc.normalize): what espeak-ng would misread."""

from __future__ import annotations

import pytest

from tts_svc.normalize import no_break_words, normalize


@pytest.mark.parametrize(
    ("language", "text", "expected"),
    [
        ("en", "Dr. Smith and Mrs. Jones, e.g. today", "Doctor Smith and Missus Jones, for example today"),
        ("en", "apples, pears etc.", "apples, pears et cetera"),
        ("es", "El Sr. García y la Sra. Pérez", "El señor García y la señora Pérez"),
        ("es", "Vive en EE. UU. y en EE.UU.", "Vive en Estados Unidos y en Estados Unidos"),
        ("es", "Ud. tiene, p. ej., dos", "usted tiene, por ejemplo, dos"),
        ("pt", "O Sr. Silva e a Sra. Costa", "O senhor Silva e a senhora Costa"),
        ("pt", "A Dra. Ana, p. ex. hoje", "A doutora Ana, por exemplo hoje"),
        ("fr", "M. Dupont et Mme Martin", "Monsieur Dupont et Madame Martin"),
        ("fr", "MM. Durand et Mlle Roux", "Messieurs Durand et Mademoiselle Roux"),
        (
            "de",
            "Dr. Müller, z. B. heute, ca. zehn usw.",
            "Doktor Müller, zum Beispiel heute, circa zehn und so weiter",
        ),
        ("de", "z.B. Nr. 5 bzw. 6", "zum Beispiel Nummer 5 beziehungsweise 6"),
        ("it", "Il Sig. Rossi e la Sig.ra Bianchi", "Il signor Rossi e la signora Bianchi"),
    ],
)
def test_abbreviations_become_words(language: str, text: str, expected: str) -> None:
    assert normalize(text, language) == expected


@pytest.mark.parametrize(
    ("language", "text", "expected"),
    [
        ("en", "It costs $20.", "It costs 20 dollars."),
        ("en", "Pay $5.50 now", "Pay 5 dollars and 50 cents now"),
        ("en", "€20 or £1", "20 euros or 1 pound"),
        ("en", "$1,000.00 in total", "1000 dollars in total"),
        ("es", "Cuesta $20 o 5 €", "Cuesta 20 dólares o 5 euros"),
        ("es", "Son 1.250,75 €", "Son 1250 euros con 75 céntimos"),
        ("pt", "Custa R$ 5,50", "Custa 5 reais e 50 centavos"),
        ("pt", "R$1,00", "1 real"),
        ("fr", "Il a payé 12,50 €", "Il a payé 12 euros et 50 centimes"),
        ("de", "Das kostet 5,99 €", "Das kostet 5 Euro und 99 Cent"),
    ],
)
def test_money_is_spoken_number_first(language: str, text: str, expected: str) -> None:
    assert normalize(text, language) == expected


@pytest.mark.parametrize(
    ("language", "text", "expected"),
    [
        ("fr", "à 10h30 ou 9h", "à 10 heures 30 ou 9 heures"),
        ("pt", "às 10h30 ou 9h", "às 10 horas e 30 ou 9 horas"),
        ("de", "um 10:30 Uhr", "um 10 Uhr 30"),
        ("fr", "la 2e fois, le 3ème jour, le 1er mai", "la deuxième fois, le troisième jour, le 1er mai"),
        ("de", "am 3. Oktober", "am dritten Oktober"),
        ("de", "Der 1. Mai ist frei.", "Der erste Mai ist frei."),
        ("de", "Berlin, 24. Dezember", "Berlin, vierundzwanzigster Dezember"),
    ],
)
def test_times_ordinals_and_dates(language: str, text: str, expected: str) -> None:
    assert normalize(text, language) == expected


@pytest.mark.parametrize(
    ("language", "text"),
    [
        ("en", "It is 3.5 km and 10% more, at 10:30."),
        ("es", "Tiene 3,5 kilos y 1.000 euros, el 1º de mayo."),
        ("ru", "Д-р Иванов заплатил $5."),  # no rules for Russian: left as written
        ("en", "Send it to dr.who@example.com"),
    ],
)
def test_what_espeak_reads_well_is_left_alone(language: str, text: str) -> None:
    assert normalize(text, language) == text


def test_no_break_words_are_the_abbreviations_whose_period_never_ends_a_sentence() -> None:
    es = no_break_words("es")
    assert {"sr", "sra", "dra", "ud", "ee", "p"} <= es
    assert "uu" not in es and "etc" not in es  # "EE. UU." and "etc." often end one
    assert {"z", "ca", "nr", "dr"} <= no_break_words("de")
    assert "usw" not in no_break_words("de")
    assert no_break_words("ru") == frozenset()
