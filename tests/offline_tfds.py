"""Preparing a tfds dataset from files already on disk, never the network."""

from unittest import mock

import tensorflow_datasets as tfds


def prepare(name: str, data_dir: str, download_root: str, *,
            file_format: str = "tfrecord") -> None:
  """Runs the real `name` builder on the files under download_root.

  Only the download is patched, as tfds' own builder tests do, so the
  builder's parsing is what the tests exercise. file_format: "tfrecord"
  (tfds' default, read in sequence) or "array_record" (random access).
  """
  builder = tfds.builder(name, data_dir=data_dir, file_format=file_format)
  with mock.patch.object(tfds.download.DownloadManager, "download_and_extract",
                         return_value=download_root):
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
