"""Nearest images and near-duplicates in an output of vicreg_haiku.embed.

  python -m vicreg_haiku.neighbours --embeddings=PATH --query=IMAGE [--k=8]
  python -m vicreg_haiku.neighbours --embeddings=PATH --duplicates=THRESHOLD

--query: the k images whose features are most cosine-similar to IMAGE's
(IMAGE embedded by the encoder of the workdir PATH records, with the same
transform): their paths (or ids) and similarities, and a picture.
--duplicates: the groups of images linked by cosine similarity >= THRESHOLD
(the same photo resized, re-encoded, slightly cropped), listed largest
first, and a picture of the first groups. Exact search by blocked matrix
products (evaluation/retrieval.py).
"""

import argparse
import os
import sys


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="python -m vicreg_haiku.neighbours",
      description="Nearest images to a query, or near-duplicate groups, in "
      "the output of python -m vicreg_haiku.embed.")
  parser.add_argument("--embeddings", required=True,
                      help="a directory written by python -m "
                      "vicreg_haiku.embed")
  action = parser.add_mutually_exclusive_group(required=True)
  action.add_argument("--query", help="an image file")
  action.add_argument("--duplicates", type=float, metavar="THRESHOLD",
                      help="cosine similarity in (0, 1]; e.g. 0.95")
  parser.add_argument("--k", type=int, default=8,
                      help="neighbours of the query (default 8)")
  parser.add_argument("--picture", default=None,
                      help="the PNG to write (default: PATH/"
                      "query_<image name>.png or PATH/duplicates.png)")
  return parser


def _usage_problem(args) -> str | None:
  if args.duplicates is not None and not 0 < args.duplicates <= 1:
    return (f"--duplicates={args.duplicates:g}: a cosine similarity in "
            "(0, 1], e.g. 0.95")
  if args.k < 1:
    return f"--k={args.k}: at least 1"
  return None


def _query(emb, args, search, retrieval):
  query, shown = search.query_features(emb, args.query)
  rows, sims = retrieval.nearest(query[None], emb.features, args.k)
  print(f"nearest of {len(emb.names)} to {args.query} (cosine similarity):")
  for row, sim in zip(rows[0], sims[0]):
    print(f"{sim:.4f}  {emb.names[row]}")
  stem = os.path.splitext(os.path.basename(args.query))[0]
  picture = args.picture or os.path.join(args.embeddings,
                                         f"query_{stem}.png")
  return picture, search.query_picture(emb, shown, rows[0], sims[0])


def _duplicates(emb, args, search, retrieval):
  groups = retrieval.duplicate_groups(emb.features, args.duplicates)
  print(f"{len(groups)} groups of near-duplicates (cosine similarity >= "
        f"{args.duplicates:g}) among {len(emb.names)} images, "
        f"{sum(map(len, groups))} images in them:")
  for number, group in enumerate(groups, 1):
    print(f"group {number} ({len(group)} images)")
    sims = [None] + list(search.group_similarities(emb, group))
    for row, sim in zip(group, sims):
      print(f"  {'first ' if sim is None else f'{sim:.4f}'}  "
            f"{emb.names[row]}")
  if not groups:
    return None, None
  picture = args.picture or os.path.join(args.embeddings, "duplicates.png")
  return picture, search.duplicates_picture(emb, groups)


def main(argv: list[str] | None = None) -> int:
  parser = _parser()
  args = parser.parse_args(argv)
  problem = _usage_problem(args)
  if problem:
    print(f"error: {problem}", file=sys.stderr)
    return 1
  # Imported here so that --help and usage errors do not wait for TF and JAX.
  from vicreg_haiku import launch_env  # pylint: disable=g-import-not-at-top
  launch_env.prepare()  # TF without its start-up lines; JAX's program cache
  from vicreg_haiku import user_errors  # pylint: disable=g-import-not-at-top
  from vicreg_haiku.evaluation import embedding_search as search  # pylint: disable=g-import-not-at-top
  from vicreg_haiku.evaluation import results  # pylint: disable=g-import-not-at-top
  from vicreg_haiku.evaluation import retrieval  # pylint: disable=g-import-not-at-top
  try:
    emb = search.open_embeddings(args.embeddings)
    find = _query if args.query is not None else _duplicates
    picture, image = find(emb, args, search, retrieval)
  except user_errors.USER_ERRORS as error:
    print(f"error: {error}", file=sys.stderr)
    return 1
  if image is not None:
    results.write_png(picture, image)
    print(f"picture: {picture}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
