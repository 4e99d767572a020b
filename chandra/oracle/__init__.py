"""Factor oracle and audio oracle: construction, invariants, health, information rate.

The oracle is the memory an improviser navigates: state 0 is the root and state
``i`` (1..n) is reached after frame ``i - 1`` (0-based frame index). Every
transition into state ``j`` is labelled by frame ``j - 1``'s symbol (a token for
the factor oracle, a feature vector for the audio oracle), so a transition is
stored as a (source, destination) pair in CSR form and its label is implied.

Algorithms (implemented from the papers):

* factor oracle: Allauzen, Crochemore & Raffinot, "Factor oracle: a new
  structure for pattern matching" (SOFSEM 1999), online construction;
* exact context: the suffix automaton (Blumer et al., "The smallest automaton
  recognizing the subwords of a text", TCS 40, 1985; Crochemore & Hancart,
  "Automata for matching patterns", 1997), built online alongside the factor
  oracle;
* the Lefebvre & Lecroq ``LengthCommonSuffix`` recursion ("Computing
  repeated factors with a factor oracle", 2000; Lefebvre, Lecroq & Alexandre
  2003), kept for graphs that come without their symbols
  (:func:`lefebvre_lecroq_lrs`, used by the MusicHal importer);
* audio oracle: Dubnov, Assayag & Cont, "Audio oracle: a new algorithm for
  fast learning of audio structures" (ICMC 2007), and its variable-Markov
  form (Wang & Dubnov, VMO): symbols compared by a distance and a threshold;
* information rate: Dubnov, "Audio oracle analysis of musical information
  rate" (2011), code lengths from a compression of the sequence by the oracle.

Context: ``sfx``, ``lrs`` and ``rep``
-------------------------------------
``sfx`` is the textbook suffix link, unchanged. For the factor oracle it is
the state reached by reading ``w_i``, the longest suffix of frames
``0..i-1`` that also ends earlier (ACR 1999); because the oracle also accepts
some non-factors, that state need not *end* with ``w_i``: in ``abbcabcdabc``,
``w_11 = abc`` but ``sfx[11] = 4`` ends with ``bbc``. The Lefebvre-Lecroq
recursion measures the context shared with ``sfx[i]`` through the suffix-link
tree and so falls short of ``|w_i|`` (at 69 % of the states of 2,000 random
two-letter tokens, 27 % with four letters; see benchmarks/RESULTS.md).
chandra therefore stores the context exactly and says where it is:

``lrs[i]``
    factor oracle: ``|w_i|``, the true longest repeated suffix of the prefix
    (occurrences may overlap), from a suffix automaton built in the same
    pass: when frame ``i - 1`` is added, the suffix link of the new
    automaton state is the state of ``w_i`` and its length is ``|w_i|``.
``rep[i]``
    factor oracle: the state where the *first* earlier occurrence of
    ``w_i`` ends (the automaton state's first end position), so frames
    ``rep[i] - lrs[i] .. rep[i] - 1`` equal frames ``i - lrs[i] .. i - 1``;
    ``rep[i] = 0`` when ``lrs[i] = 0`` and ``rep[0] = -1``.

Invariants (checked by :func:`check_oracle`): ``lrs[i] <= sfx[i]`` (reading
``w_i`` takes ``|w_i|`` transitions, each to a later state);
``lrs[i] = 0 <=> sfx[i] = 0 <=> rep[i] = 0`` (a frame whose symbol is new);
``sfx[i] <= rep[i] < i`` (reading a factor from the root ends no later
than its first occurrence, ACR 1999); the ``lrs[i]`` symbols ending at ``i`` equal those
ending at ``rep[i]``; and ``lrs[i]`` is the longest such (no suffix of
length ``lrs[i] + 1`` ends earlier). The context shared with ``sfx[i]``
itself may be shorter than ``lrs[i]``; navigation uses ``rep``.

The links ``i -> rep[i]`` form a tree in which the states sharing a suffix of
length ``>= m`` with any state are exactly its component when edges with
``lrs < m`` are cut (every later end of a word links, through ends of the
same word, to its first end), so the longest common suffix of two states is
the minimum ``lrs`` on the tree path between them. :mod:`chandra.generate`
navigates this tree.

Audio oracle. Threshold matching is not transitive, so "the longest repeated
suffix over all earlier frames" is not a property an automaton can index
(finding it needs every pair of frames, O(n^2)). chandra's choice:
``rep[i] = sfx[i]`` and ``lrs[i]`` is the exact number of consecutive frame
pairs ``(i-1-t, sfx[i]-1-t)``, ``t = 0, 1, ...``, that lie within the
threshold: the context really shared with the frame the oracle links to,
counted pair by pair with the builder's own distance. (The Lefebvre-Lecroq
value can exceed it, as matches do not chain, or fall short of it.) With
one-hot features and a threshold between 0 and the distance of two different
symbols this is a common suffix of the token sequence, and the oracle's
``sfx`` equals the factor oracle's.

Approximate search. On material where few frames recur within the threshold
(noise, or a threshold that is too small) almost every new frame reaches the
root and is compared with all of its children, O(n^2 d) in all. Past a size
threshold :func:`build_audio_oracle` answers that one comparison from an
inverted-file index over the root's children (PCA projection, spherical
K-means lists, exact verification of every link it makes); every other
state's children are few and stay exact, so on material whose root stays
small the oracle is the exact one. ``search="exact"`` forces the exact scan.
An approximate oracle satisfies every invariant of :func:`check_oracle`: it
can miss a match (that frame links further back or to the root), never link
frames farther apart than the threshold. ``Oracle.search`` records how it was
built; agreement with the exact oracle is measured in benchmarks/RESULTS.md.

Construction kernels are compiled with numba (cached on disk); everything the
dashboard or model I/O touches is plain ``int64``/``float64`` numpy arrays.
The kernels that checks and small models need (``check_oracle``, exact
context, information rate) run their own source in the interpreter while
their inputs are small and numba is not loaded yet, so ``chandra inspect`` of
a small model does not pay numba's start-up (about a second per process).

Where things are
----------------
=================================  ==============================================
:mod:`chandra.oracle.core`         :class:`Oracle`, ``KINDS``, ``METRICS``, input coercion
:mod:`chandra.oracle.factor`       :func:`build_factor_oracle`
:mod:`chandra.oracle.audio`        :func:`build_audio_oracle`, ``SEARCH_MODES``, ``APPROX_*``
:mod:`chandra.oracle.root_index`   the approximate root search (inverted-file index)
:mod:`chandra.oracle.context`      :func:`exact_lrs` (suffix automaton),
                                   :func:`audio_oracle_lrs`, :func:`lefebvre_lecroq_lrs`
:mod:`chandra.oracle.checks`       :func:`check_oracle`, ``CHECK_CODES``, :func:`oracle_health`
:mod:`chandra.oracle.information`  information rate, IR threshold sweep
:mod:`chandra.oracle.takes`        oracles over several takes: ``take_starts`` helpers
:mod:`chandra.oracle._kernels`     every numba kernel (they call each other)
=================================  ==============================================

Import the public names from :mod:`chandra.oracle`; the submodules are the
place to read them. Tunables (``_AO_BLOCK``, ``APPROX_MIN_WORK``, ...) are read
from the module that uses them, so a test that changes one patches that module.
"""

