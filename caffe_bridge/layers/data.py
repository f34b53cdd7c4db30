"""Data layers: LMDB Data with Caffe's DataTransformer."""
