"""tts_svc: dragoman.tts.v1.TextToSpeechService, streaming speech synthesis.

server.py (servicer, create/serve/main) -> pipeline.py (checks, pipelined
synthesis, resampling, encoding) -> voices.py (voices by language, defaults)
and text.py (sentence and clause splitting) -> engines/ (Piper, Kokoro, fake).
"""
