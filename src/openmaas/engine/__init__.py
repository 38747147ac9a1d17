"""The local engine: llama.cpp's ``llama-server``, built once and supervised."""
