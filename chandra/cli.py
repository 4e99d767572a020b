"""The ``chandra`` command line.

Subcommands::

    chandra train AUDIO -o MODEL [options]      train a model, one progress bar per stage
    chandra train A.wav B.flac takes/ -o MODEL  train one model on a corpus of takes (or --manifest CSV)
    chandra cache info|clear [--cache-dir DIR]  the encoder-output cache
    chandra inspect MODEL [--json]              fields, tokens, oracle, provenance, findings
    chandra export MODEL --format musichal -o OUT.json
    chandra generate MODEL -o OUT.wav [options] improvise and resynthesise
    chandra respond MODEL PHRASE -o OUT.wav     hear a played phrase and answer it from the model
    chandra trace-report DIR [--json]           survival of fields across trace checkpoints
    chandra trace-report DIR --against DIR_B    the same, checkpoint by checkpoint against another trace
    chandra compare A B [--json] [--fail-on-regression]
                                                two models, runs, MusicHal files or traces side by side

Errors print one readable line on stderr and exit with status 1 (2 for usage
errors, as argparse does; 130 after Ctrl-C, 143 after SIGTERM). No model file
is left behind by a failed, interrupted or terminated run. ``-o`` never
replaces an input or a file chandra did not write, and of two commands
writing the same output the second stops at once with an error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any, Sequence

from chandra import __version__
from chandra.errors import ChandraError

__all__ = ["main", "build_parser", "COMMANDS"]


def _threshold(text: str) -> float | str:
    if text == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"threshold must be positive, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _tokens(text: str) -> int | str:
    if text == "auto":
        return "auto"
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {text!r}") from None


#: The subcommands and their one-line help, in the order ``chandra --help`` lists them.
COMMANDS = {
    "train": "train a model from an audio file or a corpus of takes",
    "cache": "show or clear the feature cache",
    "inspect": "inspect a chandra or MusicHal 9000 model",
    "export": "export a model to another format",
    "generate": "improvise from a model and write a WAV",
    "respond": "hear a phrase and answer it from a model (a WAV)",
    "trace-report": "report on a trace directory written by chandra.trace.Tracer",
    "compare": "compare two models, run directories, MusicHal files or traces",
}


def build_parser(*, command: str | None = None) -> argparse.ArgumentParser:
    """The command-line parser.

    Parameters
    ----------
    command : str, optional
        Give only this subcommand its options (``main`` passes the command
        it is about to run, so ``chandra --help`` or ``chandra inspect``
        import none of the modules that define other commands' choices);
        None (default) builds all of them.
    """
    parser = argparse.ArgumentParser(prog="chandra", description="Train machine-improvisation models from "
                                     "recordings, with every stage visible.")
    parser.add_argument("--version", action="version", version=f"chandra {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in COMMANDS.items():
        p = sub.add_parser(name, help=text)
        if command is None or command == name:
            _OPTIONS[name](p)
    return parser


def _command_in(argv: Sequence[str]) -> str:
    """The subcommand named on a command line ('' when there is none: the top-level parser has no
    option taking a value, so the first word not starting with '-' is the command)."""
    return next((word for word in argv if not word.startswith("-")), "")


def _train_options(p: argparse.ArgumentParser) -> None:
    from chandra.encoders import DEVICES, ENCODER_NAMES, QUANTIZE_MODES
    from chandra.normalisation import NORMALISATIONS
    from chandra.oracle import KINDS, METRICS, SEARCH_MODES

    p.add_argument("audio", nargs="*", metavar="AUDIO",
                   help="wav, flac, ogg, aiff/aif or mp3 files, or folders of them (searched recursively); "
                   "several make a corpus")
    p.add_argument("--manifest", default=None, metavar="CSV",
                   help="corpus as a CSV of path[,label] lines, paths relative to the manifest")
    p.add_argument("-o", "--output", required=True, help="model file to write (.chandra)")
    p.add_argument("--encoder", default="dsp", choices=ENCODER_NAMES)
    p.add_argument("--model", default=None, help="neural encoder: hub name (local cache only) or local directory")
    p.add_argument("--layer", type=int, default=-1, help="hidden layer of the neural encoder (-1 = last)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow model code from the model directory "
                   "(needed for MERT)")
    p.add_argument("--device", default="auto", choices=DEVICES,
                   help="neural encoder: 'auto' (a CUDA GPU when torch sees one, else the CPU; default), 'cpu' "
                        "or 'cuda' (an error when there is no GPU)")
    p.add_argument("--quantize", default="none", choices=QUANTIZE_MODES,
                   help="neural encoder on the CPU: 'int8' = dynamic int8 quantisation (faster, features "
                        "within ~0.1 %% cosine of float32; recorded in the model)")
    p.add_argument("--tokens", type=_tokens, default=64,
                   help="vocabulary size K (default 64), or 'auto': chosen from the take's segments and features "
                        "(the rule and its evidence are printed and stored in the model)")
    p.add_argument("--reduce-k", action="store_true", help="allow a recorded reduction of K when there are "
                   "fewer segments than tokens")
    p.add_argument("--normalisation", default="l2", choices=NORMALISATIONS)
    p.add_argument("--pca", type=_positive_int, default=None, help="PCA components before K-means")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-duration", type=float, default=0.1, help="shortest segment in seconds")
    p.add_argument("--max-duration", type=float, default=2.0, help="longest segment in seconds")
    p.add_argument("--oracle", default="tokens", choices=KINDS)
    p.add_argument("--threshold", type=_threshold, default=None,
                   help="audio-oracle distance threshold, or 'auto' to pick it by information rate")
    p.add_argument("--metric", default="cosine", choices=METRICS)
    p.add_argument("--oracle-search", default="auto", choices=SEARCH_MODES,
                   help="audio oracle: match frames exactly, through an approximate index, or 'auto' "
                        "(exact until the root's candidates make that slow; default)")
    p.add_argument("--exact", dest="oracle_search", action="store_const", const="exact",
                   help="same as --oracle-search exact")
    p.add_argument("--no-embed-audio", action="store_true", help="do not store the source audio in the model")
    p.add_argument("--audio", dest="audio_storage", default=None, choices=["embed", "reference", "none"],
                   help="keep the source audio in the model (embed, the default), as references to the files "
                   "checked by content hash (reference), or not at all (none)")
    p.add_argument("--cache-dir", default=None, help="feature cache folder (default: the user cache folder, "
                   "or $CHANDRA_CACHE_DIR/features)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the feature cache")
    from chandra.corpus import ENGINES

    p.add_argument("--engine", default="local", choices=ENGINES,
                   help="corpus: how the files are analysed -- 'local' (default): a process pool here, one "
                        "neural model; 'sequential': one after another; 'ray': Ray tasks and actors "
                        "(pip install chandra[cluster])")
    p.add_argument("--workers", type=_positive_int, default=None,
                   help="corpus: pool processes (local) or CPUs of a local Ray instance (ray); default: the CPUs")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="corpus, --engine ray: a running Ray cluster (e.g. ray://head:10001 or auto); without "
                        "it a local Ray instance is started")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the closing summary as JSON")



def _cache_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["info", "clear"])
    p.add_argument("--cache-dir", default=None, help="feature cache folder (default: as for train)")
    p.add_argument("--json", action="store_true")


def _inspect_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("model")
    p.add_argument("--json", action="store_true", help="machine-readable report")


def _export_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("model")
    p.add_argument("--format", default="musichal", choices=["musichal"])
    p.add_argument("-o", "--output", required=True)


def _generate_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("model")
    p.add_argument("-o", "--output", required=True, help="WAV file to write")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--continuity", type=float, default=0.8, help="probability of continuing forward (0-1)")
    p.add_argument("--min-lrs", type=int, default=1, help="minimum shared context for a jump")
    p.add_argument("--max-continuous", type=int, default=None, help="cap on consecutive forward steps")
    p.add_argument("--where", default=None, help="constraint on event fields, e.g. 'consonance > 0.7'")
    p.add_argument("--where-mode", default="filter", choices=["filter", "weight"],
                   help="filter: play only frames that satisfy --where; weight: favour them by --weight")
    p.add_argument("--weight", type=float, default=None,
                   help="with --where-mode weight: how much likelier a matching frame is (default 4)")
    from chandra.generate import DEFAULT_TABOO

    p.add_argument("--taboo", type=int, default=None,
                   help=f"do not replay a frame within this many steps (default {DEFAULT_TABOO}; 0 = off)")
    p.add_argument("--crossfade-ms", type=float, default=20.0)
    p.add_argument("--record", default=None, metavar="PATH",
                   help="also write the generation record (JSON: parameters, summary, path, ledger entry; "
                   "the format the dashboard's Generate page writes)")
    p.add_argument("--audio-dir", action="append", default=[], metavar="DIR",
                   help="folder to look in for the audio files a model references (repeatable)")
    p.add_argument("--json", action="store_true", help="print the generation summary as JSON")



def _respond_options(p: argparse.ArgumentParser) -> None:
    from chandra.generate import DEFAULT_TABOO
    from chandra.respond import MODES

    p.add_argument("model", help="a chandra model trained with its source audio embedded")
    p.add_argument("phrase", help="the phrase: wav, flac, ogg, aiff/aif or mp3 file")
    p.add_argument("-o", "--output", required=True, help="WAV file to write the answer to")
    p.add_argument("--seconds", type=float, default=10.0, help="length of the answer (default 10)")
    p.add_argument("--mode", default="continue", choices=MODES,
                   help="continue: pick up where the phrase leaves off; imitate: follow the phrase's tokens; "
                        "contrast: prefer tokens the phrase did not use")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--continuity", type=float, default=0.8, help="probability of continuing forward (0-1)")
    p.add_argument("--taboo", type=int, default=None,
                   help=f"do not replay a frame within this many steps (default {DEFAULT_TABOO}; 0 = off)")
    p.add_argument("--crossfade-ms", type=float, default=20.0)
    p.add_argument("--encoder-model", default=None, metavar="DIR",
                   help="where the model's neural encoder weights are, if not where the model says")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow an encoder whose code lives in its model directory (MERT)")
    p.add_argument("--audio-dir", action="append", default=[], metavar="DIR",
                   help="folder to look in for the audio files a model references (repeatable)")
    p.add_argument("--json", action="store_true",
                   help="print the phrase analysis, the match and the generation summary as JSON")


def _trace_report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("directory")
    p.add_argument("--against", metavar="DIR_B", default=None,
                   help="compare with another trace, checkpoint by checkpoint (as `chandra compare`)")
    p.add_argument("--fail-on-regression", action="store_true",
                   help="with --against: exit 1 when DIR_B loses a field or gains an error")
    p.add_argument("--json", action="store_true")


def _compare_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", metavar="A", help="model file, run directory, MusicHal JSON file or trace directory")
    p.add_argument("b", metavar="B", help="the same kinds; stages are lined up by name")
    p.add_argument("--json", action="store_true", help="the comparison as JSON")
    p.add_argument("--all-fields", action="store_true", help="list every stage x field cell, not only changed ones")
    p.add_argument("--fail-on-regression", action="store_true",
                   help="exit 1 when B loses (or thins) a field A carried, or has an error A does not")


_OPTIONS = {"train": _train_options, "cache": _cache_options, "inspect": _inspect_options,
            "export": _export_options, "generate": _generate_options, "respond": _respond_options,
            "trace-report": _trace_report_options, "compare": _compare_options}


class _Bars:
    """Progress per stage, fed by the shared progress callback.

    On a terminal: one tqdm bar per stage, redrawn at most ten times a
    second. Anywhere else (a log file, a pipe, CI): no bars, only one line
    when a stage starts, one every :attr:`LOG_EVERY_S` seconds at most while
    it runs, and one when it ends, so a log does not get a line per tick.
    A stage whose numba kernels are not compiled yet says so
    (:func:`note`).
    """

    #: Seconds between two progress lines when stderr is not a terminal.
    LOG_EVERY_S = 30.0

    def __init__(self, enabled: bool, *, stream=None):
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.terminal = bool(isatty and isatty())
        self.bar = None
        self.stage = None
        self.notes: dict[str, str] = {}
        self.started = 0.0
        self.last_line = 0.0
        self.finished: set[str] = set()

    def note(self, stage: str, text: str) -> None:
        """Show ``text`` beside ``stage`` (e.g. "compiling (first run only)")."""
        self.notes[stage] = text
        if not self.enabled:
            return
        if self.terminal and self.bar is not None and stage == self.stage:
            self.bar.set_description_str(f"{stage:<10} {text}")
        elif not self.terminal:
            print(f"{stage}: {text}", file=self.stream, flush=True)

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        import time

        now = time.monotonic()
        if stage != self.stage:
            self.close()
            self.stage = stage
            self.finished.discard(stage)
            self.started = self.last_line = now
            if self.terminal:
                from tqdm import tqdm

                desc = f"{stage:<10}" + (f" {self.notes[stage]}" if stage in self.notes else "")
                self.bar = tqdm(total=max(total, 1), desc=desc, unit="step", leave=True, file=self.stream,
                                dynamic_ncols=True, mininterval=0.1)
            else:
                print(f"{stage}: started", file=self.stream, flush=True)
        if self.bar is not None:
            if total and self.bar.total != total:
                self.bar.total = total
            step = min(done, self.bar.total) - self.bar.n
            if step > 0:
                self.bar.update(step)  # redraws at most every mininterval
        elif not self.terminal and done < total and now - self.last_line >= self.LOG_EVERY_S:
            self.last_line = now
            print(f"{stage}: {done}/{total}", file=self.stream, flush=True)
        if not self.terminal and total and done >= total and stage not in self.finished:
            self.finished.add(stage)
            print(f"{stage}: done in {now - self.started:.1f} s", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _print_summary(summary: dict) -> None:
    k = summary["tokens_k"]
    print(f"audio       {summary['audio']} ({summary['duration_s']:.1f} s)")
    print(f"segments    {summary['segments']}  (feature dim {summary['feature_dim']})")
    rec = summary.get("tokens_recommendation")
    if rec:
        print(f"K           {rec['k']} chosen automatically: {rec['reason']}")
        print(f"            rule: {rec['rule']}")
    print(f"tokens      K={k}: fit set {summary['tokens_fit_active']}/{k} active, "
          f"{summary['entropy_fit_bits']:.2f} bits; assigned {summary['tokens_assigned_unique']}/{k} unique, "
          f"{summary['entropy_assigned_bits']:.2f} of {summary['entropy_max_bits']:.2f} bits")
    threshold = summary.get("oracle_threshold")
    extra = f", threshold {threshold:.4g}" if threshold is not None else ""
    if summary.get("oracle_search") == "approximate":
        extra += ", approximate root search (--exact for the exact one)"
    print(f"oracle      {summary['oracle_kind']}: {summary['oracle_states']} states, "
          f"{summary['oracle_transitions']} transitions{extra}")
    times = "  ".join(f"{name} {sec:.2f}s" for name, sec in summary["seconds"].items())
    print(f"time        {times}")
    for item in summary.get("finding_details") or []:
        print(f"finding     {item['severity']}: {item['code']} ({item['stage']}): {item['message']}")
        print(f"            means:  {item['meaning']}")
        print(f"            to do:  {item['action']}")
    print(f"saved       {summary['saved']}")


def _feature_cache(args: argparse.Namespace):
    from chandra.feature_cache import FeatureCache

    if getattr(args, "no_cache", False):
        return None
    return FeatureCache(Path(args.cache_dir)) if args.cache_dir else FeatureCache.default()


def _cmd_train(args: argparse.Namespace) -> int:
    from chandra.corpus import collect_inputs, read_manifest
    from chandra.pipeline import TrainConfig, train, training_summary

    storage = args.audio_storage
    if args.no_embed_audio and storage not in (None, "none"):
        raise ChandraError(f"--no-embed-audio contradicts --audio {storage}")
    storage = "none" if args.no_embed_audio else (storage or "embed")
    config = TrainConfig(
        encoder=args.encoder, model=args.model, layer=args.layer, trust_remote_code=args.trust_remote_code,
        device=args.device, quantize=args.quantize,
        n_tokens=args.tokens, reduce_k=args.reduce_k, normalisation=args.normalisation,
        pca_components=args.pca, seed=args.seed, min_duration=args.min_duration,
        max_duration=args.max_duration, oracle=args.oracle, threshold=args.threshold, metric=args.metric,
        oracle_search=args.oracle_search, embed_audio=storage != "none",
    )
    config.validate()
    output = Path(args.output)
    if output.is_dir():
        raise ChandraError(f"{output}: is a directory; give a model file name such as model.chandra")
    if args.manifest and args.audio:
        raise ChandraError("give audio files and folders or --manifest, not both")
    if args.manifest:
        files = read_manifest(args.manifest)
    elif args.audio:
        files = collect_inputs(args.audio)
    else:
        raise ChandraError("give audio files or folders to train on, or --manifest CSV")
    if args.ray_address and args.engine != "ray":
        raise ChandraError("--ray-address needs --engine ray")
    cache = _feature_cache(args)
    bars = _Bars(enabled=not args.quiet and not args.json)
    # One file, no label, audio kept as before: exactly the one-file training.
    single = len(files) == 1 and files[0].label is None and storage != "reference"
    try:
        if single:
            result = train(files[0].path, config, output=output, progress=bars, feature_cache=cache)
        else:
            from chandra.corpus import train_corpus

            result = train_corpus(files, config, output=output, audio=storage, cache=cache, engine=args.engine,
                                  workers=args.workers, ray_address=args.ray_address, progress=bars)
    finally:
        bars.close()
    summary = training_summary(result.state, result.findings) if single else result.summary()
    if args.json:
        print(json.dumps(summary, indent=1))
    elif single:
        _print_summary(summary)
    else:
        _print_corpus_summary(summary)
    return 0


def _print_corpus_summary(summary: dict) -> None:
    k = summary["tokens_k"]
    print(f"corpus      {summary['n_files']} files, {summary['duration_s']:.1f} s, audio {summary['audio']}")
    width = max(len(f["name"]) for f in summary["files"])
    for f in summary["files"]:
        label = f"  [{f['label']}]" if f.get("label") else ""
        print(f"  take {f['take']:<4} {f['name']:<{width}}  {f['duration_s']:7.1f} s  {f['segments']:6} segments  "
              f"{f['tokens_used']:4} tokens  cache {f['feature_cache']}{label}")
    print(f"segments    {summary['segments']}  (feature dim {summary['feature_dim']})")
    rec = summary.get("tokens_recommendation")
    if rec:
        print(f"K           {rec['k']} chosen automatically: {rec['reason']}")
    print(f"tokens      K={k} ({summary['vocabulary_algorithm']} k-means): fit set {summary['tokens_fit_active']}/{k} "
          f"active, {summary['entropy_fit_bits']:.2f} bits; assigned {summary['tokens_assigned_unique']}/{k} "
          f"unique, {summary['entropy_assigned_bits']:.2f} of {summary['entropy_max_bits']:.2f} bits; "
          f"{summary['shared_tokens']} shared by two or more takes")
    threshold = summary.get("oracle_threshold")
    extra = f", threshold {threshold:.4g}" if threshold is not None else ""
    print(f"oracle      {summary['oracle_kind']}: {summary['oracle_states']} states, "
          f"{summary['oracle_transitions']} transitions{extra}; takes never continue into the next")
    times = "  ".join(f"{name} {sec:.2f}s" for name, sec in summary["seconds"].items())
    print(f"time        {times}")
    for line in summary["findings"]:
        print(f"finding     {line}")
    print(f"saved       {summary['saved']}")


def _cmd_cache(args: argparse.Namespace) -> int:
    cache = _feature_cache(args)
    if args.action == "clear":
        removed = cache.clear()
        print(f"removed {removed} cached feature entr{'y' if removed == 1 else 'ies'} from {cache.directory}")
        return 0
    info = cache.info()
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print(f"feature cache  {info['directory']}{'' if info['exists'] else ' (not created yet)'}")
    print(f"entries        {info['entries']} ({info['bytes'] / 1e6:.1f} MB)")
    for name, count in info["by_encoder"].items():
        print(f"  {name:<12} {count}")
    return 0


def _print_json(doc: Any) -> None:
    """``--json`` output: the document, indented, numpy values as plain JSON."""
    from chandra.io_utils import json_default

    print(json.dumps(doc, indent=1, default=json_default))


def _print_report(doc: Any, *, as_json: bool, text: Any) -> None:
    """A report as JSON (``--json``) or as the text ``text(doc)``."""
    if as_json:
        _print_json(doc)
    else:
        print(text(doc))


def _cmd_inspect(args: argparse.Namespace) -> int:
    from chandra.inspect import format_report, inspect_model

    _print_report(inspect_model(args.model), as_json=args.json, text=format_report)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from chandra.io_utils import check_output, exclusive_output
    from chandra.model import load_model
    from chandra.musichal import export_musichal

    output = check_output(args.output, kind="musichal", inputs=[args.model])
    model = load_model(args.model)
    with exclusive_output(output):
        export_musichal(model, output)
    print(f"wrote {args.output} (MusicHal v2.0, {model.n_frames} frames)")
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from chandra.generate import generate_to_wav
    from chandra.model import load_model

    if args.where_mode == "weight" and args.where is None:
        raise ChandraError("--where-mode weight needs a --where constraint to weight")
    if args.weight is not None:
        if args.where_mode != "weight":
            raise ChandraError("--weight applies to --where-mode weight (a filter has no weight)")
        if not args.weight > 0:
            raise ChandraError(f"--weight must be positive, got {args.weight}")
    from chandra.generate import DEFAULT_TABOO
    from chandra.io_utils import check_output, exclusive_output

    output = check_output(args.output, kind="wav", inputs=[args.model])
    record_path = None
    if args.record is not None:
        record_path = check_output(args.record, kind="json", inputs=[args.model, args.output])
        if Path(record_path).resolve().parent != Path(output).resolve().parent:
            raise ChandraError("--record must be in the same folder as the WAV it describes (-o)")
    model = load_model(args.model)
    from chandra.corpus import attach_audio, references_audio

    if references_audio(model):
        attach_audio(model, model_path=args.model, search=args.audio_dir)
    with exclusive_output(output):
        generation = generate_to_wav(model, output, seconds=args.seconds, seed=args.seed,
                                     continuity=args.continuity, min_lrs=args.min_lrs,
                                     max_continuous=args.max_continuous, where=args.where,
                                     where_mode=args.where_mode,
                                     where_weight=4.0 if args.weight is None else args.weight,
                                     taboo=DEFAULT_TABOO if args.taboo is None else args.taboo,
                                     crossfade_ms=args.crossfade_ms)
    summary = generation.summary()
    if record_path is not None:
        from chandra.generation_record import generation_record, write_generation_record

        with exclusive_output(record_path):
            write_generation_record(generation_record(model, generation, wav_path=output,
                                                      model_path=Path(args.model).resolve()), record_path)
    if args.json:
        _print_json({**summary, "fallbacks": generation.fallbacks})
    else:
        shown = {k: (f"{v:.3g}" if isinstance(v, float) else v) for k, v in summary.items()}
        print(f"wrote {args.output}: " + ", ".join(f"{k} {v}" for k, v in shown.items()))
        if generation.fallbacks:
            # Never silent, but grouped: one line per distinct reason, with the
            # steps it happened at (all of them are in --json).
            by_reason: dict[str, list[int]] = {}
            for fb in generation.fallbacks:
                by_reason.setdefault(f"{fb['reason']} -> {fb['choice']}", []).append(int(fb["step"]))
            for reason, steps in by_reason.items():
                shown = ", ".join(map(str, steps[:8])) + (", ..." if len(steps) > 8 else "")
                print(f"fallback    {len(steps)}x {reason} (steps {shown})")
    return 0


def _cmd_respond(args: argparse.Namespace) -> int:
    from chandra.generate import DEFAULT_TABOO
    from chandra.io_utils import check_output, exclusive_output
    from chandra.model import load_model
    from chandra.respond import respond_to_wav

    output = check_output(args.output, kind="wav", inputs=[args.model, args.phrase])
    model = load_model(args.model)
    from chandra.corpus import attach_audio, references_audio

    if references_audio(model):
        attach_audio(model, model_path=args.model, search=args.audio_dir)
    with exclusive_output(output):
        response = respond_to_wav(model, args.phrase, output, mode=args.mode, seconds=args.seconds, seed=args.seed,
                                  continuity=args.continuity,
                                  taboo=DEFAULT_TABOO if args.taboo is None else args.taboo,
                                  crossfade_ms=args.crossfade_ms, encoder_model=args.encoder_model,
                                  trust_remote_code=args.trust_remote_code)
    summary = response.summary()
    if args.json:
        _print_json(summary)
        return 0
    phrase, match, gen = summary["phrase"], summary["match"], summary["generation"]
    cov = phrase["coverage"]
    print(f"phrase      {phrase['name']}: {phrase['duration_s']:.2f} s, {phrase['n_segments']} segments, "
          f"tokens {' '.join(str(r['token']) for r in phrase['segments'])}")
    print(f"coverage    often {cov['often']:.0%}, rarely {cov['rarely']:.0%}, never {cov['never']:.0%}")
    from chandra.respond import source_place

    q = len(match["frames"])
    print(f"matched     frame {match['end_frame']} ({source_place(model, match['end_frame'])}), "
          f"state {match['state']}: "
          f"context {match['context']} of {q} segments, token context {match['token_context']}, "
          f"mean cost {match['mean_cost']:.2f}")
    follow = summary["follow"]
    print(f"answer      {args.output}: {args.mode}, {summary['answer']['duration_s']:.1f} s, "
          f"{gen['n_frames']} frames, "
          f"{gen['n_jumps']} jumps, {gen['n_fallbacks']} fallbacks; follows the phrase's tokens "
          f"{follow['guide_agreement']:.0%}, plays its tokens {follow['phrase_token_share']:.0%}")
    return 0


def _print_comparison(doc: dict, *, as_json: bool, all_fields: bool = False, fail: bool = False) -> int:
    from chandra.compare import format_comparison

    _print_report(doc, as_json=as_json, text=lambda d: format_comparison(d, all_fields=all_fields))
    return 1 if fail and doc["regression"]["regressed"] else 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from chandra.compare import compare

    doc = compare(args.a, args.b)
    return _print_comparison(doc, as_json=args.json, all_fields=args.all_fields, fail=args.fail_on_regression)


def _cmd_trace_report(args: argparse.Namespace) -> int:
    from chandra.trace import format_trace_report, trace_report

    if args.against is not None:
        from chandra.compare import compare, side_from_trace

        doc = compare(side_from_trace(args.directory), side_from_trace(args.against))
        return _print_comparison(doc, as_json=args.json, fail=args.fail_on_regression)
    if args.fail_on_regression:
        raise ChandraError("--fail-on-regression needs --against DIR_B")
    _print_report(trace_report(args.directory), as_json=args.json, text=format_trace_report)
    return 0


_COMMANDS = {
    "train": _cmd_train,
    "cache": _cmd_cache,
    "inspect": _cmd_inspect,
    "export": _cmd_export,
    "generate": _cmd_generate,
    "respond": _cmd_respond,
    "trace-report": _cmd_trace_report,
    "compare": _cmd_compare,
}


def _one_line(exc: BaseException) -> str:
    from chandra.errors import shown

    return shown(exc)


# Library parameters whose command-line option has another name.
_PARAMETER_DESTS = {"n_tokens": "tokens", "pca_components": "pca", "random_state": "seed", "where_weight": "weight"}
_QUOTED = re.compile(r"('[^']*'|\"[^\"]*\")")
_ASSIGNMENT = re.compile(r"\b([a-z][a-z0-9_]*)=([^\s,;)]+)")


def _option_names(parser: argparse.ArgumentParser, command: str) -> dict[str, tuple[str, bool]]:
    """``{library parameter: (option string, is a switch)}`` for one subcommand."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    by_dest = {a.dest: (max(a.option_strings, key=len), a.nargs == 0) for a in sub._actions
               if a.option_strings and a.dest != "help"}
    names = dict(by_dest)
    names.update({param: by_dest[dest] for param, dest in _PARAMETER_DESTS.items() if dest in by_dest})
    return names


