"""Every finding code says, beside its technical message, what it means for
the music and what to do (``chandra.findings.GUIDE``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chandra import findings as F
from chandra.rundir import STAGE_CANCELLED, STAGE_FAILED

REPO = Path(__file__).resolve().parents[1]


def _codes_raised_anywhere() -> set[str]:
    """Codes the code base puts into finding dicts or Finding objects, found in its source."""
    codes = set(F.ALL_CODES) | {STAGE_FAILED, STAGE_CANCELLED}
    pattern = re.compile(r"""["']code["']\s*:\s*["']([A-Z][A-Z_]+)["']""")
    for path in list((REPO / "chandra").rglob("*.py")) + list((REPO / "dashboard").rglob("*.py")) + \
            [REPO / "app.py", *sorted((REPO / "pages").glob("*.py"))]:
        codes |= set(pattern.findall(path.read_text(encoding="utf-8")))
    return codes


@pytest.mark.parametrize("code", sorted(_codes_raised_anywhere()))
def test_every_code_has_a_meaning_and_an_action(code):
    assert code in F.GUIDE, f"{code} has no entry in chandra.findings.GUIDE"
    meaning, action = F.GUIDE[code]
    for sentence in (meaning, action):
        assert 30 <= len(sentence) <= 260 and "\n" not in sentence
        assert sentence[0].isupper() and sentence.endswith(".")
        assert sentence.count(". ") == 0, f"one sentence only: {sentence!r}"
    assert F.explain(code) == {"meaning": meaning, "action": action}


def test_the_musicians_sentences_the_issue_asked_for():
    assert F.explain(F.SFX_ALL_ROOT)["meaning"].startswith("The improviser can only restart from the beginning")
    assert "random" in F.explain(F.TRANSITIONS_DENSE)["meaning"]
    assert F.explain("NOT_A_CODE")["meaning"]  # an unknown code still reads as a sentence


def test_finding_dicts_carry_meaning_and_action():
    finding = F.Finding("warning", F.SFX_ALL_ROOT, "oracle", "99% of 120 suffix links point to the root", {"n": 120})
    d = finding.to_dict()
    assert d["meaning"] == F.GUIDE[F.SFX_ALL_ROOT][0] and d["action"] == F.GUIDE[F.SFX_ALL_ROOT][1]
    assert F.Finding.from_dict(d) == finding  # the extra keys do not disturb a round trip
    lines = F.format_findings([d], {"warning": 1})
    assert lines[1].startswith("  WARNING SFX_ALL_ROOT") and "means:" in lines[2] and "to do:" in lines[3]