from chandra.oracle.audio import APPROX_MIN_ROOT, APPROX_MIN_WORK, SEARCH_MODES, build_audio_oracle
from chandra.oracle.checks import CHECK_CODES, check_oracle, oracle_health
from chandra.oracle.context import audio_oracle_lrs, exact_lrs, lefebvre_lecroq_lrs
from chandra.oracle.core import KINDS, METRICS, Oracle
from chandra.oracle.factor import build_factor_oracle
from chandra.oracle.information import (
    default_thresholds,
    information_rate,
    information_rate_profile,
    ir_threshold_sweep,
    ir_tokens,
    select_threshold,
)
from chandra.oracle.takes import take_of_frames

__all__ = [
    "Oracle",
    "build_factor_oracle",
    "exact_lrs",
    "lefebvre_lecroq_lrs",
    "audio_oracle_lrs",
    "build_audio_oracle",
    "check_oracle",
    "oracle_health",
    "information_rate",
    "information_rate_profile",
    "ir_tokens",
    "ir_threshold_sweep",
    "select_threshold",
    "default_thresholds",
    "KINDS",
    "METRICS",
    "SEARCH_MODES",
    "CHECK_CODES",
    "APPROX_MIN_WORK",
    "APPROX_MIN_ROOT",
    "take_of_frames",
]