def _in_cli_terms(message: str, options: dict[str, tuple[str, bool]]) -> str:
    """Say a library message's parameters as this command's options.

    Library errors name parameters (``n_tokens``, ``model=DIR``); here they
    become ``--tokens`` and ``--model DIR``. Rewritten are ``name=value``
    forms, names with an underscore anywhere, and a plain name that starts
    the message as ``"<name> must ..."``; quoted text is left alone.
    """

    def assignment(match: re.Match) -> str:
        name, value = match.group(1), match.group(2)
        if name not in options:
            return match.group(0)
        flag, switch = options[name]
        return flag if switch and value == "True" else f"{flag} {value}"

    def plain(text: str, first: bool) -> str:
        text = _ASSIGNMENT.sub(assignment, text)
        for name, (flag, _) in options.items():
            if "_" in name:
                text = re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w=])", flag, text)
            elif first and text.startswith(f"{name} must "):
                text = flag + text[len(name):]
        return text

    parts = _QUOTED.split(message)
    return "".join(part if i % 2 else plain(part, first=i == 0) for i, part in enumerate(parts))
class _Terminated(BaseException):
    """Raised in the main thread when SIGTERM arrives, so it unwinds like Ctrl-C:
    every ``finally`` and atomic write cleans up (temporary files removed)."""


def _on_sigterm(signum, frame) -> None:  # pragma: no cover - exercised in a subprocess test
    raise _Terminated()


@contextlib.contextmanager
def _sigterm_unwinds():
    """Turn SIGTERM into :class:`_Terminated` for the duration (main thread only)."""
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status.

    0 on success; 1 with one line on stderr for any chandra error, an OS
    error or running out of memory; 2 for usage errors (argparse); 130 after
    Ctrl-C and 143 after SIGTERM, in both cases with temporary files removed
    and no output left half-written.
    """
    parser = build_parser(command=_command_in(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)
    try:
        with _sigterm_unwinds():
            return _COMMANDS[args.command](args)
    except ChandraError as exc:
        message = _in_cli_terms(_one_line(exc), _option_names(parser, args.command))
        print(f"chandra {args.command}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"chandra {args.command}: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print(f"chandra {args.command}: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except MemoryError:
        print(f"chandra {args.command}: error: out of memory", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader of our output went away (``chandra inspect x | head``):
        # nothing more can be said there; keep the interpreter's exit quiet too.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:
        print(f"chandra {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
