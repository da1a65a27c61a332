"""Where examples come from and how views are made: sources, decoding, host
and device augmentations, the tf.data pipelines. Imports only utils/."""
