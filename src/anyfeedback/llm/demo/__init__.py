"""The embedded offline demo: generated review corpus, tiny LM, online alignment."""
