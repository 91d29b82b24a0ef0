"""chrF (Popović 2015) as sacrebleu 2.x computes it by default, without the dependency.

Character n-grams of orders 1-6 with whitespace removed, beta = 2; statistics
summed over the corpus, then the F-score of each order averaged over the
orders that occur. Agrees with `sacrebleu.corpus_chrf` to 0.01 on the Tatoeba
samples (checked with sacrebleu 2.4.3).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

ORDER = 6
BETA = 2.0


def _ngrams(text: str, n: int) -> Counter[str]:
    chars = "".join(text.split())
    return Counter(chars[i:i + n] for i in range(len(chars) - n + 1))


def corpus_chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """chrF2 in [0, 100] of hypotheses against one reference each."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    matches, hyp_total, ref_total = [0] * ORDER, [0] * ORDER, [0] * ORDER
    for hyp, ref in zip(hypotheses, references, strict=True):
        for n in range(1, ORDER + 1):
            h, r = _ngrams(hyp, n), _ngrams(ref, n)
            matches[n - 1] += sum((h & r).values())
            hyp_total[n - 1] += sum(h.values())
            ref_total[n - 1] += sum(r.values())
    factor, eps, score, orders = BETA**2, 1e-16, 0.0, 0
    for matched, in_hyp, in_ref in zip(matches, hyp_total, ref_total, strict=True):
        precision = matched / in_hyp if in_hyp else eps
        recall = matched / in_ref if in_ref else eps
        denominator = factor * precision + recall
        score += (1 + factor) * precision * recall / denominator if denominator > 0 else eps
        orders += 1 if in_hyp and in_ref else 0
    return 100 * score / orders if orders else 0.0
