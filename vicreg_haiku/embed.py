"""Writes the embeddings of every image of a split, for search, clustering
or de-duplication.

  python -m vicreg_haiku.embed --workdir=DIR --output=PATH [--split=SPLIT]
      [--expander] [--float16] [--config.dataset.KEY=VALUE ...]

The newest pretraining checkpoint's encoder features (and with --expander
the expander outputs) of every image of SPLIT (default: the run's
pretraining split) of the run's dataset, or of another folder or dataset
given with --config.dataset.* flags, through the evaluation transform, in
.npy files under PATH (evaluation/embeddings.py has the layout). Rerunning
the same command over a partial PATH resumes it; a PATH holding anything
else is refused.
"""

import argparse
import ast
import sys

import ml_collections

# What --config.KEY may change: the images and how they are batched, never
# the network (its weights come from the workdir).
_OVERRIDABLE = ("dataset.", "eval_batch_size")


class _UsageError(ValueError):
  pass


def _value(text: str):
  """A flag's value as Python reads it (1, 0.5, None, (1, 2)), else text."""
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def apply_overrides(config: ml_collections.ConfigDict,
                    flags: list[str]) -> None:
  """--config.KEY=VALUE flags set on config; anything else is refused."""
  for flag in flags:
    key, sep, text = flag.removeprefix("--config.").partition("=")
    if not flag.startswith("--config.") or not sep:
      raise _UsageError(f"unrecognised argument {flag!r}: flags are "
                        "--workdir, --output, --split, --expander, --float16 "
                        "and --config.dataset.KEY=VALUE")
    section, _, field = key.rpartition(".")
    parent = config[section] if section else config
    if not key.startswith(_OVERRIDABLE) or field not in parent:
      raise _UsageError(f"--config.{key}: embed takes --config.dataset.* "
                        "(an existing key) and --config.eval_batch_size")
    value = _value(text)
    try:
      parent[field] = value
    except TypeError:
      raise _UsageError(f"--config.{key}={text}: a "
                        f"{type(parent[field]).__name__} is needed") from None


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="python -m vicreg_haiku.embed",
      description="Writes a workdir's encoder features of every image of a "
      "split as .npy files.")
  parser.add_argument("--workdir", required=True,
                      help="a vicreg-haiku workdir with pretraining "
                      "checkpoints (may be gs://)")
  parser.add_argument("--output", required=True,
                      help="a new local directory (or a partial one to "
                      "resume)")
  parser.add_argument("--split", default=None,
                      help="the split to embed (default: the run's "
                      "dataset.pretrain_split)")
  parser.add_argument("--expander", action="store_true",
                      help="also write the expander outputs")
  parser.add_argument("--float16", action="store_true",
                      help="write float16 (half the disk) instead of "
                      "float32")
  return parser


def main(argv: list[str] | None = None) -> int:
  parser = _parser()
  args, rest = parser.parse_known_args(argv)
  # Imported here so that --help and usage errors do not wait for TF and JAX.
  from vicreg_haiku import launch_env  # pylint: disable=g-import-not-at-top
  launch_env.prepare()  # TF without its start-up lines; JAX's program cache
  from vicreg_haiku import user_errors  # pylint: disable=g-import-not-at-top
  from vicreg_haiku.evaluation import embeddings  # pylint: disable=g-import-not-at-top
  from vicreg_haiku.evaluation import pretrained  # pylint: disable=g-import-not-at-top
  from vicreg_haiku.utils import writers  # pylint: disable=g-import-not-at-top
  try:
    config = pretrained.read_config(args.workdir)
    apply_overrides(config, rest)
    split = args.split or config.dataset.pretrain_split
    dtype = "float16" if args.float16 else "float32"
    progress = None
    for written, rows in embeddings.embed(config, args.workdir, args.output,
                                          split, args.expander, dtype):
      if progress is None:
        if written == rows:
          print(f"{args.output} holds all {rows} rows already: nothing to do")
          return 0
        if written:
          print(f"resuming {args.output} at row {written} of {rows}")
        progress = writers.Progress("embed", rows, written, 1)
      else:
        progress.report(written, {})
  except (_UsageError, *user_errors.USER_ERRORS) as error:
    print(f"error: {error}", file=sys.stderr)
    return 1
  arrays = [embeddings.FEATURES] + [embeddings.EXPANDER] * args.expander
  print(f"wrote {args.output}: {rows} rows of {split} ("
        f"{', '.join(arrays + [embeddings.LABELS, embeddings.INDEX])}); load "
        f"with numpy.load('{args.output}/{embeddings.FEATURES}', "
        "mmap_mode='r')")
  return 0


if __name__ == "__main__":
  sys.exit(main())
