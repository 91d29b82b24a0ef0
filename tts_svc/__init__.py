"""tts_svc: dragoman.tts.v1.TextToSpeechService, streaming speech synthesis.

server.py (servicer, create/serve/main) -> pipeline.py (checks, pipelined
synthesis, resampling, the audio cache) -> voices.py (voices by language,
defaults), text.py (sentence and clause splitting), normalize.py (numbers,
money, abbreviations), encoding.py (PCM16, Ogg Opus), cache.py (in-process
LRU or Redis) -> engines/ (Piper, Kokoro, espeak-ng, Coqui, Triton, fake).
"""
