"""Text measures: corpus BLEU and chrF through sacrebleu, with the signatures that make them comparable.

```python
from sozo.metrics.text import corpus_scores
corpus_scores(["i 'm sorry ."], ["i 'm sorry ."])   # {'bleu': 100.0, 'chrf': 100.0, 'bleu_signature': 'nrefs:1|…', …}
```
``tokenize="none"`` scores the tokens as they are (right for text tokenised like the references,
as sozo's seq2seq output is); ``"13a"`` is sacrebleu's default for detokenised text.
"""
from __future__ import annotations

from typing import Any

from ..errors import SozoError

TOKENIZERS = ("none", "13a", "intl", "char", "ja-mecab")


def _sacrebleu() -> Any:
    try:
        import sacrebleu
    except ImportError:
        raise SozoError("BLEU and chrF need sacrebleu, which is not installed", hint="pip install sacrebleu") from None
    return sacrebleu


def corpus_scores(hypotheses: list[str], references: list[str], tokenize: str = "none") -> dict[str, Any]:
    """Corpus BLEU and chrF (0-100) of ``hypotheses`` against one reference each."""
    if len(hypotheses) != len(references):
        raise SozoError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        raise SozoError("no sentences to score")
    if tokenize not in TOKENIZERS:
        raise SozoError(f"unknown BLEU tokenizer '{tokenize}'", hint="use one of " + ", ".join(TOKENIZERS))
    sb = _sacrebleu()
    bleu = sb.metrics.BLEU(tokenize=tokenize, force=True)  # force: tokenised text is scored on purpose
    chrf = sb.metrics.CHRF()
    b = bleu.corpus_score(hypotheses, [references])
    c = chrf.corpus_score(hypotheses, [references])
    return {"bleu": round(float(b.score), 2), "chrf": round(float(c.score), 2),
            "bleu_precisions": [round(float(p), 1) for p in b.precisions], "brevity_penalty": round(float(b.bp), 3),
            "hyp_len": int(b.sys_len), "ref_len": int(b.ref_len),
            "bleu_signature": str(bleu.get_signature()), "chrf_signature": str(chrf.get_signature())}
